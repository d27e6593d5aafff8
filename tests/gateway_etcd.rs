//! The JSON gateway against etcd 3.5.1's: one script of curl-like requests (streams
//! included: watch, lease keep-alive, election observe, snapshot; auth with its token in
//! the `Authorization` header) runs against both, and every answer must match, headers'
//! ids and terms aside.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::poll;
use common::http::{post_stream, raw, request, Lines};
use common::{etcd35, Member, Process};
use serde_json::Value;

const LINE_WAIT: Duration = Duration::from_secs(10);

/// `line` with what differs between two clusters taken out: ids, terms, tokens, hashes and
/// snapshot bytes. A line that is not JSON stays as it is.
fn normalize(line: &str) -> String {
    fn walk(v: &mut Value) {
        if let Value::Object(map) = v {
            if let Some(Value::Object(header)) = map.get_mut("header") {
                for id in ["cluster_id", "member_id", "raft_term"] {
                    header.remove(id);
                }
            }
            for hidden in ["token", "hash", "blob", "remaining_bytes"] {
                if let Some(x) = map.get_mut(hidden) {
                    *x = Value::from("…");
                }
            }
            map.values_mut().for_each(walk);
        }
    }
    match serde_json::from_str::<Value>(line) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        Err(_) => line.to_string(),
    }
}

