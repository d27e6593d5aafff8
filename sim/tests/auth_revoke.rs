//! Once a permission revoke is acknowledged, no write by that user that starts later
//! succeeds, on any member: even on a follower cut off from the leader's messages, which
//! still checks requests against the permissions it had and forwards them to the leader.
//! What stops those writes is the check at apply (`revision of auth store is old`).

#![cfg(madsim)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::authpb::{permission::Type, Permission};
use detcd::proto::etcdserverpb::auth_client::AuthClient;
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
    AuthenticateRequest, PutRequest, RangeRequest, StatusRequest,
};
use detcd::runtime::Clock;
use detcd_sim::kv_cluster::{client_url, retry, KvCluster};
use madsim::runtime::{Handle, Runtime};
use madsim::Config;
use tokio::time::Instant;

const MEMBERS: usize = 3;

async fn auth(i: usize) -> Result<AuthClient<tonic::transport::Channel>, String> {
    AuthClient::connect(client_url(i))
        .await
        .map_err(|e| e.to_string())
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().expect("tokens are ASCII letters"));
    request
}

/// root, and alice with write on `a/`, then auth on: all through member 0.
async fn set_up() {
    let perm = Permission {
        perm_type: Type::Readwrite as i32,
        key: b"a/".to_vec(),
        range_end: b"a0".to_vec(),
    };
    retry("setting up auth", || async {
        let mut a = auth(0).await?;
        let e = |e: tonic::Status| e.to_string();
        for (name, password) in [("root", "rootpw"), ("alice", "alicepw")] {
            let user = AuthUserAddRequest {
                name: name.into(),
                password: password.into(),
                ..Default::default()
            };
            let _ = a.user_add(user).await;
        }
        let role = |role: &str, user: &str| AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        a.user_grant_role(role("root", "root")).await.map_err(e)?;
        let _ = a.role_add(AuthRoleAddRequest { name: "app".into() }).await;
        let grant = AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(perm.clone()),
        };
        a.role_grant_permission(grant).await.map_err(e)?;
        a.user_grant_role(role("app", "alice")).await.map_err(e)?;
        a.auth_enable(AuthEnableRequest {}).await.map_err(e)?;
        Ok(())
    })
    .await;
}

async fn token(i: usize, name: &str, password: &str) -> String {
    retry("authenticating", || async {
        let request = AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        };
        let resp = auth(i).await?.authenticate(request).await;
        Ok(resp.map_err(|e| e.to_string())?.into_inner().token)
    })
    .await
}

/// The positions of the leader and of one follower.
async fn leader_and_follower() -> (usize, usize) {
    retry("finding the leader", || async {
        let mut ids = Vec::new();
        let mut leader = 0;
        for i in 0..MEMBERS {
            let mut m = MaintenanceClient::connect(client_url(i))
                .await
                .map_err(|e| e.to_string())?;
            let status = m
                .status(StatusRequest {})
                .await
                .map_err(|e| e.to_string())?;
            let status = status.into_inner();
            ids.push(status.header.ok_or("no header")?.member_id);
            leader = status.leader;
        }
        let l = ids.iter().position(|&id| id == leader).ok_or("no leader")?;
        Ok((l, (l + 1) % MEMBERS))
    })
    .await
}

/// One write by alice: when it started, what it wrote, and how it ended (a write that
/// timed out may still have been applied).
struct Write {
    invoked: Instant,
    key: String,
    value: String,
    ok: bool,
}

