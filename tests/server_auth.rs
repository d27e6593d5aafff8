//! The Auth service through the Rust `etcd-client` crate: users and roles, tokens in the
//! `token` metadata, etcd's gRPC codes for refusals, a permission revoked under a live
//! token, and users and roles that survive a restart.

#![cfg(not(madsim))]

mod common;

use common::{grpc_message, ready_client, Member};
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, ConnectOptions, LeaseTimeToLiveOptions,
    LockOptions, Permission, PutOptions, Txn, TxnOp, UserAddOptions,
};
use tonic::Code;

/// The gRPC code and message of a refused call.
fn refusal<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>) -> (Code, String) {
    match r.expect_err("the call is refused") {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other}"),
    }
}

async fn login(m: &Member, user: &str, password: &str) -> Result<Client, etcd_client::Error> {
    Client::connect(
        [m.client_url()],
        Some(ConnectOptions::new().with_user(user, password)),
    )
    .await
}

#[tokio::test]
async fn users_roles_and_permissions_through_etcd_client() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("auth", dir.path());
    let extra = ["--bcrypt-cost", "4"];
    let server = m.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &extra);
    let mut anon = ready_client(m.client_port).await;

    anon.user_add("root", "rootpw", None).await.unwrap();
    anon.user_grant_role("root", "root").await.unwrap();
    anon.user_add("alice", "alicepw", None).await.unwrap();
    let no_pwd = UserAddOptions::new().with_no_pwd();
    anon.user_add("cert-only", "", Some(no_pwd)).await.unwrap();
    anon.role_add("app").await.unwrap();
    let perm = Permission::read_write("app/").with_prefix();
    anon.role_grant_permission("app", perm).await.unwrap();
    anon.user_grant_role("alice", "app").await.unwrap();
    anon.auth_enable().await.unwrap();

    assert_eq!(
        refusal(anon.get("app/1", None).await),
        (
            Code::InvalidArgument,
            "etcdserver: user name is empty".into()
        )
    );
    assert_eq!(
        grpc_message(login(&m, "alice", "wrong").await.err().expect("refused")),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    assert!(
        login(&m, "cert-only", "").await.is_err(),
        "no password, no login"
    );

    let mut alice = login(&m, "alice", "alicepw").await.unwrap();
    alice.put("app/1", "one", None).await.unwrap();
    assert_eq!(
        refusal(alice.put("other", "x", None).await),
        (
            Code::PermissionDenied,
            "etcdserver: permission denied".into()
        )
    );
    // A compare reads its key: one outside the role refuses the whole txn.
    let txn = Txn::new()
        .when([Compare::value("other", CompareOp::Equal, "x")])
        .and_then([TxnOp::put("app/2", "two", None)]);
    assert_eq!(refusal(alice.txn(txn).await).0, Code::PermissionDenied);
    assert_eq!(refusal(alice.user_list().await).0, Code::PermissionDenied);
    // A lock reads and writes the keys under its name, as etcd's does through KV calls.
    let lease = alice.lease_grant(30, None).await.unwrap().id();
    let held = LockOptions::new().with_lease(lease);
    let key = alice
        .lock("app/locks", Some(held))
        .await
        .unwrap()
        .key()
        .to_vec();
    alice.unlock(key).await.unwrap();
    let other = LockOptions::new().with_lease(lease);
    assert_eq!(
        refusal(alice.lock("other", Some(other)).await).0,
        Code::PermissionDenied
    );
    // A lease's time to live names its keys: only for a reader of every one (etcd's fix
    // for GHSA-3p4g-rcw5-8298). Raising or clearing an alarm is root's; listing is not.
    let mut root = login(&m, "root", "rootpw").await.unwrap();
    let secret = root.lease_grant(30, None).await.unwrap().id();
    let attach = PutOptions::new().with_lease(secret);
    root.put("secret", "x", Some(attach)).await.unwrap();
    let keys = || Some(LeaseTimeToLiveOptions::new().with_keys());
    assert_eq!(
        refusal(alice.lease_time_to_live(secret, keys()).await).0,
        Code::PermissionDenied
    );
    alice.lease_time_to_live(lease, keys()).await.unwrap();
    assert_eq!(
        refusal(
            alice
                .alarm(AlarmAction::Deactivate, AlarmType::None, None)
                .await
        )
        .0,
        Code::PermissionDenied
    );
    alice
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    root.alarm(AlarmAction::Deactivate, AlarmType::None, None)
        .await
        .unwrap();

    // Revoking under alice's live token: her next write is checked against the new
    // permissions, not the ones her token was issued with.
    let revoke = etcd_client::RoleRevokePermissionOptions::new().with_prefix();
    root.role_revoke_permission("app", "app/", Some(revoke))
        .await
        .unwrap();
    assert_eq!(
        refusal(alice.put("app/1", "stale", None).await).0,
        Code::PermissionDenied
    );
    let got = root.get("app/1", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"one");
    let perm = Permission::read("app/").with_prefix();
    root.role_grant_permission("app", perm).await.unwrap();

    drop(server);
    let _server = m.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &extra);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut root = loop {
        if let Ok(mut c) = login(&m, "root", "rootpw").await {
            if c.user_list().await.is_ok() {
                break c;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no restart");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let users = root.user_list().await.unwrap();
    assert_eq!(users.users(), ["alice", "cert-only", "root"]);
    let roles = root.role_list().await.unwrap();
    assert_eq!(roles.roles(), ["app"]);
    let mut alice = login(&m, "alice", "alicepw").await.unwrap();
    assert_eq!(alice.get("app/1", None).await.unwrap().kvs().len(), 1);
    assert_eq!(
        refusal(alice.put("app/1", "x", None).await).0,
        Code::PermissionDenied
    );
}

/// A put of `app/1` with `token` in the metadata, as etcd clients send it.
async fn put_with(m: &Member, token: &str) -> Result<(), String> {
    use detcd::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    let mut kv = KvClient::connect(m.client_url())
        .await
        .map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(PutRequest {
        key: b"app/1".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("token", token.parse().unwrap());
    kv.put(request)
        .await
        .map(drop)
        .map_err(|s| s.message().to_string())
}

/// root, and alice with read and write on `app/`; then auth on.
async fn alice_may_write_app(mut anon: Client) {
    anon.user_add("root", "rootpw", None).await.unwrap();
    anon.user_grant_role("root", "root").await.unwrap();
    anon.user_add("alice", "alicepw", None).await.unwrap();
    anon.role_add("app").await.unwrap();
    let perm = Permission::read_write("app/").with_prefix();
    anon.role_grant_permission("app", perm).await.unwrap();
    anon.user_grant_role("alice", "app").await.unwrap();
    anon.auth_enable().await.unwrap();
}

/// A token for `user` (a JWT under `--auth-token jwt`), straight from Authenticate.
async fn authenticate(m: &Member, user: &str, password: &str) -> String {
    use detcd::proto::etcdserverpb::{auth_client::AuthClient, AuthenticateRequest};
    let mut auth = AuthClient::connect(m.client_url()).await.unwrap();
    let request = AuthenticateRequest {
        name: user.into(),
        password: password.into(),
    };
    auth.authenticate(request).await.unwrap().into_inner().token
}

/// `--auth-token jwt,...` (ES256 keys made by the test): tokens are signed and carry the
/// auth revision, so they outlive a restart, a malformed one is refused, and one issued
/// before an auth change is refused as etcd refuses it.
#[tokio::test]
async fn jwt_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    let m = Member::new("jwt", dir.path());
    let token_flag = format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method=ES256,ttl=5m",
        public.display(),
        private.display()
    );
    let extra = ["--bcrypt-cost", "4", token_flag.as_str()];
    let server = m.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &extra);
    alice_may_write_app(ready_client(m.client_port).await).await;

    let mut alice = login(&m, "alice", "alicepw").await.unwrap();
    alice.put("app/1", "one", None).await.unwrap();
    let token = authenticate(&m, "alice", "alicepw").await;
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    put_with(&m, &token).await.unwrap();
    assert_eq!(
        put_with(&m, "not.a.jwt").await.unwrap_err(),
        "etcdserver: invalid auth token"
    );

    // Stateless: the token still works once the member restarted.
    drop(server);
    let _server = m.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &extra);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while put_with(&m, &token).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no restart");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut root = login(&m, "root", "rootpw").await.unwrap();
    root.role_add("other").await.unwrap();
    assert_eq!(
        put_with(&m, &token).await.unwrap_err(),
        "etcdserver: revision of auth store is old"
    );
    put_with(&m, &authenticate(&m, "alice", "alicepw").await)
        .await
        .unwrap();
}

