//! What the client URL serves over plain HTTP, with etcd 3.5's paths, bodies and status
//! codes: `/health`, `/version`, `/metrics`, and the JSON gateway under `/v3/`.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::context::Context;
use super::gateway::{self, Gateway};
use crate::proto::etcdserverpb::{AlarmType, RangeRequest};
use crate::runtime::{HttpHandler, HttpRequest, HttpResponse};
use crate::server::alarm;
use crate::server::kv_apply::lock;
use crate::server::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::server::SERVER_VERSION;

/// The cluster version `/version` reports: detcd speaks the 3.5 API throughout.
pub const CLUSTER_VERSION: &str = "3.5.0";

/// Go's `http.Error` and its content sniffing of a JSON body both give this.
const TEXT: &str = "text/plain; charset=utf-8";

/// Serves the client URL's HTTP paths for one member; the gateway calls the same service
/// values the gRPC server holds.
#[derive(Clone)]
pub struct HttpApi {
    pub ctx: Context,
    pub gateway: Gateway,
}

impl HttpHandler for HttpApi {
    fn serves(&self, path: &str) -> bool {
        matches!(path, "/health" | "/version" | "/metrics") || gateway::serves(path)
    }

    fn handle(&self, request: HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> {
        let ctx = self.ctx.clone();
        let gateway = self.gateway.clone();
        Box::pin(async move {
            match request.path.as_str() {
                "/health" => health(&ctx, &request).await,
                "/version" => version(&request),
                "/metrics" => metrics(&ctx),
                _ => gateway.handle(request).await,
            }
        })
    }
}

pub(super) fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        content_type,
        body,
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

impl Health {
    fn failed(reason: String) -> Self {
        Health {
            health: "false",
            reason,
        }
    }
}

/// The alarms raised in the cluster (as applied on this member), for `/health`; an
/// unreadable alarm table counts as an unknown alarm rather than as healthy.
fn active_alarms(ctx: &Context) -> Vec<AlarmType> {
    match alarm::active(&mut lock(&ctx.store), AlarmType::None) {
        Ok(alarms) => alarms
            .iter()
            .map(|m| AlarmType::try_from(m.alarm).unwrap_or(AlarmType::None))
            .collect(),
        Err(_) => vec![AlarmType::None],
    }
}

/// etcd's `checkV3Health`: unhealthy on an alarm not excluded by `?exclude=NAME`, on no
/// leader (unless `?serializable=true`, which asks about this member alone), and when a
/// one-key range (linearizable unless serializable) fails.
async fn check_health(ctx: &Context, excluded: &[&str], serializable: bool) -> Health {
    let alarm = active_alarms(ctx)
        .into_iter()
        .find(|a| !excluded.contains(&a.as_str_name()));
    if let Some(alarm) = alarm {
        let reason = match alarm {
            AlarmType::Nospace => "ALARM NOSPACE",
            AlarmType::Corrupt => "ALARM CORRUPT",
            AlarmType::None => "ALARM UNKNOWN",
        };
        return Health::failed(reason.to_string());
    }
    if !serializable && ctx.member.status().leader == 0 {
        return Health::failed("RAFT NO LEADER".to_string());
    }
    if !serializable {
        if let Err(e) = ctx.member.read_index().await {
            return Health::failed(format!("RANGE ERROR:{e}"));
        }
    }
    let probe = RangeRequest {
        key: b"health".to_vec(),
        keys_only: true,
        limit: 1,
        serializable,
        ..RangeRequest::default()
    };
    if let Err(e) = lock(&ctx.store).kv().range(&probe) {
        return Health::failed(format!("RANGE ERROR:{e}"));
    }
    Health {
        health: "true",
        reason: String::new(),
    }
}

async fn health(ctx: &Context, request: &HttpRequest) -> HttpResponse {
    if request.method != "GET" {
        return method_not_allowed();
    }
    let serializable = query_values(&request.query, "serializable").next() == Some("true");
    let excluded: Vec<&str> = query_values(&request.query, "exclude").collect();
    let h = check_health(ctx, &excluded, serializable).await;
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

/// Prometheus's text format; the gauges etcd computes on scrape are refreshed first.
fn metrics(ctx: &Context) -> HttpResponse {
    let metrics = ctx.member.metrics();
    {
        let mut store = lock(&ctx.store);
        let (synced, unsynced, victims) = store.watcher_counts();
        metrics.watchers.set((synced + unsynced + victims) as i64);
        if let Ok(size) = store.backend().size() {
            metrics.db_total_size.set(size as i64);
        }
    }
    response(200, METRICS_CONTENT_TYPE, metrics.encode().into_bytes())
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
