//! Bad input to the Auth service and to authenticated calls, answered as etcd 3.5.1 answers
//! it: the same script runs against etcd and detcd and every answer (gRPC code and
//! message) must match, and so must what is left afterwards (auth revision, users, the
//! role's permissions, the keys): nothing of a refused call is applied. The script has an
//! unknown user (login, get, grant), an empty password, an empty user name, a role that
//! does not exist, a token that is not one (nor a JWT), and a simple token used after
//! `--auth-token-ttl` expired it. A permission on an empty key is in it too: etcd 3.5.1
//! grants it (the auth revision moves by that one change), and so does detcd.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::{etcd35, Member, Process};
use detcd::proto::authpb::{permission::Type, Permission};
use detcd::proto::etcdserverpb::auth_client::AuthClient;
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest,
    AuthStatusRequest, AuthUserAddRequest, AuthUserGetRequest, AuthUserGrantRoleRequest,
    AuthUserListRequest, AuthenticateRequest, PutRequest, RangeRequest,
};
use tonic::transport::Channel;

/// etcd checks expired simple tokens once a second; the TTL is one second.
const TTL: &str = "1";
const EXPIRED_AFTER: Duration = Duration::from_secs(3);

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Ok(v) = token.parse() {
        r.metadata_mut().insert("token", v);
    }
    r
}

fn answer<T>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

fn user(name: &str, password: &str) -> AuthUserAddRequest {
    AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    }
}

fn login(name: &str, password: &str) -> AuthenticateRequest {
    AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    }
}

fn grant(user: &str, role: &str) -> AuthUserGrantRoleRequest {
    AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    }
}

fn permission(key: &[u8], range_end: &[u8]) -> AuthRoleGrantPermissionRequest {
    AuthRoleGrantPermissionRequest {
        name: "app".into(),
        perm: Some(Permission {
            perm_type: Type::Readwrite as i32,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        }),
    }
}

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

async fn token(auth: &mut AuthClient<Channel>, name: &str, password: &str) -> String {
    auth.authenticate(login(name, password))
        .await
        .unwrap()
        .into_inner()
        .token
}

/// Every answer of the script on the member at `url`, then what is left.
async fn script(url: String) -> Vec<String> {
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut auth = AuthClient::new(channel.clone());
    let mut kv = KvClient::new(channel);
    auth.user_add(user("root", "rootpw")).await.unwrap();
    auth.user_grant_role(grant("root", "root")).await.unwrap();
    auth.user_add(user("alice", "alicepw")).await.unwrap();
    let app = AuthRoleAddRequest { name: "app".into() };
    auth.role_add(app).await.unwrap();
    auth.role_grant_permission(permission(b"app/", b"app0"))
        .await
        .unwrap();
    auth.user_grant_role(grant("alice", "app")).await.unwrap();
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    let root = token(&mut auth, "root", "rootpw").await;
    let status = AuthStatusRequest {};
    let revision = auth.auth_status(with_token(status, &root)).await.unwrap();
    let revision = revision.into_inner().auth_revision;

    let get_nobody = AuthUserGetRequest {
        name: "nobody".into(),
    };
    let mut answers = vec![
        answer(auth.authenticate(login("nobody", "x")).await),
        answer(auth.authenticate(login("alice", "")).await),
        answer(auth.user_get(with_token(get_nobody, &root)).await),
        answer(
            auth.user_grant_role(with_token(grant("nobody", "app"), &root))
                .await,
        ),
        answer(
            auth.user_grant_role(with_token(grant("alice", "nope"), &root))
                .await,
        ),
        answer(auth.user_add(with_token(user("", "pw"), &root)).await),
        answer(
            auth.role_grant_permission(with_token(permission(b"", b""), &root))
                .await,
        ),
        answer(kv.put(with_token(put("app/1"), "not-a-token")).await),
        answer(kv.put(with_token(put("app/1"), "a.b.c")).await),
    ];
    let alice = token(&mut auth, "alice", "alicepw").await;
    answers.push(answer(kv.put(with_token(put("app/2"), &alice)).await));
    // The token's TTL passes unused.
    tokio::time::sleep(EXPIRED_AFTER).await;
    answers.push(answer(kv.put(with_token(put("app/3"), &alice)).await));

    let root = token(&mut auth, "root", "rootpw").await;
    let status = auth
        .auth_status(with_token(AuthStatusRequest {}, &root))
        .await;
    let after = status.unwrap().into_inner().auth_revision;
    answers.push(format!("auth revision moved by {}", after - revision));
    let users = auth
        .user_list(with_token(AuthUserListRequest {}, &root))
        .await;
    answers.push(format!("users {:?}", users.unwrap().into_inner().users));
    let role = AuthRoleGetRequest { role: "app".into() };
    let role = auth.role_get(with_token(role, &root)).await.unwrap();
    answers.push(format!("app may {:?}", role.into_inner().perm));
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        keys_only: true,
        ..Default::default()
    };
    let keys = kv
        .range(with_token(all, &root))
        .await
        .unwrap()
        .into_inner()
        .kvs;
    let keys: Vec<String> = keys
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    answers.push(format!("keys {keys:?}"));
    answers
}

async fn ready(url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
        {
            let mut kv = KvClient::new(c);
            let r = kv.range(RangeRequest {
                key: b"x".to_vec(),
                ..Default::default()
            });
            if r.await.is_ok() {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{url} never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_auth_input_is_refused_as_etcd_3_5_refuses_it() {
    let Some(etcd) = etcd35("etcd", "bad_auth_input_is_refused_as_etcd_3_5_refuses_it") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    for program in [etcd.to_str().unwrap(), env!("CARGO_BIN_EXE_detcd")] {
        let member = Member::new("auth", &dir.path().join(answers.len().to_string()));
        let flags = ["--auth-token-ttl", TTL];
        let _proc: Process = member.spawn_with(program, None, &flags);
        ready(&member.client_url()).await;
        answers.push(script(member.client_url()).await);
    }
    let (etcd, detcd) = (&answers[0], &answers[1]);
    for (i, (e, d)) in etcd.iter().zip(detcd).enumerate() {
        assert_eq!(
            d, e,
            "answer {i} differs (detcd, then etcd 3.5.1)\n{detcd:#?}"
        );
    }
    assert_eq!(detcd.len(), etcd.len(), "{detcd:#?}\n{etcd:#?}");
}
