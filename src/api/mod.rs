//! The gRPC services clients call. They translate requests and responses and map errors
//! to etcd's gRPC codes; the work happens in `server`.

pub mod errors;
pub mod kv;
pub mod maintenance;
pub mod watch;
