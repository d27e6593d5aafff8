//! Dialling peers: a gRPC channel to a peer URL, over TLS when the URL is `https://` and
//! the member has peer TLS (`--peer-cert-file` or `--peer-auto-tls`). Every peer call
//! (Raft streams, snapshots, forwarded lease and membership calls) dials through one
//! [`Dialer`], so all of them speak the same TLS.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::tls::Tls;

/// How long a peer may take to accept a connection (and finish the TLS handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Dials peer URLs; the default dials in plaintext only.
#[derive(Clone, Debug, Default)]
pub struct Dialer {
    #[cfg_attr(madsim, allow(dead_code))]
    tls: Option<Tls>,
}

impl Dialer {
    /// A dialer that presents `tls`'s certificate to `https://` peers.
    pub fn with_tls(tls: Tls) -> Dialer {
        Dialer { tls: Some(tls) }
    }

    /// A channel to `url`, connected.
    pub async fn connect(&self, url: &str) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("{url}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT);
        if !url.starts_with("https://") {
            return endpoint
                .connect()
                .await
                .map_err(|e| format!("connecting to {url}: {e}"));
        }
        #[cfg(not(madsim))]
        if let Some(tls) = &self.tls {
            return real::connect(endpoint, tls)
                .await
                .map_err(|e| format!("connecting to {url}: {e}"));
        }
        Err(format!(
            "cannot dial {url}: https peer URLs need --peer-cert-file and --peer-key-file, or --peer-auto-tls"
        ))
    }
}

#[cfg(not(madsim))]
mod real {
    use std::io;

    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;
    use tokio_rustls::client::TlsStream;
    use tokio_rustls::TlsConnector;
    use tonic::transport::{Channel, Endpoint};

    use super::{Tls, CONNECT_TIMEOUT};

    /// `endpoint` over TLS: the connection and handshake within [`CONNECT_TIMEOUT`].
    pub(super) async fn connect(
        endpoint: Endpoint,
        tls: &Tls,
    ) -> Result<Channel, tonic::transport::Error> {
        let connector = TlsConnector::from(tls.client.clone());
        let connect = tower::service_fn(move |uri: http::Uri| {
            let connector = connector.clone();
            async move {
                tokio::time::timeout(CONNECT_TIMEOUT, handshake(connector, uri))
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        ))
                    })
            }
        });
        endpoint.connect_with_connector(connect).await
    }

    /// TCP then TLS to `uri`'s host, which the peer's certificate must name (unless the
    /// member runs with auto TLS, see [`Tls::load`]).
    async fn handshake(
        connector: TlsConnector,
        uri: http::Uri,
    ) -> io::Result<TokioIo<TlsStream<TcpStream>>> {
        let invalid =
            |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: {what}"));
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let name =
            rustls::pki_types::ServerName::try_from(host).map_err(|e| invalid(&e.to_string()))?;
        Ok(TokioIo::new(connector.connect(name, tcp).await?))
    }
}
