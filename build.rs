//! Compiles the vendored Kubernetes KMS v2 API (proto/) for `certop kms`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/k8s.io/kms/apis/v2/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
