//! Compiles `proto/*.proto` with `protox` (pure Rust, no system `protoc`) and generates
//! prost messages plus tonic clients and servers with `tonic-prost-build`.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "metapb.proto",
    "errorpb.proto",
    "eraftpb.proto",
    "deadlock.proto",
    "kvrpcpb.proto",
    "pdpb.proto",
    "tikvpb.proto",
    "keyspacepb.proto",
    "mvccpb.proto",
    "etcdserverpb.proto",
    "storepb.proto",
    "placementpb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed=build.rs");
    for f in FILES {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
    }

    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    let fds = protox::compile(&paths, [&dir])?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Every RPC gets a default body returning `Unimplemented`, so servers only
        // implement what they serve.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
