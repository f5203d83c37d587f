//! Triton's gRPC protocol (`inference.GRPCInferenceService`, `proto/grpc_service.proto`) on tonic:
//! the same models, semantics and errors as the HTTP routes; tensors in `raw_input_contents` or
//! in the typed `contents` lists, outputs always in `raw_output_contents` (as Triton answers).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;
use serde_json::Value;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use vigil_engine::{DataType, TensorData};

use super::protocol::{self, ErrorKind, Input, ServeError};
use super::stats::model_stats_json;
use super::{EXTENSIONS, InFlight, Server};
use vigil_kserve::pb;
use vigil_kserve::tensors::{element_count, from_binary, from_wire_name, to_binary, wire_name};

use pb::grpc_inference_service_server::GrpcInferenceService;
pub use pb::grpc_inference_service_server::GrpcInferenceServiceServer;

/// The gRPC service.
pub struct Grpc {
    pub server: Arc<Server>,
}

/// A tonic status for a server error (Triton's codes).
fn status(e: ServeError) -> Status {
    match e.kind {
        ErrorKind::InvalidArg => Status::invalid_argument(e.message),
        ErrorKind::NotFound => Status::not_found(e.message),
        ErrorKind::Unavailable => Status::unavailable(e.message),
        ErrorKind::Unsupported => Status::unimplemented(e.message),
        ErrorKind::Unauthenticated => Status::unauthenticated(e.message),
        ErrorKind::Internal => Status::internal(e.message),
    }
}

/// `""` = the version the server chooses.
fn version(name: &str, v: &str) -> Result<Option<u64>, ServeError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        ServeError::invalid(format!(
            "Request for unknown model: '{name}' version {v} is not a version number"
        ))
    })
}

/// Checks the bearer token where the server has one (`authorization` metadata).
fn authorize<T>(server: &Server, req: &Request<T>) -> Result<(), Status> {
    let header = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if server.authorized(header) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "unauthorized: send the metadata 'authorization: Bearer <token>' (vigil serve --token)",
        ))
    }
}

/// The values of one input from the typed `contents` lists.
fn from_contents(
    dtype: DataType,
    c: pb::InferTensorContents,
    count: usize,
) -> Result<TensorData, String> {
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        v: Vec<S>,
        dtype: DataType,
    ) -> Result<Vec<T>, String> {
        v.into_iter()
            .enumerate()
            .map(|(k, x)| {
                T::try_from(x).map_err(|_| {
                    format!(
                        "value {k} ({x}) is out of the range of {}",
                        wire_name(dtype)
                    )
                })
            })
            .collect()
    }
    let data = match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Int8 => TensorData::Int8(narrow(c.int_contents, dtype)?),
        DataType::Int16 => TensorData::Int16(narrow(c.int_contents, dtype)?),
        DataType::Int32 => TensorData::Int32(c.int_contents),
        DataType::Int64 => TensorData::Int64(c.int64_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(c.uint_contents, dtype)?),
        DataType::Uint16 => TensorData::Uint16(narrow(c.uint_contents, dtype)?),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents),
        DataType::String => TensorData::Bytes(c.bytes_contents),
        DataType::Fp16 | DataType::Bf16 | DataType::Invalid => {
            return Err(format!(
                "{} values go in raw_input_contents",
                wire_name(dtype)
            ));
        }
    };
    if data.len() != count {
        return Err(format!(
            "has {} values in its {} contents but its shape holds {count}",
            data.len(),
            wire_name(dtype)
        ));
    }
    Ok(data)
}