/// Alice's puts to member `i`, one after another, until `until`.
async fn writer(i: usize, token: String, until: Instant, log: Arc<Mutex<Vec<Write>>>) {
    let mut n = 0u64;
    while Clock.now() < until {
        n += 1;
        let write = Write {
            invoked: Clock.now(),
            key: format!("a/{i}"),
            value: n.to_string(),
            ok: false,
        };
        let put = async {
            let mut kv = KvClient::connect(client_url(i)).await.ok()?;
            let request = PutRequest {
                key: write.key.clone().into_bytes(),
                value: write.value.clone().into_bytes(),
                ..Default::default()
            };
            kv.put(with_token(request, &token)).await.ok()
        };
        let ok = tokio::time::timeout(Duration::from_millis(500), put)
            .await
            .ok()
            .flatten()
            .is_some();
        log.lock().unwrap().push(Write { ok, ..write });
        Clock.sleep(Duration::from_millis(5)).await;
    }
}

/// The value of `key`, read as root.
async fn value(key: &str, token: &str) -> String {
    retry("reading a key", || async {
        let mut kv = KvClient::connect(client_url(0))
            .await
            .map_err(|e| e.to_string())?;
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let resp = kv.range(with_token(request, token)).await;
        let kvs = resp.map_err(|e| e.to_string())?.into_inner().kvs;
        let kv = kvs.first().ok_or("no value")?;
        Ok(String::from_utf8_lossy(&kv.value).into_owned())
    })
    .await
}

async fn scenario(seed: u64) {
    let cluster = KvCluster::start_with_flags(MEMBERS, seed, &["--bcrypt-cost=4"]);
    let client = Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    client
        .spawn(async move {
            set_up().await;
            let (leader, follower) = leader_and_follower().await;
            let alice = token(leader, "alice", "alicepw").await;
            let root = token(leader, "root", "rootpw").await;
            let log = Arc::new(Mutex::new(Vec::new()));
            let until = Clock.now() + Duration::from_secs(6);
            for i in [leader, follower] {
                tokio::spawn(writer(i, alice.clone(), until, log.clone()));
            }
            Clock.sleep(Duration::from_secs(1)).await;
            // The follower stops hearing from the leader for a while: it goes on
            // checking alice's requests against the permissions it has and forwarding them
            // to the leader, which commits them after the revoke.
            cluster.nodes.one_way(leader, follower);
            retry("revoking alice's permission", || async {
                let revoke = AuthRoleRevokePermissionRequest {
                    role: "app".into(),
                    key: b"a/".to_vec(),
                    range_end: b"a0".to_vec(),
                };
                let mut a = auth(leader).await?;
                let resp = a.role_revoke_permission(with_token(revoke, &root)).await;
                resp.map(drop).map_err(|e| e.to_string())
            })
            .await;
            let acknowledged = Clock.now();
            Clock.sleep(Duration::from_millis(500)).await;
            cluster.nodes.heal_all();
            Clock.sleep_until(until + Duration::from_secs(1)).await;

            // Every write of alice's that succeeded, or still landed after its client
            // gave up, started before the revoke was acknowledged. A write applied after
            // the revoke would be the last one on its key.
            let log: Vec<Write> = std::mem::take(&mut *log.lock().unwrap());
            assert!(
                log.iter().any(|w| w.ok && w.invoked < acknowledged),
                "seed {seed}: alice never wrote before the revoke"
            );
            for w in log.iter().filter(|w| w.invoked > acknowledged) {
                assert!(
                    !w.ok,
                    "seed {seed}: {} = {} succeeded after the revoke",
                    w.key, w.value
                );
            }
            for key in [format!("a/{leader}"), format!("a/{follower}")] {
                let last = value(&key, &root).await;
                let w = log.iter().find(|w| w.key == key && w.value == last);
                let w = w.expect("the last value is one alice wrote");
                assert!(
                    w.invoked < acknowledged,
                    "seed {seed}: {key} = {last}, written {:?} after the revoke was acknowledged",
                    w.invoked - acknowledged
                );
            }
        })
        .await
        .unwrap()
}

#[test]
fn no_write_succeeds_after_its_permission_is_revoked() {
    for seed in 0..4 {
        Runtime::with_seed_and_config(seed, Config::default()).block_on(scenario(seed));
    }
}