async fn open(port: u16, path: &str, token: Option<&str>, body: &str) -> Lines {
    tokio::time::timeout(LINE_WAIT, post_stream(port, path, token, body))
        .await
        .unwrap_or_else(|_| panic!("POST {path} {body}: no answer within {LINE_WAIT:?}"))
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The next line of `lines`, normalized; a stream that stays silent fails the test.
async fn next(lines: &mut Lines, what: &str) -> String {
    let line = tokio::time::timeout(LINE_WAIT, lines.next())
        .await
        .unwrap_or_else(|_| panic!("no line from {what} within {LINE_WAIT:?}"));
    normalize(&line.unwrap_or_else(|| "<end>".into()))
}

/// A whole answer: the status, then each line up to the body's end.
async fn call(port: u16, path: &str, token: Option<&str>, body: &str) -> Vec<String> {
    let mut lines = open(port, path, token, body).await;
    let mut out = vec![format!("{path} -> {}", lines.status)];
    loop {
        match next(&mut lines, path).await {
            end if end == "<end>" => return out,
            line => out.push(line),
        }
    }
}

/// The answer to `method path` with `headers` and `body`, as curl shows it: the status
/// line, the headers but the date and length ones (names in lower case, sorted), and the
/// body normalized.
async fn raw_answer(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Vec<String> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        request.push_str(&format!("{h}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let text = raw(port, &request).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let mut out = vec![format!("{method} {path}: {}", lines.next().unwrap_or(""))];
    let mut kept: Vec<String> = lines
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            let name = name.trim().to_ascii_lowercase();
            let skip = matches!(
                name.as_str(),
                "date" | "content-length" | "transfer-encoding"
            );
            (!skip).then(|| format!("{name}: {}", value.trim()))
        })
        .collect();
    kept.sort();
    out.extend(kept);
    out.push(normalize(body.trim()));
    out
}

/// The field `name` of the JSON in `line` (unnormalized).
fn field(line: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(line).unwrap()[name].clone()
}

/// The script: what each step answered, in order.
async fn script(port: u16) -> Vec<String> {
    let mut out = Vec::new();
    // foo = bar, then a watch on foo sees foo = baz.
    out.extend(call(port, "/v3/kv/put", None, r#"{"key":"Zm9v","value":"YmFy"}"#).await);
    let mut watch = open(
        port,
        "/v3/watch",
        None,
        r#"{"create_request":{"key":"Zm9v"}}"#,
    )
    .await;
    out.push(format!("watch -> {}", watch.status));
    out.push(next(&mut watch, "watch").await);
    out.extend(call(port, "/v3/kv/put", None, r#"{"key":"Zm9v","value":"YmF6"}"#).await);
    out.push(next(&mut watch, "watch").await);
    drop(watch);

    // Create, cancel and progress in one body; a request that does not decode ends the
    // requests, not the stream.
    let body = r#"{"create_request":{"key":"Zm9v"}}
                  {"cancel_request":{"watch_id":"0"}}{"progress_request":{}} {"bogus"}"#;
    let mut watch = open(port, "/v3/watch", None, body).await;
    for _ in 0..3 {
        out.push(next(&mut watch, "watch").await);
    }
    drop(watch);
    let bad = call(port, "/v3/watch", None, "x").await;
    out.push(format!("{} code {}", bad[0], field(&bad[1], "code")));

    // Keep-alives answer each request, an unknown lease with TTL 0, and end with the body.
    out.extend(call(port, "/v3/lease/grant", None, r#"{"ID":"1234","TTL":"30"}"#).await);
    let body = r#"{"ID":"1234"} {"ID":"999"} {"ID":"1234"}"#;
    out.extend(call(port, "/v3/lease/keepalive", None, body).await);

    // Observe follows the leader's value.
    let campaign = r#"{"name":"ZWw=","lease":"1234","value":"djE="}"#;
    let campaign = call(port, "/v3/election/campaign", None, campaign).await;
    out.extend(campaign.clone());
    let mut observe = open(port, "/v3/election/observe", None, r#"{"name":"ZWw="}"#).await;
    out.push(format!("observe -> {}", observe.status));
    out.push(next(&mut observe, "observe").await);
    let proclaim = format!(
        r#"{{"leader":{},"value":"djI="}}"#,
        field(&campaign[1], "leader")
    );
    out.extend(call(port, "/v3/election/proclaim", None, &proclaim).await);
    out.push(next(&mut observe, "observe").await);
    drop(observe);

    // Maintenance: etcd 3.5 routes /v3/maintenance/hash to Hash and has no hashkv path.
    out.extend(call(port, "/v3/maintenance/hash", None, "{}").await);
    out.extend(call(port, "/v3/maintenance/hashkv", None, "{}").await);
    out.extend(call(port, "/v3/maintenance/alarm", None, r#"{"action":"GET"}"#).await);
    // Chunks of the database, with no header and no version in etcd 3.5.
    let mut snapshot = open(port, "/v3/maintenance/snapshot", None, "").await;
    out.push(format!("snapshot -> {}", snapshot.status));
    let first: Value = serde_json::from_str(&next(&mut snapshot, "snapshot").await).unwrap();
    out.push(format!("blob: {}", first["result"]["blob"]));
    let fields: Vec<&String> = first["result"].as_object().unwrap().keys().collect();
    out.push(format!("snapshot chunk fields: {fields:?}"));
    drop(snapshot);

    // Headers as grpc-gateway and etcd's HTTP handler set them: CORS on every answer, a
    // preflight answered for any path, the gRPC content type forwarded as server metadata,
    // and Grpc-Metadata-* request headers passed on as the call's metadata.
    let json = "Content-Type: application/json";
    let range = r#"{"key":"Zm9v"}"#;
    out.extend(raw_answer(port, "POST", "/v3/kv/range", &[json], range).await);
    out.extend(raw_answer(port, "POST", "/v3/kv/range", &[json], "{}").await);
    let preflight = [
        "Origin: http://example.com",
        "Access-Control-Request-Method: POST",
    ];
    out.extend(raw_answer(port, "OPTIONS", "/v3/kv/range", &preflight, "").await);
    out.extend(raw_answer(port, "GET", "/health", &[], "").await);
    let get = request(port, "GET", "/v3/kv/range", "").await.unwrap();
    out.push(format!("GET /v3/kv/range -> {} {:?}", get.status, get.body));

    // Auth through the gateway, the token in the Authorization header.
    for (path, body) in [
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/role/add", r#"{"name":"r1"}"#),
        (
            "/v3/auth/role/grant",
            r#"{"name":"r1","perm":{"permType":"READWRITE","key":"YQ==","range_end":"Yg=="}}"#,
        ),
        ("/v3/auth/role/get", r#"{"role":"r1"}"#),
        ("/v3/auth/user/get", r#"{"name":"root"}"#),
        ("/v3/auth/user/list", "{}"),
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/enable", "{}"),
        (
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"no"}"#,
        ),
    ] {
        out.extend(call(port, path, None, body).await);
    }
    let auth = r#"{"name":"root","password":"pw"}"#;
    let authenticated = request(port, "POST", "/v3/auth/authenticate", auth).await;
    let authenticated = authenticated.unwrap().body;
    out.push(normalize(&authenticated));
    let token = field(&authenticated, "token");
    let token = token.as_str().expect("a token");
    let range = r#"{"key":"Zm9v"}"#;
    out.extend(call(port, "/v3/kv/range", None, range).await);
    out.extend(call(port, "/v3/kv/range", Some("bogus"), range).await);
    out.extend(call(port, "/v3/kv/range", Some(token), range).await);
    let bogus = "Grpc-Metadata-Token: bogus";
    out.extend(raw_answer(port, "POST", "/v3/kv/range", &[bogus], range).await);
    let good = format!("Grpc-Metadata-Token: {token}");
    out.extend(raw_answer(port, "POST", "/v3/kv/range", &[&good], range).await);
    // etcd's Observe ends quietly when its own read of the election is refused.
    let observe = r#"{"name":"ZWw="}"#;
    out.extend(call(port, "/v3/election/observe", Some("bogus"), observe).await);
    out.extend(call(port, "/v3/election/observe", None, observe).await);
    out.extend(call(port, "/v3/auth/status", Some(token), "{}").await);
    out.extend(call(port, "/v3/auth/disable", Some(token), "{}").await);
    out
}

/// The examples of etcd's gRPC gateway documentation (dev-guide/api_grpc_gateway.md, as
/// curl sends them: camelCase names in a txn, the deprecated `/v3beta` prefix), then each
/// unary call the main script leaves out, with its errors. Member IDs and this member's
/// URLs, which differ between the servers, are named.
async fn unary_script(m: &Member) -> Vec<String> {
    let port = m.client_port;
    let list = request(port, "POST", "/v3/cluster/member/list", "{}").await;
    let own = field(&list.unwrap().body, "members")[0]["ID"].clone();
    let mut names = vec![
        (own.as_str().unwrap().to_string(), "SELF"),
        (m.client_url(), "CLIENT"),
        (m.peer_url(), "PEER"),
    ];
    let mut out = Vec::new();
    let put = r#"{"key": "Zm9v", "value": "YmFy"}"#;
    let create = r#"{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"2"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmFy"}}]}"#;
    let version = r#"{"compare":[{"version":"4","result":"EQUAL","target":"VERSION","key":"Zm9v"}],"success":[{"requestRange":{"key":"Zm9v"}}]}"#;
    let lease = r#"{"ID":"7587"}"#;
    let script = [
        ("/v3/kv/put", put),
        ("/v3/kv/range", r#"{"key": "Zm9v"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "range_end": "Zm9w"}"#),
        ("/v3/kv/txn", create),
        ("/v3/kv/txn", version),
        ("/v3beta/kv/range", r#"{"key": "Zm9v"}"#),
        ("/v3alpha/kv/range", r#"{"key": "Zm9v"}"#),
        (
            "/v3/kv/put",
            r#"{"key": "YS8x", "value": "eA==", "prev_kv": true}"#,
        ),
        ("/v3/kv/deleterange", r#"{"key": "YS8x", "prev_kv": true}"#),
        ("/v3/kv/compaction", r#"{"revision": "3"}"#),
        ("/v3/kv/compaction", r#"{"revision": "3"}"#),
        ("/v3/kv/compaction", r#"{"revision": "100"}"#),
        ("/v3/lease/grant", r#"{"TTL": "60", "ID": "7587"}"#),
        ("/v3/lease/timetolive", r#"{"ID": "1", "keys": true}"#),
        ("/v3/lease/leases", "{}"),
        ("/v3/kv/lease/leases", "{}"),
        (
            "/v3/election/campaign",
            r#"{"name":"ZWw=","lease":"7587","value":"djE="}"#,
        ),
        ("/v3/election/leader", r#"{"name":"ZWw="}"#),
        ("/v3/election/leader", r#"{"name":"bm9uZQ=="}"#),
        (
            "/v3/election/resign",
            r#"{"leader":{"name":"ZWw=","key":"ZWwvMWRhMw==","rev":"6","lease":"7587"}}"#,
        ),
        ("/v3/election/leader", r#"{"name":"ZWw="}"#),
        ("/v3/lock/lock", r#"{"name":"bG9jaw==","lease":"7587"}"#),
        ("/v3/lock/unlock", r#"{"key":"bG9jay8xZGEz"}"#),
        ("/v3/lock/lock", r#"{"name":"bG9jaw==","lease":"1"}"#),
        ("/v3/lease/revoke", lease),
        ("/v3/lease/revoke", lease),
        ("/v3/kv/lease/revoke", lease),
        ("/v3/cluster/member/list", "{}"),
        (
            "/v3/cluster/member/add",
            r#"{"peerURLs":["http://127.0.0.1:9"],"isLearner":true}"#,
        ),
    ];
    for (path, body) in script {
        out.extend(call(port, path, None, body).await);
    }
    let added = field(out.last().unwrap(), "member")["ID"].clone();
    let added = added.as_str().expect("the added member's ID").to_string();
    let id = |body: &str| body.replace("ADDED", &added);
    let script = [
        ("/v3/cluster/member/promote", id(r#"{"ID":"ADDED"}"#)),
        (
            "/v3/maintenance/transfer-leadership",
            r#"{"targetID":"12345"}"#.into(),
        ),
        ("/v3/cluster/member/remove", r#"{"ID":"12345"}"#.into()),
        ("/v3/maintenance/defragment", "{}".into()),
        (
            "/v3/maintenance/alarm",
            r#"{"action":"DEACTIVATE","alarm":"NOSPACE"}"#.into(),
        ),
        ("/v3/auth/role/add", r#"{"name":"r1"}"#.into()),
        ("/v3/auth/role/list", "{}".into()),
        (
            "/v3/auth/role/revoke",
            r#"{"role":"r1","key":"YQ==","range_end":"Yg=="}"#.into(),
        ),
        ("/v3/auth/role/delete", r#"{"role":"r1"}"#.into()),
        ("/v3/auth/role/delete", r#"{"role":"r1"}"#.into()),
        ("/v3/auth/user/add", r#"{"name":"u","password":"p"}"#.into()),
        (
            "/v3/auth/user/changepw",
            r#"{"name":"u","password":"q"}"#.into(),
        ),
        ("/v3/auth/user/revoke", r#"{"name":"u","role":"r1"}"#.into()),
        ("/v3/auth/user/delete", r#"{"name":"u"}"#.into()),
        ("/v3/auth/user/delete", r#"{"name":"u"}"#.into()),
        // The documentation's authentication example.
        (
            "/v3/auth/user/add",
            r#"{"name": "root", "password": "pass"}"#.into(),
        ),
        ("/v3/auth/role/add", r#"{"name": "root"}"#.into()),
        (
            "/v3/auth/user/grant",
            r#"{"user": "root", "role": "root"}"#.into(),
        ),
        ("/v3/auth/enable", "{}".into()),
        ("/v3/kv/put", put.into()),
    ];
    names.push((added, "ADDED"));
    for (path, body) in script {
        out.extend(call(port, path, None, &body).await);
    }
    let auth = r#"{"name": "root", "password": "pass"}"#;
    let authenticated = request(port, "POST", "/v3/auth/authenticate", auth).await;
    let token = field(&authenticated.unwrap().body, "token");
    let token = token.as_str().expect("a token");
    out.extend(call(port, "/v3/kv/put", Some(token), put).await);
    out.extend(call(port, "/v3/auth/disable", Some(token), "{}").await);
    // Last, and not the learner's: etcd 3.5.1's update makes a learner a voter (an etcd bug;
    // detcd keeps it a learner), and after an update etcd 3.5.1 leaves the next membership
    // change (removing the learner, or an unknown member) unanswered.
    let update = format!(r#"{{"ID":{own},"peerURLs":["{}"]}}"#, m.peer_url());
    out.extend(call(port, "/v3/cluster/member/update", None, &update).await);
    out.into_iter()
        .map(|line| {
            let line = names.iter().fold(line, |line, (value, name)| {
                line.replace(value.as_str(), name)
            });
            sort_members(line)
        })
        .collect()
}

/// `line` with its `members` sorted: etcd lists them by ID, which differ between servers.
fn sort_members(line: String) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    match v.get_mut("members").and_then(Value::as_array_mut) {
        Some(members) => {
            members.sort_by_key(|m| m.to_string());
            v.to_string()
        }
        None => line,
    }
}

async fn ready(port: u16) {
    poll("the gateway serving", Duration::from_secs(30), || async {
        let r = request(port, "POST", "/v3/kv/range", r#"{"key":"eA=="}"#).await;
        (r.ok()?.status == 200).then_some(())
    })
    .await;
}

/// The first answer where `detcd` and `etcd` differ, with the rest of detcd's.
fn assert_same(detcd: &[String], etcd: &[String]) {
    for (i, (e, d)) in etcd.iter().zip(detcd).enumerate() {
        assert_eq!(
            d,
            e,
            "answer {i} differs (detcd, then etcd 3.5.1)\n{:#?}",
            &detcd[i..]
        );
    }
    assert_eq!(detcd.len(), etcd.len(), "{detcd:#?}\n{etcd:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_documentation_and_unary_calls_answer_as_etcd_3_5_does() {
    let Some(etcd) = etcd35(
        "etcd",
        "gateway_documentation_and_unary_calls_answer_as_etcd_3_5_does",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    for program in [etcd.to_str().unwrap(), env!("CARGO_BIN_EXE_detcd")] {
        let member = Member::new("gw", &dir.path().join(answers.len().to_string()));
        let _proc: Process = member.spawn(program, None);
        ready(member.client_port).await;
        answers.push(unary_script(&member).await);
    }
    assert_same(&answers[1], &answers[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_answers_as_etcd_3_5_does() {
    let Some(etcd) = etcd35("etcd", "gateway_answers_as_etcd_3_5_does") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    for program in [etcd.to_str().unwrap(), env!("CARGO_BIN_EXE_detcd")] {
        let member = Member::new("gw", &dir.path().join(answers.len().to_string()));
        let _proc: Process = member.spawn(program, None);
        ready(member.client_port).await;
        answers.push(script(member.client_port).await);
    }
    assert_same(&answers[1], &answers[0]);
}