/// Decodes a `ModelInferRequest` into the protocol's request; returns the model name and version.
fn decode(
    req: pb::ModelInferRequest,
) -> Result<(String, Option<u64>, protocol::Request), ServeError> {
    let model = req.model_name.clone();
    let version = version(&model, &req.model_version)?;
    if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
        return Err(ServeError::invalid(format!(
            "the request has {} raw_input_contents for {} inputs; give one per input or none",
            req.raw_input_contents.len(),
            req.inputs.len()
        )));
    }
    let mut raw = req.raw_input_contents.into_iter();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for i in req.inputs {
        let bad = |m: String| ServeError::invalid(format!("input '{}': {m}", i.name));
        let dtype = from_wire_name(&i.datatype)
            .ok_or_else(|| bad(format!("unknown datatype '{}'", i.datatype)))?;
        let count = element_count(&i.shape).ok_or_else(|| {
            bad(format!(
                "shape {:?} has a negative or too large dimension",
                i.shape
            ))
        })?;
        let data = match raw.next() {
            Some(bytes) => from_binary(dtype, &bytes, count).map_err(|e| match dtype.size_bytes() {
                Some(per) => ServeError::invalid(format!(
                    "input byte size mismatch for input '{}' for model '{model}'. Expected {}, got {}",
                    i.name,
                    count.saturating_mul(per),
                    bytes.len()
                )),
                None => bad(e),
            })?,
            None => from_contents(dtype, i.contents.unwrap_or_default(), count).map_err(bad)?,
        };
        inputs.push(Input {
            name: i.name,
            shape: i.shape,
            data,
        });
    }
    let mut outputs = Vec::with_capacity(req.outputs.len());
    let mut classification = Vec::new();
    for o in req.outputs {
        if let Some(p) = o.parameters.get("classification") {
            use pb::infer_parameter::ParameterChoice;
            let count = match p.parameter_choice {
                Some(ParameterChoice::Int64Param(n)) if n >= 0 => n as u64,
                Some(ParameterChoice::Uint64Param(n)) => n,
                _ => {
                    return Err(ServeError::invalid(format!(
                        "output '{}': the classification parameter is not a number of classes",
                        o.name
                    )));
                }
            };
            // 0: the output as it is (Triton's default).
            if count > 0 {
                classification.push((o.name.clone(), count as usize));
            }
        }
        outputs.push(o.name);
    }
    let request = protocol::Request {
        id: (!req.id.is_empty()).then_some(req.id),
        inputs,
        outputs: (!outputs.is_empty()).then_some(outputs),
        classification,
    };
    Ok((model, version, request))
}

/// The response, every output in `raw_output_contents`.
fn encode(r: protocol::Response) -> pb::ModelInferResponse {
    let mut outputs = Vec::with_capacity(r.outputs.len());
    let mut raw = Vec::with_capacity(r.outputs.len());
    for o in r.outputs {
        let mut bytes = Vec::new();
        to_binary(o.data.as_slice(), &mut bytes);
        raw.push(bytes);
        outputs.push(pb::model_infer_response::InferOutputTensor {
            name: o.name,
            datatype: wire_name(o.data.data_type()).to_owned(),
            shape: o.shape,
            parameters: Default::default(),
            contents: None,
        });
    }
    pb::ModelInferResponse {
        model_name: r.model,
        model_version: r.version.to_string(),
        id: r.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

/// One inference, counted in the statistics.
async fn infer(
    server: &Arc<Server>,
    req: pb::ModelInferRequest,
) -> Result<pb::ModelInferResponse, ServeError> {
    let start = Instant::now();
    let (model, version, request) = match decode(req) {
        Ok(d) => d,
        Err(e) => return Err(e),
    };
    let runtime = server.models.runtime(&model, version)?;
    let result = protocol::infer(runtime.clone(), request).await;
    let took = start.elapsed();
    match &result {
        Ok(r) => server
            .stats
            .record(runtime.name(), runtime.version(), Some(r.items), took),
        Err(_) => server
            .stats
            .record(runtime.name(), runtime.version(), None, took),
    }
    result.map(encode)
}

type StreamSender =
    tokio::sync::mpsc::UnboundedSender<Result<pb::ModelStreamInferResponse, Status>>;

fn stream_error(e: ServeError) -> pb::ModelStreamInferResponse {
    pb::ModelStreamInferResponse {
        error_message: e.message,
        infer_response: None,
    }
}

/// `r` with the parameter `triton_final_response` (Triton sets it on every response of a stream).
fn final_response(mut r: pb::ModelInferResponse, last: bool) -> pb::ModelInferResponse {
    r.parameters.insert(
        "triton_final_response".into(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::BoolParam(last)),
        },
    );
    r
}

/// Whether request parameter `name` is `true`.
fn bool_parameter(req: &pb::ModelInferRequest, name: &str) -> bool {
    use pb::infer_parameter::ParameterChoice;
    matches!(
        req.parameters
            .get(name)
            .and_then(|p| p.parameter_choice.as_ref()),
        Some(ParameterChoice::BoolParam(true))
    )
}

/// One request of a stream: answered here (`Some`) for a model without the decoupled policy;
/// for a decoupled one queued, its responses sent to `tx` as they come (`None`). As Triton does,
/// every response of a decoupled model carries the parameter `triton_final_response`, and with the
/// request parameter `triton_enable_empty_final_response` a final flag without a response is sent
/// as an empty response.
async fn stream_infer(
    server: &Arc<Server>,
    req: pb::ModelInferRequest,
    tx: &StreamSender,
) -> Result<Option<pb::ModelInferResponse>, ServeError> {
    let _in_flight = InFlight::new(server);
    let runtime = server.models.runtime(
        &req.model_name,
        version(&req.model_name, &req.model_version)?,
    )?;
    if !runtime.decoupled() {
        return infer(server, req).await.map(Some);
    }
    let empty_final = bool_parameter(&req, "triton_enable_empty_final_response");
    let (model, version, request) = decode(req)?;
    let runtime = server.models.runtime(&model, version)?;
    let start = Instant::now();
    let server = server.clone();
    let tx = tx.clone();
    let id = request.id.clone().unwrap_or_default();
    let (name, version) = (runtime.name().to_owned(), runtime.version());
    protocol::infer_decoupled(runtime, request, move |response, last| {
        if last {
            let items = response.as_ref().ok().map(|_| 1);
            server.stats.record(&name, version, items, start.elapsed());
        }
        let final_flag = |r| final_response(r, last);
        let answer = match response {
            Ok(Some(r)) => pb::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(final_flag(encode(r))),
            },
            Ok(None) if empty_final => pb::ModelStreamInferResponse {
                error_message: String::new(),
                infer_response: Some(final_flag(pb::ModelInferResponse {
                    model_name: name.clone(),
                    model_version: version.to_string(),
                    id: id.clone(),
                    ..Default::default()
                })),
            },
            Ok(None) => return,
            Err(e) => stream_error(e),
        };
        let _ = tx.send(Ok(answer));
    })?;
    Ok(None)
}

