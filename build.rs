//! Compiles the .proto files without a system protoc: protox parses them into a
//! descriptor set, and madsim-tonic-build generates both the real and the simulated code.
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/etcd/mvccpb/kv.proto",
    "proto/etcd/authpb/auth.proto",
    "proto/etcd/etcdserverpb/rpc.proto",
    "proto/etcd/v3electionpb/v3election.proto",
    "proto/etcd/v3lockpb/v3lock.proto",
    "proto/detcd/raftpb.proto",
    "proto/detcd/walpb.proto",
    "proto/detcd/peerpb.proto",
    "proto/detcd/internalpb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto/etcd", "proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("detcd_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(PROTOS, &["proto/etcd", "proto"])?;
    Ok(())
}
