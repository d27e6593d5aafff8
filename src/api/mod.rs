//! The gRPC services clients call. They translate requests and responses and map errors
//! to etcd's gRPC codes; the work happens in `server`.

pub mod cluster;
pub mod context;
pub mod errors;
pub mod gateway;
pub mod http;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod quota;
pub mod snapshot;
pub mod watch;
