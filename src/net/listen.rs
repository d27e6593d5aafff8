//! The listeners of one kind (client or peer): every listen URL bound (a TCP port, or a
//! unix socket for `unix://` and `unixs://`), each served in plaintext or TLS, their connections merged into one stream for tonic. A TLS handshake
//! runs on a task of its own, so a slow or silent client never holds up the others.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use super::tls::{ConnInfo, Tls};
use super::{Bind, Listen, ListenError};
use crate::runtime::{Clock, Disk, RealDisk};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (e.g. out of file descriptors), as Go's server backs off.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Accepted connections not yet taken by the server.
const ACCEPTED_QUEUE: usize = 64;

/// Binds every listen URL, then yields their connections, TLS ones after the handshake.
pub(super) async fn incoming(
    listens: Vec<Listen>,
) -> Result<impl futures::Stream<Item = io::Result<Conn>>, ListenError> {
    let (tx, mut rx) = mpsc::channel(ACCEPTED_QUEUE);
    for listen in listens {
        let failed = |source| ListenError {
            url: listen.url.clone(),
            source,
        };
        match &listen.bind {
            Bind::Tcp(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(failed)?;
                tokio::spawn(accept(listener, listen.tls, tx.clone()));
            }
            Bind::Unix(path) => {
                // A socket file left by an earlier run is replaced, as etcd replaces it.
                match RealDisk.remove(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(failed(e)),
                    _ => {}
                }
                let listener = UnixListener::bind(path).map_err(failed)?;
                tokio::spawn(accept(listener, listen.tls, tx.clone()));
            }
        }
    }
    Ok(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok))
    }))
}

/// A bound socket of either kind.
trait Accept: Send + 'static {
    type Stream: Io + 'static;
    /// The next connection, and who is at its other end (for logs).
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, String)>>;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, String)>> {
        self.poll_accept(cx).map_ok(|(tcp, remote)| {
            // As tonic's own listener does: responses are small and latency matters.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!("connection from {remote}: cannot set TCP_NODELAY: {e}");
            }
            (tcp, remote.to_string())
        })
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, String)>> {
        self.poll_accept(cx)
            .map_ok(|(stream, _)| (stream, "a unix socket".to_string()))
    }
}

/// Accepts on `listener` until the server stops taking connections.
async fn accept(listener: impl Accept, tls: Option<Tls>, tx: mpsc::Sender<Conn>) {
    let names_user = tls.as_ref().is_some_and(|t| t.client_cert_auth);
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.server));
    loop {
        let accepted = tokio::select! {
            accepted = std::future::poll_fn(|cx| listener.poll_next(cx)) => accepted,
            () = tx.closed() => return,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept: {e}");
                Clock.sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(acceptor) = acceptor.clone() else {
            if tx.send(Conn::new(tcp, ConnInfo::default())).await.is_err() {
                return;
            }
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let session = stream.get_ref().1;
                    let common_name = session
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .filter(|_| names_user)
                        .and_then(super::tls::common_name);
                    let _ = tx.send(Conn::new(stream, ConnInfo { common_name })).await;
                }
                // etcd logs refused handshakes the same way.
                Ok(Err(e)) => tracing::warn!("rejected connection from {remote}: {e}"),
                Err(_) => tracing::warn!("rejected connection from {remote}: handshake timed out"),
            }
        });
    }
}

/// What an accepted connection's bytes go through: a socket or a TLS session on one.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An accepted connection, and who is at its other end.
pub struct Conn {
    io: Box<dyn Io>,
    info: ConnInfo,
}

impl Conn {
    fn new(io: impl Io + 'static, info: ConnInfo) -> Conn {
        Conn {
            io: Box::new(io),
            info,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// tonic puts this into every request's extensions, where the API finds the client's
/// certificate name.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}
