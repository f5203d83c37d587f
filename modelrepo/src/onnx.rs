//! The inputs and outputs of an ONNX model, read straight from its protobuf file.
//!
//! Only the few fields auto-complete needs are declared (field numbers from ONNX's `onnx.proto`);
//! every other field of the file (nodes, weights, ...) is skipped by the decoder. This keeps the
//! model repository free of ONNX Runtime.

use std::path::Path;

use prost_reflect::prost;
use prost_reflect::prost::Message as _;

use super::RepoError;
use super::config::DataType;

/// `onnx.ModelProto`, only `graph`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct ModelProto {
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
}

/// `onnx.GraphProto`, only the initializers and the graph inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct GraphProto {
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

/// `onnx.TensorProto`, only `name` (the weights themselves are skipped).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct TensorProto {
    #[prost(string, optional, tag = "8")]
    name: Option<String>,
}

/// `onnx.ValueInfoProto`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct ValueInfoProto {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`, only `tensor_type` (sequences and maps are not tensors).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

/// `onnx.TypeProto.Tensor`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct TensorTypeProto {
    #[prost(int32, optional, tag = "1")]
    elem_type: Option<i32>,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

/// `onnx.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

/// `onnx.TensorShapeProto.Dimension`: a number, a symbol, or neither (unknown).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// One graph input or output of an ONNX model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxTensor {
    pub name: String,
    /// `onnx.TensorProto.DataType` number (1 = FLOAT, ...); 0 when not a tensor or unset.
    pub elem_type: i32,
    /// Shape; `-1` for a symbolic, unknown or 0 dimension. `None` when the model declares no shape
    /// (the rank is unknown).
    pub dims: Option<Vec<i64>>,
}

impl OnnxTensor {
    /// The Triton data type of the element type; [`DataType::Invalid`] for types Triton has no
    /// name for (complex numbers, 8-bit floats, ...).
    pub fn data_type(&self) -> DataType {
        onnx_data_type(self.elem_type)
    }
}

/// The inputs (without initializers) and outputs of an ONNX model's main graph, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnnxIo {
    pub inputs: Vec<OnnxTensor>,
    pub outputs: Vec<OnnxTensor>,
}

/// Triton's `DataType` for an ONNX `TensorProto.DataType` number.
pub fn onnx_data_type(elem_type: i32) -> DataType {
    match elem_type {
        1 => DataType::Fp32,
        2 => DataType::Uint8,
        3 => DataType::Int8,
        4 => DataType::Uint16,
        5 => DataType::Int16,
        6 => DataType::Int32,
        7 => DataType::Int64,
        8 => DataType::String,
        9 => DataType::Bool,
        10 => DataType::Fp16,
        11 => DataType::Fp64,
        12 => DataType::Uint32,
        13 => DataType::Uint64,
        16 => DataType::Bf16,
        _ => DataType::Invalid,
    }
}

fn tensor(info: &ValueInfoProto) -> OnnxTensor {
    let tensor_type = info.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let dims = tensor_type.and_then(|t| t.shape.as_ref()).map(|shape| {
        shape
            .dim
            .iter()
            .map(|d| match d.dim_value {
                Some(v) if v > 0 => v,
                // A symbol (`"batch"`), no value at all, or 0: a dimension of variable size.
                // Converters such as tf2onnx write 0 for sizes they do not know, and Triton's
                // configuration has no 0-size dimensions.
                _ => -1,
            })
            .collect()
    });
    OnnxTensor {
        name: info.name.clone().unwrap_or_default(),
        elem_type: tensor_type.and_then(|t| t.elem_type).unwrap_or_default(),
        dims,
    }
}

/// Decodes the graph inputs and outputs of a serialized `onnx.ModelProto`. Inputs that are also
/// initializers (weights that may be overridden) are not model inputs and are left out, as
/// ONNX Runtime leaves them out.
pub fn parse_onnx_io(bytes: &[u8]) -> Result<OnnxIo, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_owned());
    }
    let model = ModelProto::decode(bytes).map_err(|e| format!("not a protobuf ModelProto: {e}"))?;
    let graph = model
        .graph
        .ok_or_else(|| "the ONNX model has no graph".to_owned())?;
    let initializers: std::collections::HashSet<&str> = graph
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_deref().unwrap_or_default()))
        .map(tensor)
        .collect();
    let outputs = graph.output.iter().map(tensor).collect();
    Ok(OnnxIo { inputs, outputs })
}

