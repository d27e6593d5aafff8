//! What the client URL serves over plain HTTP, with etcd 3.5's paths, bodies and status
//! codes: `/health`, `/version`, `/metrics`, the JSON gateway under `/v3/` (and under the
//! deprecated `/v3beta/`, which etcd 3.4 and 3.5 still serve), Go's 404 for other paths.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::gateway::{self, Gateway};
use crate::net::{HttpBody, HttpHandler, HttpRequest, HttpResponse};
use crate::server::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::server::{Server, SERVER_VERSION};

/// The cluster version `/version` reports: detcd speaks the 3.5 API throughout.
pub const CLUSTER_VERSION: &str = "3.5.0";

/// What a `--listen-metrics-urls` URL serves, as etcd's metrics mux: `/metrics` and
/// `/health`, and Go's 404 for any other path.
pub struct MetricsHttp(pub Server);

impl HttpHandler for MetricsHttp {
    fn serves(&self, _path: &str) -> bool {
        true
    }

    fn handle(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        let server = self.0.clone();
        Box::pin(async move {
            match request.path.as_str() {
                "/health" => health(&server, &request.method, &request.query).await,
                "/metrics" => metrics(&server),
                _ => not_found(),
            }
        })
    }
}

/// Go's `http.Error` and its content sniffing of a JSON body both give this.
const TEXT: &str = "text/plain; charset=utf-8";

/// Serves the client URL's HTTP paths for one member; the gateway calls the same service
/// values the gRPC server holds.
#[derive(Clone)]
pub struct HttpApi {
    pub server: Server,
    pub gateway: Gateway,
}

impl HttpHandler for HttpApi {
    fn serves(&self, path: &str) -> bool {
        matches!(path, "/health" | "/version" | "/metrics") || gateway_path(path).is_some()
    }

    fn streams_body(&self, path: &str) -> bool {
        gateway_path(path).is_some_and(|path| gateway::streams_body(&path))
    }

    fn handle(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        let server = self.server.clone();
        let gateway = self.gateway.clone();
        Box::pin(async move {
            match request.path.as_str() {
                // A CORS preflight: etcd answers it for any path, with its CORS headers.
                _ if request.method == "OPTIONS" => response(200, "", Vec::new()),
                "/health" => health(&server, &request.method, &request.query).await,
                "/version" => version(&request),
                "/metrics" => metrics(&server),
                path => match gateway_path(path) {
                    Some(path) => gateway.handle(HttpRequest { path, ..request }).await,
                    None => not_found(),
                },
            }
        })
    }
}

/// The gateway path a request for `path` calls, if any: `/v3beta/<call>` is `/v3/<call>`.
fn gateway_path(path: &str) -> Option<String> {
    match path.strip_prefix("/v3beta/") {
        Some(call) => Some(format!("/v3/{call}")),
        None => gateway::serves(path).then(|| path.to_string()),
    }
}

/// Go's `http.NotFound`, which etcd's HTTP mux answers for a path it does not serve.
fn not_found() -> HttpResponse {
    response(404, TEXT, b"404 page not found\n".to_vec())
}

pub(super) fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        content_type,
        headers: Vec::new(),
        body: HttpBody::Full(body),
    }
}

/// etcd's answer to a method its handler does not take.
pub(super) fn method_not_allowed() -> HttpResponse {
    response(405, TEXT, b"Method Not Allowed\n".to_vec())
}

/// Every value of the query parameter `name`, in order (no percent-decoding: the values
/// etcd's handlers look at are plain words).
fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    query
        .split('&')
        .filter_map(move |pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// `/health`'s body, field for field etcd's `etcdhttp.Health`.
#[derive(Serialize)]
struct Health {
    health: &'static str,
    reason: String,
}

/// etcd's `/health`: `?exclude=NAME` ignores an alarm, `?serializable=true` asks about
/// this member alone.
async fn health(server: &Server, method: &str, query: &str) -> HttpResponse {
    if method != "GET" {
        return method_not_allowed();
    }
    let serializable = query_values(query, "serializable").next() == Some("true");
    let excluded: Vec<&str> = query_values(query, "exclude").collect();
    let h = match server.health(&excluded, serializable).await {
        None => Health {
            health: "true",
            reason: String::new(),
        },
        Some(reason) => Health {
            health: "false",
            reason,
        },
    };
    let mut body = serde_json::to_vec(&h).expect("a struct of strings serializes");
    if h.health == "true" {
        response(200, TEXT, body)
    } else {
        tracing::warn!(reason = %h.reason, "serving /health false");
        body.push(b'\n');
        response(503, TEXT, body)
    }
}

/// `/version`'s body, field for field etcd's `version.Versions`.
#[derive(Serialize)]
struct Versions {
    etcdserver: &'static str,
    etcdcluster: &'static str,
}

fn version(request: &HttpRequest) -> HttpResponse {
    if request.method != "GET" {
        return method_not_allowed();
    }
    let versions = Versions {
        etcdserver: SERVER_VERSION,
        etcdcluster: CLUSTER_VERSION,
    };
    let body = serde_json::to_vec(&versions).expect("a struct of strings serializes");
    response(200, "application/json", body)
}

/// Prometheus's text format.
fn metrics(server: &Server) -> HttpResponse {
    response(
        200,
        METRICS_CONTENT_TYPE,
        server.metrics_text().into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::query_values;

    #[test]
    fn query_values_in_order() {
        let q = "exclude=NOSPACE&serializable=true&exclude=CORRUPT&flag";
        assert_eq!(
            query_values(q, "exclude").collect::<Vec<_>>(),
            ["NOSPACE", "CORRUPT"]
        );
        assert_eq!(query_values(q, "serializable").next(), Some("true"));
        assert_eq!(query_values(q, "flag").next(), Some(""));
        assert_eq!(query_values("", "exclude").next(), None);
    }
}
