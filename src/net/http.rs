//! HTTP/1.1 beside gRPC on the client listener, as etcd serves `/health`, `/version`,
//! `/metrics` and the JSON gateway on its client URLs.
//!
//! The handler is plain data in, data out ([`HttpRequest`] to [`HttpResponse`]), so it
//! compiles and can be called the same way in both builds. A response body is either whole
//! or a stream of chunks (the gateway's watch, keep-alive, observe and snapshot), sent as
//! they come with chunked transfer encoding. So is a request body, for the paths the handler
//! asks for it as it comes (the gateway's bidirectional streams). Only the real build puts it on
//! the wire: a tower layer in front of tonic's gRPC routes takes the requests for the
//! handler's paths, and tonic accepts HTTP/1.1 connections as well as HTTP/2. Under madsim
//! the client listener serves gRPC only. The real listener also accepts etcdctl 3.4's
//! HTTP/2 requests whose `:authority` is a URL ([`super::authority`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;

use super::{Listen, ListenError};

/// A request for one of the handler's paths, its body read in full unless the handler
/// streams it ([`HttpHandler::streams_body`]).
#[derive(Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// The query string without the `?`, not decoded.
    pub query: String,
    /// The `Authorization` header: the gateway's callers send their auth token in it.
    pub authorization: Option<String>,
    /// `Grpc-Metadata-<name>` headers as (name, value), name in lower case: grpc-gateway
    /// passes them to the call as its metadata.
    pub metadata: Vec<(String, String)>,
    /// The Common Name of the client's TLS certificate, if it presented one.
    pub common_name: Option<String>,
    /// Empty when the body is streamed.
    pub body: Bytes,
    /// The body as it comes, if streamed; it ends with the body or at a read error.
    pub body_stream: Option<BodyStream>,
    /// The most the listener takes in one body, or in one message of a streamed body.
    pub max_body: usize,
}

/// A request body as it comes.
pub type BodyStream = BoxStream<'static, Bytes>;

pub struct HttpResponse {
    pub status: u16,
    /// Empty for no `Content-Type` header.
    pub content_type: &'static str,
    /// Headers beyond the content type and etcd's CORS headers, which every answer has.
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: HttpBody,
}

pub enum HttpBody {
    Full(Vec<u8>),
    /// Chunks sent as they come; the response ends with the stream, and a client that goes
    /// away drops it.
    Stream(BoxStream<'static, Vec<u8>>),
}

/// What the client listener serves besides gRPC.
pub trait HttpHandler: Send + Sync + 'static {
    /// Whether gRPC requests for `path` go to this handler rather than to gRPC. Every other
    /// request (HTTP/1.x, or HTTP/2 without a gRPC content type) goes to the handler, as
    /// etcd sends each request that is not gRPC to its HTTP mux.
    fn serves(&self, path: &str) -> bool;

    /// Whether the body of a request for `path` is handed over as it comes rather than
    /// read in full first.
    fn streams_body(&self, _path: &str) -> bool {
        false
    }