/// Simple tokens across members: Authenticate goes through the log and every member gives
/// the token to the user when it applies the entry (etcd's simple token provider does the
/// same), so a token that the leader issued keeps working on the others after the leader
/// is killed, and an `etcd-client` that logged in with a user and password carries on
/// through the new leader with the token it has. (Tokens live in memory: a restarted
/// member forgets them, as etcd's does; a JWT is verified by any member.)
#[tokio::test]
async fn tokens_outlive_the_leader_that_issued_them() {
    use common::cluster::{poll, Cluster};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    alice_may_write_app(ready_client(cluster.members[leader].client_port).await).await;

    let urls: Vec<String> = cluster.members.iter().map(Member::client_url).collect();
    let options = ConnectOptions::new().with_user("alice", "alicepw");
    let mut alice = Client::connect(&urls, Some(options)).await.unwrap();
    alice.put("app/0", "before", None).await.unwrap();
    let token = authenticate(&cluster.members[leader], "alice", "alicepw").await;
    let deadline = Duration::from_secs(30);
    for m in &cluster.members {
        // Each member applies the Authenticate entry in its own time.
        poll("the token on every member", deadline, || async {
            put_with(m, &token).await.ok()
        })
        .await;
    }

    cluster.kill(leader);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &survivors {
        let m = &cluster.members[i];
        poll("the leader's token on a survivor", deadline, || async {
            put_with(m, &token).await.ok()
        })
        .await;
    }
    // The client's own token, issued by whichever member it asked at login. Its balancer
    // still sends some calls to the dead member's address: those fail to connect and are
    // tried again; nothing may be refused for its token.
    for i in 1..10 {
        poll("etcd-client through the new leader", deadline, || {
            let mut alice = alice.clone();
            async move {
                match alice.put(format!("app/{i}"), "after", None).await {
                    Ok(_) => Some(()),
                    Err(etcd_client::Error::GRpcStatus(s)) if s.code() == Code::Unavailable => None,
                    Err(e) => panic!("put {i} refused: {e}"),
                }
            }
        })
        .await;
    }
    let m = &cluster.members[survivors[0]];
    let mut reader = login(m, "alice", "alicepw").await.unwrap();
    let got = reader.get("app/9", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"after");
    assert_eq!(
        refusal(reader.put("other", "x", None).await),
        (
            Code::PermissionDenied,
            "etcdserver: permission denied".into()
        )
    );
}