/// Reads the graph inputs and outputs of the ONNX model file `path`.
pub fn read_onnx_io(path: &Path) -> Result<OnnxIo, RepoError> {
    let bytes = std::fs::read(path).map_err(|source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_onnx_io(&bytes).map_err(|message| RepoError::ModelFileInvalid {
        path: path.to_path_buf(),
        message,
    })
}

/// `onnx.ModelProto`, only `metadata_props` (decoded on its own: the graph is skipped).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct ModelMetadataProto {
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

/// `onnx.StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::prost_reflect::prost")]
struct StringStringEntryProto {
    #[prost(string, optional, tag = "1")]
    key: Option<String>,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// The `metadata_props` (key, value) of a serialized `onnx.ModelProto`, in file order.
pub fn parse_onnx_metadata(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".to_owned());
    }
    let model =
        ModelMetadataProto::decode(bytes).map_err(|e| format!("not a protobuf ModelProto: {e}"))?;
    Ok(model
        .metadata_props
        .into_iter()
        .map(|e| (e.key.unwrap_or_default(), e.value.unwrap_or_default()))
        .collect())
}

/// The metadata value of `key` in the ONNX model file `path` (`None` when the model has no such key).
pub fn read_onnx_metadata(path: &Path, key: &str) -> Result<Option<String>, RepoError> {
    let bytes = std::fs::read(path).map_err(|source| RepoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let props = parse_onnx_metadata(&bytes).map_err(|message| RepoError::ModelFileInvalid {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(props.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
}

/// A serialized ONNX model with the given graph inputs and outputs (name, element type, dims
/// with -1 written as the symbol `N`) and no nodes: enough for auto-complete tests.
#[cfg(test)]
pub(crate) fn test_model_bytes(
    inputs: &[(&str, i32, &[i64])],
    outputs: &[(&str, i32, &[i64])],
) -> Vec<u8> {
    let info = |(name, elem_type, dims): &(&str, i32, &[i64])| ValueInfoProto {
        name: Some((*name).to_owned()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(*elem_type),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: (d >= 0).then_some(d),
                            dim_param: (d < 0).then(|| "N".to_owned()),
                        })
                        .collect(),
                }),
            }),
        }),
    };
    ModelProto {
        graph: Some(GraphProto {
            initializer: Vec::new(),
            input: inputs.iter().map(info).collect(),
            output: outputs.iter().map(info).collect(),
        }),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn model(name: &str) -> Option<PathBuf> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../models/{name}/1/model.onnx"));
        if path.is_file() {
            Some(path)
        } else {
            println!(
                "SKIPPED: {} is not installed (run `make setup`)",
                path.display()
            );
            None
        }
    }

    #[test]
    fn metadata_props_are_read() {
        let bytes = ModelMetadataProto {
            metadata_props: vec![
                StringStringEntryProto {
                    key: Some("character".into()),
                    value: Some("a\nb".into()),
                },
                StringStringEntryProto {
                    key: Some("other".into()),
                    value: None,
                },
            ],
        }
        .encode_to_vec();
        let props = parse_onnx_metadata(&bytes).unwrap();
        assert_eq!(
            props,
            vec![
                ("character".to_owned(), "a\nb".to_owned()),
                ("other".to_owned(), String::new())
            ]
        );
        // A model without metadata has none; the graph is not needed.
        let plain = test_model_bytes(&[("x", 1, &[-1, 3])], &[("y", 1, &[-1])]);
        assert!(parse_onnx_metadata(&plain).unwrap().is_empty());
        assert!(parse_onnx_metadata(&[]).is_err());
    }

    #[test]
    fn ppocr_rec_dictionary_is_in_the_metadata() {
        let Some(path) = model("ppocr_rec") else {
            return;
        };
        let dict = read_onnx_metadata(&path, "character").unwrap().unwrap();
        assert_eq!(dict.lines().count(), 6623);
        assert_eq!(read_onnx_metadata(&path, "no such key").unwrap(), None);
    }

    fn value_info(name: &str, elem_type: i32, dims: &[Dimension]) -> ValueInfoProto {
        ValueInfoProto {
            name: Some(name.to_owned()),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: Some(elem_type),
                    shape: Some(TensorShapeProto { dim: dims.to_vec() }),
                }),
            }),
        }
    }

    fn value(v: i64) -> Dimension {
        Dimension {
            dim_value: Some(v),
            dim_param: None,
        }
    }

    fn symbol(s: &str) -> Dimension {
        Dimension {
            dim_value: None,
            dim_param: Some(s.to_owned()),
        }
    }

    #[test]
    fn decodes_a_hand_built_model_and_drops_initializer_inputs() {
        let model = ModelProto {
            graph: Some(GraphProto {
                initializer: vec![TensorProto {
                    name: Some("weight".into()),
                }],
                input: vec![
                    value_info("images", 1, &[symbol("N"), value(3), value(64), value(64)]),
                    value_info("weight", 1, &[value(8)]),
                    value_info("ids", 7, &[Dimension::default(), value(4)]),
                ],
                output: vec![value_info("scores", 10, &[symbol("N"), value(80)])],
            }),
        };
        let io = parse_onnx_io(&model.encode_to_vec()).unwrap();
        assert_eq!(
            io.inputs,
            vec![
                OnnxTensor {
                    name: "images".into(),
                    elem_type: 1,
                    dims: Some(vec![-1, 3, 64, 64]),
                },
                OnnxTensor {
                    name: "ids".into(),
                    elem_type: 7,
                    dims: Some(vec![-1, 4]),
                },
            ]
        );
        assert_eq!(io.inputs[1].data_type(), DataType::Int64);
        assert_eq!(io.outputs[0].data_type(), DataType::Fp16);
        assert_eq!(io.outputs[0].dims, Some(vec![-1, 80]));
    }

    #[test]
    fn rejects_what_is_not_an_onnx_model() {
        assert!(parse_onnx_io(b"").unwrap_err().contains("empty"));
        assert!(parse_onnx_io(b"onnx").is_err());
        // A well-formed protobuf without a graph.
        assert!(
            parse_onnx_io(&[0x08, 0x07])
                .unwrap_err()
                .contains("no graph")
        );
        assert_eq!(onnx_data_type(14), DataType::Invalid); // COMPLEX64
    }

    #[test]
    fn nanodet_io() {
        let Some(path) = model("nanodet") else { return };
        let io = read_onnx_io(&path).unwrap();
        println!("{io:?}");
        assert_eq!(io.inputs.len(), 1);
        assert_eq!(io.inputs[0].name, "input_1:0");
        assert_eq!(io.inputs[0].data_type(), DataType::Fp32);
        assert_eq!(io.inputs[0].dims, Some(vec![-1, 3, 416, 416]));
        assert_eq!(io.outputs.len(), 6);
        for output in &io.outputs {
            assert_eq!(output.data_type(), DataType::Fp32);
            let dims = output.dims.as_ref().unwrap();
            assert_eq!(dims.len(), 3, "{output:?}");
            assert_eq!(dims[0], -1, "{output:?}");
        }
    }

    #[test]
    fn centernet_io() {
        let Some(path) = model("centernet") else {
            return;
        };
        let io = read_onnx_io(&path).unwrap();
        println!("{io:?}");
        assert_eq!(io.inputs.len(), 1);
        assert_eq!(io.inputs[0].name, "tower_0/images:0");
        assert_eq!(io.inputs[0].dims, Some(vec![1, 512, 512, 3]));
        let detections = io
            .outputs
            .iter()
            .find(|o| o.name == "tower_0/detections")
            .unwrap();
        assert_eq!(detections.dims, Some(vec![1, 100, 6]));
        assert_eq!(detections.data_type(), DataType::Fp32);
    }
}
