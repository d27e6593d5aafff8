//! Network shims: HTTP/1.1 beside gRPC on the client listener ([`http`]), the rewriting of
//! etcdctl 3.4's HTTP/2 `:authority` URLs ([`authority`], real build only), TLS on the
//! listeners ([`tls`], [`listen`]) and on peer dials ([`dial`]). They adapt bytes on the
//! wire; they know nothing of the member.

#[cfg(not(madsim))]
pub(crate) mod authority;
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

/// One listen URL: where to bind and, for an `https://` or `unixs://` URL, its TLS.
#[derive(Clone, Debug)]
pub struct Listen {
    pub url: String,
    pub bind: Bind,
    pub tls: Option<Tls>,
}

/// Where a listen URL is bound.
#[derive(Clone, Debug)]
pub enum Bind {
    Tcp(SocketAddr),
    /// `unix://` and `unixs://`: a socket file named by the URL's `host:port`, relative to
    /// the working directory, as etcd names it (`unix://localhost:2379` binds
    /// `./localhost:2379`). The simulator has no unix sockets.
    Unix(std::path::PathBuf),
}

impl Listen {
    /// The TCP address, or an error naming the URL: the simulator binds nothing else.
    #[cfg(madsim)]
    fn tcp(&self) -> Result<SocketAddr, ListenError> {
        match &self.bind {
            Bind::Tcp(addr) => Ok(*addr),
            Bind::Unix(_) => Err(ListenError {
                url: self.url.clone(),
                source: io::Error::other("unix sockets are not simulated"),
            }),
        }
    }
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
        .serve(listens[0].tcp()?)
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
