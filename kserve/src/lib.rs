//! Triton's inference protocol (KServe v2 with Triton's extensions), shared by Vigil's server
//! (`vigil serve`) and its client (remote inference in `vigilinfer`):
//!
//! - [`pb`]: the gRPC messages and services of `proto/grpc_service.proto` (the package, service,
//!   message and field names and numbers of Triton's `grpc_service.proto`);
//! - [`tensors`]: tensors on the wire (data type names, JSON data, the binary tensor data extension);
//! - [`client`]: a model served by one or more remote servers (gRPC or HTTP/REST, binary tensors),
//!   with a deadline per request, failover to the next server and reconnection.
//!
//! Invariant: this crate knows the protocol and tensors, never what a model's outputs mean.

pub mod client;
pub mod tensors;

/// The code generated from `proto/grpc_service.proto` and `model_config.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}