    fn handle(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>>;
}

/// The server builder for the client listener: gRPC, and `handler`'s paths over HTTP/1.1
/// with request bodies of at most `max_body` bytes.
#[cfg(not(madsim))]
pub fn client_server(
    handler: Arc<dyn HttpHandler>,
    max_body: usize,
) -> tonic::transport::Server<tower_layer::Stack<real::HttpLayer, tower_layer::Identity>> {
    tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(real::HttpLayer { handler, max_body })
}

/// The server builder for the client listener: gRPC only under the simulator.
#[cfg(madsim)]
pub fn client_server(_handler: Arc<dyn HttpHandler>, _max_body: usize) -> tonic::transport::Server {
    tonic::transport::Server::builder()
}

/// The client listener's services, as [`client_server`] and `add_service` build them.
#[cfg(not(madsim))]
pub type ClientRouter =
    tonic::transport::server::Router<tower_layer::Stack<real::HttpLayer, tower_layer::Identity>>;

/// The client listener's services, as [`client_server`] and `add_service` build them.
#[cfg(madsim)]
pub type ClientRouter = tonic::transport::server::Router;

/// Serves `router` on every client listen URL until `shutdown`. Each connection goes
/// through [`super::authority::Authority`], so that etcdctl 3.4's `http://` endpoints work.
#[cfg(not(madsim))]
pub async fn serve_clients(
    router: ClientRouter,
    listens: Vec<Listen>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError> {
    use futures::StreamExt;
    let urls = super::urls(&listens);
    let incoming = super::listen::incoming(listens).await?;
    let incoming = incoming.map(|conn| conn.map(super::authority::Authority::new));
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ListenError {
            url: urls,
            source: io::Error::other(e),
        })
}

/// Serves `router` on the first client listen URL until `shutdown`: the simulator needs
/// no more.
#[cfg(madsim)]
pub async fn serve_clients(
    router: ClientRouter,
    listens: Vec<Listen>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError> {
    router
        .serve_with_shutdown(listens[0].tcp()?, shutdown)
        .await
        .map_err(|e| ListenError {
            url: super::urls(&listens),
            source: io::Error::other(e),
        })
}

#[cfg(not(madsim))]
mod real {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use futures::future::{BoxFuture, Either};
    use futures::StreamExt;
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
    use tonic::body::Body;

    use super::{HttpBody, HttpHandler, HttpRequest, HttpResponse};

    /// Puts [`HttpService`] in front of the gRPC routes.
    #[derive(Clone)]
    pub struct HttpLayer {
        pub(super) handler: Arc<dyn HttpHandler>,
        pub(super) max_body: usize,
    }

    impl<S> tower_layer::Layer<S> for HttpLayer {
        type Service = HttpService<S>;

        fn layer(&self, inner: S) -> HttpService<S> {
            HttpService {
                inner,
                handler: self.handler.clone(),
                max_body: self.max_body,
            }
        }
    }

    /// Whether `request` is gRPC, as etcd tells: HTTP/2 with a `application/grpc…` content
    /// type.
    fn is_grpc(request: &http::Request<Body>) -> bool {
        let content_type = request.headers().get(http::header::CONTENT_TYPE);
        request.version() == http::Version::HTTP_2
            && content_type.is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"))
    }

    /// Sends gRPC requests to `inner`, but those for the handler's paths, and everything
    /// else to the handler.
    #[derive(Clone)]
    pub struct HttpService<S> {
        inner: S,
        handler: Arc<dyn HttpHandler>,
        max_body: usize,
    }

    impl<S> tower_service::Service<http::Request<Body>> for HttpService<S>
    where
        S: tower_service::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = Infallible,
            > + Send,
        S::Future: Send + 'static,
    {
        type Response = http::Response<Body>;
        type Error = Infallible;
        /// gRPC requests pass through unboxed; only HTTP ones pay for a boxed future.
        type Future =
            Either<S::Future, BoxFuture<'static, Result<http::Response<Body>, Infallible>>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            if is_grpc(&request) && !self.handler.serves(request.uri().path()) {
                return Either::Left(self.inner.call(request));
            }
            let handler = self.handler.clone();
            let max_body = self.max_body;
            let streamed = handler.streams_body(request.uri().path());
            Either::Right(Box::pin(async move {
                let (parts, body) = request.into_parts();
                let (body, body_stream) = if streamed {
                    let chunks = body
                        .into_data_stream()
                        .take_while(|chunk| std::future::ready(chunk.is_ok()))
                        .map(Result::unwrap_or_default);
                    (Bytes::new(), Some(chunks.boxed()))
                } else {
                    match Limited::new(body, max_body).collect().await {
                        Ok(collected) => (collected.to_bytes(), None),
                        Err(e) if e.is::<LengthLimitError>() => {
                            return Ok(respond(plain(413, "http: request body too large\n")))
                        }
                        Err(_) => return Ok(respond(plain(400, "400 Bad Request\n"))),
                    }
                };
                let request = HttpRequest {
                    method: parts.method.as_str().to_string(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    authorization: parts
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    metadata: parts
                        .headers
                        .iter()
                        .filter_map(|(name, value)| {
                            let name = name.as_str().strip_prefix("grpc-metadata-")?;
                            Some((name.to_string(), value.to_str().ok()?.to_string()))
                        })
                        .collect(),
                    common_name: parts
                        .extensions
                        .get::<super::super::ConnInfo>()
                        .and_then(|c| c.common_name.clone()),
                    body,
                    body_stream,
                    max_body,
                };
                Ok(respond(handler.handle(request).await))
            }))
        }
    }

    /// The CORS headers etcd's HTTP handler sends with every answer.
    const CORS: [(&str, &str); 3] = [
        (
            "access-control-allow-headers",
            "accept, content-type, authorization",
        ),
        (
            "access-control-allow-methods",
            "POST, GET, OPTIONS, PUT, DELETE",
        ),
        ("access-control-allow-origin", "*"),
    ];

    fn plain(status: u16, text: &str) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: HttpBody::Full(text.as_bytes().to_vec()),
        }
    }

    fn respond(r: HttpResponse) -> http::Response<Body> {
        let body = match r.body {
            HttpBody::Full(bytes) => Body::new(Full::new(Bytes::from(bytes))),
            HttpBody::Stream(chunks) => Body::new(StreamBody::new(
                chunks.map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))),
            )),
        };
        let mut builder = http::Response::builder().status(r.status);
        // etcd's HTTP handler allows any origin (its default `--cors`).
        for (name, value) in CORS.iter().chain(&r.headers) {
            builder = builder.header(*name, *value);
        }
        if !r.content_type.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, r.content_type);
        }
        builder
            .body(body)
            .expect("a status code and static headers make a valid response")
    }
}
