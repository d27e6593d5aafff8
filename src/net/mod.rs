//! Network shims: HTTP/1.1 beside gRPC on the client listener ([`http`]), the rewriting of
//! etcdctl 3.4's HTTP/2 `:authority` URLs ([`authority`], real build only), TLS on the
//! listeners ([`tls`], [`listen`]) and on peer dials ([`dial`]). They adapt bytes on the
//! wire; they know nothing of the member.

#[cfg(not(madsim))]
mod authority;
mod dial;
mod http;
#[cfg(not(madsim))]
mod listen;
pub mod tls;

use std::io;
use std::net::SocketAddr;

pub use dial::Dialer;
pub use http::{
    client_server, serve_clients, BodyStream, ClientRouter, HttpBody, HttpHandler, HttpRequest,
    HttpResponse,
};
pub use tls::{ConnInfo, Tls, TlsSpec};

/// One listen URL: the address to bind and, for an `https://` URL, its TLS.
#[derive(Clone, Debug)]
pub struct Listen {
    pub url: String,
    pub addr: SocketAddr,
    pub tls: Option<Tls>,
}

/// A listener that could not be bound, or failed.
#[derive(Debug, thiserror::Error)]
#[error("listening on {url}: {source}")]
pub struct ListenError {
    pub url: String,
    pub source: io::Error,
}

/// Serves the peer services on every peer listen URL.
#[cfg(not(madsim))]
pub async fn serve_peers(
    router: tonic::transport::server::Router,
    listens: Vec<Listen>,
) -> Result<(), ListenError> {
    let urls = urls(&listens);
    let incoming = listen::incoming(listens).await?;
    router
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| ListenError {
            url: urls,
            source: io::Error::other(e),
        })
}

/// Serves the peer services on the first peer listen URL: the simulator needs no more.
#[cfg(madsim)]
pub async fn serve_peers(
    router: tonic::transport::server::Router,
    listens: Vec<Listen>,
) -> Result<(), ListenError> {
    let urls = urls(&listens);
    router
        .serve(listens[0].addr)
        .await
        .map_err(|e| ListenError {
            url: urls,
            source: io::Error::other(e),
        })
}

/// The listen URLs, for errors about all of them.
fn urls(listens: &[Listen]) -> String {
    let urls: Vec<&str> = listens.iter().map(|l| l.url.as_str()).collect();
    urls.join(",")
}
