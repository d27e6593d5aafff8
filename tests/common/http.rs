//! A plain HTTP/1.1 client (hyper) for the client URL's `/health`, `/version`, `/metrics`
//! and JSON gateway, and a reader for Prometheus's text format.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A response's status, `Content-Type` and body.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// Sends one request on a fresh connection to `127.0.0.1:port`, with the
/// `authorization` header if any; returns once the response's head has come.
async fn send<B>(
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: B,
) -> std::io::Result<hyper::Response<hyper::body::Incoming>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json");
    if let Some(token) = authorization {
        req = req.header("authorization", token);
    }
    let req = req.body(body).map_err(std::io::Error::other)?;
    sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)
}

/// Sends one request on a fresh connection to `127.0.0.1:port`.
pub async fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<Reply> {
    let resp = send(port, method, path, None, full(body)).await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn full(body: &str) -> Full<Bytes> {
    Full::new(Bytes::from(body.to_string()))
}

pub async fn get(port: u16, path: &str) -> std::io::Result<Reply> {
    request(port, "GET", path, "").await
}

/// The value of the sample named exactly `sample` (labels included, if any) in a
/// Prometheus text exposition.
pub fn sample(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// Writes `request` as is on a fresh connection and returns everything the server sends
/// until it closes: what curl would see. The request should say `Connection: close`.
pub async fn raw(port: u16, request: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A response read as it comes: its status, then its body line by line.
pub struct Lines {
    pub status: u16,
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Lines {
    /// The next line without its newline (a last line may lack one), or `None` once the
    /// body has ended.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                _ if self.buf.is_empty() => return None,
                _ => {
                    let line = std::mem::take(&mut self.buf);
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
            }
        }
    }
}

/// Sends `POST path` with `body` and the `authorization` header if any, returning once
/// the response's head has come.
pub async fn post_stream(
    port: u16,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> std::io::Result<Lines> {
    let resp = send(port, "POST", path, authorization, full(body)).await?;
    Ok(Lines {
        status: resp.status().as_u16(),
        body: resp.into_body(),
        buf: Vec::new(),
    })
}

/// Sends `POST path` with a chunked body: the chunks `first`, then whatever is sent on
/// the returned sender, ending when it is dropped. Returns once the response's head has
/// come.
pub async fn post_chunked(
    port: u16,
    path: &str,
    first: &[&str],
) -> std::io::Result<(tokio::sync::mpsc::UnboundedSender<String>, Lines)> {
    use hyper::body::Frame;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for chunk in first {
        tx.send(chunk.to_string()).expect("the receiver is here");
    }
    let chunks = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|c| c.map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(c)))))
    });
    let body = http_body_util::StreamBody::new(chunks);
    let resp = send(port, "POST", path, None, body).await?;
    let lines = Lines {
        status: resp.status().as_u16(),
        body: resp.into_body(),
        buf: Vec::new(),
    };
    Ok((tx, lines))
}
