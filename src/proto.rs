//! Generated protobuf types and gRPC services.

#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod raftpb {
    tonic::include_proto!("raftpb");
}
pub mod walpb {
    tonic::include_proto!("walpb");
}
pub mod peerpb {
    tonic::include_proto!("peerpb");
}
pub mod internalpb {
    tonic::include_proto!("internalpb");
}