fn duration(v: &Value) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration {
        count: v["count"].as_u64().unwrap_or(0),
        ns: v["ns"].as_u64().unwrap_or(0),
    })
}

/// A model's statistics (the JSON the HTTP route gives) as the gRPC message.
fn statistics(v: &Value) -> pb::ModelStatistics {
    let s = &v["inference_stats"];
    pb::ModelStatistics {
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        version: v["version"].as_str().unwrap_or_default().to_owned(),
        last_inference: v["last_inference"].as_u64().unwrap_or(0),
        inference_count: v["inference_count"].as_u64().unwrap_or(0),
        execution_count: v["execution_count"].as_u64().unwrap_or(0),
        inference_stats: Some(pb::InferStatistics {
            success: duration(&s["success"]),
            fail: duration(&s["fail"]),
            queue: duration(&s["queue"]),
            compute_input: duration(&s["compute_input"]),
            compute_infer: duration(&s["compute_infer"]),
            compute_output: duration(&s["compute_output"]),
            cache_hit: duration(&s["cache_hit"]),
            cache_miss: duration(&s["cache_miss"]),
        }),
        batch_stats: v["batch_stats"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|b| pb::InferBatchStatistics {
                        batch_size: b["batch_size"].as_u64().unwrap_or(0),
                        compute_input: duration(&b["compute_input"]),
                        compute_infer: duration(&b["compute_infer"]),
                        compute_output: duration(&b["compute_output"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        memory_usage: Vec::new(),
        response_stats: Default::default(),
    }
}

type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::ModelStreamInferResponse, Status>> + Send>>;

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not supported by vigil serve"
    )))
}

#[tonic::async_trait]
impl GrpcInferenceService for Grpc {
    async fn server_live(
        &self,
        _req: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _req: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.server.models.all_ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        let v = version(&r.name, &r.version).map_err(status)?;
        Ok(Response::new(pb::ModelReadyResponse {
            ready: self.server.models.runtime(&r.name, v).is_ok(),
        }))
    }

