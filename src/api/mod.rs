//! The adapters clients and peers call: gRPC services and the HTTP paths. Each decodes a
//! request, calls the server (`crate::server::Server`), and encodes its answer; errors
//! become etcd's gRPC codes in one place ([`errors`]). No business logic lives here.

pub mod auth;
pub mod cluster;
pub mod election;
pub mod errors;
pub mod gateway;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod peer;
pub mod watch;
mod watch_coalesce;

/// A gRPC request stream's messages, up to its end or first error.
fn messages<T: Send + 'static>(
    requests: tonic::Streaming<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(requests, |mut r| async move {
        r.message().await.ok().flatten().map(|m| (m, r))
    })
}
