//! Compiles Triton's gRPC protocol (`proto/grpc_service.proto`, which imports the model
//! repository's `model_config.proto`) for the server (`vigil serve`) and the client, with protox: no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let includes = ["proto", "../modelrepo/proto"];
    for f in [
        "proto/grpc_service.proto",
        "../modelrepo/proto/model_config.proto",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(["grpc_service.proto"], includes)?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