    async fn server_metadata(
        &self,
        req: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        authorize(&self.server, &req)?;
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "triton".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        let v = version(&r.name, &r.version).map_err(status)?;
        let runtime = self.server.models.runtime(&r.name, v).map_err(status)?;
        let m = protocol::metadata(&runtime);
        let tensors = |list: &Value| -> Vec<pb::model_metadata_response::TensorMetadata> {
            list.as_array()
                .map(|l| {
                    l.iter()
                        .map(|t| pb::model_metadata_response::TensorMetadata {
                            name: t["name"].as_str().unwrap_or_default().to_owned(),
                            datatype: t["datatype"].as_str().unwrap_or_default().to_owned(),
                            shape: t["shape"]
                                .as_array()
                                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: runtime.name().to_owned(),
            versions: vec![runtime.version().to_string()],
            platform: m["platform"].as_str().unwrap_or_default().to_owned(),
            inputs: tensors(&m["inputs"]),
            outputs: tensors(&m["outputs"]),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.get_ref();
        let v = version(&r.model_name, &r.model_version).map_err(status)?;
        if self
            .server
            .models
            .runtime(&r.model_name, v)
            .is_ok_and(|rt| rt.decoupled())
        {
            // Triton's answer: a decoupled model's responses need a stream.
            return Err(Status::unimplemented(
                "ModelInfer RPC doesn't support models with decoupled transaction policy",
            ));
        }
        let _in_flight = InFlight::new(&self.server);
        infer(&self.server, req.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        req: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        authorize(&self.server, &req)?;
        let mut incoming = req.into_inner();
        // Unbounded: a decoupled model's responses are sent from its own thread, which must not
        // wait for a slow client (requests of other models are answered one at a time).
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let server = self.server.clone();
        tokio::spawn(async move {
            // Requests of one stream are answered in order, one at a time, as Triton answers
            // those of models without the decoupled policy; a decoupled model's requests are
            // queued as they come and their responses sent as the model gives them.
            while let Ok(Some(request)) = incoming.message().await {
                let answer = match stream_infer(&server, request, &tx).await {
                    Ok(None) => continue,
                    Ok(Some(r)) => pb::ModelStreamInferResponse {
                        error_message: String::new(),
                        infer_response: Some(final_response(r, true)),
                    },
                    Err(e) => stream_error(e),
                };
                if tx.send(Ok(answer)).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        let v = version(&r.name, &r.version).map_err(status)?;
        let runtime = self.server.models.runtime(&r.name, v).map_err(status)?;
        let bytes = runtime.config().raw.encode_to_vec();
        let config = pb::ModelConfig::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("the configuration as a message: {e}")))?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        let runtimes = if r.name.is_empty() {
            self.server.models.served()
        } else {
            let v = version(&r.name, &r.version).map_err(status)?;
            vec![(
                r.name.clone(),
                self.server.models.runtime(&r.name, v).map_err(status)?,
            )]
        };
        let model_stats = runtimes
            .iter()
            .map(|(name, rt)| {
                statistics(&model_stats_json(
                    rt,
                    self.server.stats.get(name, rt.version()),
                ))
            })
            .collect();
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        let rows = self.server.models.index(r.ready).map_err(status)?;
        Ok(Response::new(pb::RepositoryIndexResponse {
            models: rows
                .into_iter()
                .map(|row| pb::repository_index_response::ModelIndex {
                    name: row.name,
                    version: row.version.unwrap_or_default(),
                    state: row.state.unwrap_or_default().to_owned(),
                    reason: row.reason.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        if r.parameters.contains_key("config") {
            return Err(Status::unimplemented(format!(
                "failed to load '{}', a configuration given with the load request is not supported; edit config.pbtxt in the repository",
                r.model_name
            )));
        }
        let models = self.server.models.clone();
        tokio::task::spawn_blocking(move || models.load(&r.model_name))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        authorize(&self.server, &req)?;
        let r = req.into_inner();
        let models = self.server.models.clone();
        tokio::task::spawn_blocking(move || models.unload(&r.model_name))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        _req: Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryStatusResponse>, Status> {
        unimplemented("system shared memory")
    }

    async fn system_shared_memory_register(
        &self,
        _req: Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryRegisterResponse>, Status> {
        unimplemented("system shared memory")
    }

    async fn system_shared_memory_unregister(
        &self,
        _req: Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<pb::SystemSharedMemoryUnregisterResponse>, Status> {
        unimplemented("system shared memory")
    }

    async fn cuda_shared_memory_status(
        &self,
        _req: Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryStatusResponse>, Status> {
        unimplemented("CUDA shared memory")
    }

    async fn cuda_shared_memory_register(
        &self,
        _req: Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryRegisterResponse>, Status> {
        unimplemented("CUDA shared memory")
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _req: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<pb::CudaSharedMemoryUnregisterResponse>, Status> {
        unimplemented("CUDA shared memory")
    }

    async fn trace_setting(
        &self,
        _req: Request<pb::TraceSettingRequest>,
    ) -> Result<Response<pb::TraceSettingResponse>, Status> {
        unimplemented("tracing")
    }

    async fn log_settings(
        &self,
        _req: Request<pb::LogSettingsRequest>,
    ) -> Result<Response<pb::LogSettingsResponse>, Status> {
        unimplemented("log settings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_contents_decode_with_range_checks() {
        let c = pb::InferTensorContents {
            int_contents: vec![1, -2, 127],
            ..Default::default()
        };
        assert_eq!(
            from_contents(DataType::Int8, c.clone(), 3).unwrap(),
            TensorData::Int8(vec![1, -2, 127])
        );
        let e = from_contents(
            DataType::Int8,
            pb::InferTensorContents {
                int_contents: vec![300],
                ..Default::default()
            },
            1,
        )
        .unwrap_err();
        assert!(e.contains("(300)") && e.contains("INT8"), "{e}");
        let e = from_contents(DataType::Int32, c, 4).unwrap_err();
        assert!(e.contains("3 values") && e.contains("holds 4"), "{e}");
        assert!(
            from_contents(DataType::Fp16, Default::default(), 0)
                .unwrap_err()
                .contains("raw_input_contents")
        );
    }

    #[test]
    fn classification_parameters_are_read_per_output() {
        use pb::infer_parameter::ParameterChoice;
        let param = |c| pb::InferParameter {
            parameter_choice: Some(c),
        };
        let output = |name: &str, c: Option<ParameterChoice>| {
            pb::model_infer_request::InferRequestedOutputTensor {
                name: name.into(),
                parameters: c
                    .map(|c| ("classification".to_owned(), param(c)))
                    .into_iter()
                    .collect(),
            }
        };
        let req = pb::ModelInferRequest {
            model_name: "m".into(),
            outputs: vec![
                output("OUTPUT0", Some(ParameterChoice::Int64Param(3))),
                output("OUTPUT1", Some(ParameterChoice::Int64Param(0))),
                output("OUTPUT2", None),
            ],
            ..Default::default()
        };
        let (_, _, r) = decode(req).unwrap();
        assert_eq!(r.classification, vec![("OUTPUT0".to_owned(), 3)]);
        assert_eq!(r.outputs.map(|o| o.len()), Some(3));
        let req = pb::ModelInferRequest {
            model_name: "m".into(),
            outputs: vec![output(
                "OUTPUT0",
                Some(ParameterChoice::StringParam("3".into())),
            )],
            ..Default::default()
        };
        let e = decode(req).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArg);
    }

    #[test]
    fn raw_contents_must_be_one_per_input() {
        let req = pb::ModelInferRequest {
            model_name: "simple".into(),
            inputs: vec![Default::default(), Default::default()],
            raw_input_contents: vec![vec![0; 4]],
            ..Default::default()
        };
        let e = decode(req).unwrap_err();
        assert!(
            e.message.contains("1 raw_input_contents for 2 inputs"),
            "{e}"
        );
        let req = pb::ModelInferRequest {
            model_name: "simple".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "INPUT0".into(),
                datatype: "INT32".into(),
                shape: vec![1, 16],
                ..Default::default()
            }],
            raw_input_contents: vec![vec![0; 60]],
            ..Default::default()
        };
        let e = decode(req).unwrap_err();
        assert_eq!(
            e.message,
            "input byte size mismatch for input 'INPUT0' for model 'simple'. Expected 64, got 60"
        );
    }
}
