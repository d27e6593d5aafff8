//! Auth: who may do what, tokens and their staleness, and persistence.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::backend::Backend;
use crate::mvcc::KeyRange;
use crate::proto::authpb::permission::Type;
use crate::proto::authpb::Permission;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest,
};
use crate::runtime::SimDisk;

/// bcrypt's minimum cost keeps the tests fast; the cost is a parameter, not a semantic.
const COST: u32 = 4;
const DB: &str = "/data/db";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn perm(t: Type, key: &str, end: &str) -> Permission {
    Permission {
        perm_type: t as i32,
        key: key.into(),
        range_end: end.into(),
    }
}

/// root (root role) and alice, whose role `app` reads `/app/` and writes `/app/w`.
fn setup(disk: &SimDisk) -> (Backend, AuthStore) {
    let b = Backend::open(disk, Path::new(DB)).unwrap();
    let mut a = AuthStore::open(&b, DEFAULT_TOKEN_TTL).unwrap();
    a.user_add(&b, ROOT, &hash_password("rootpw", COST, [1; 16]), false)
        .unwrap();
    a.user_add(&b, "alice", &hash_password("alicepw", COST, [2; 16]), false)
        .unwrap();
    a.role_add(&b, "app").unwrap();
    a.role_grant_permission(&b, "app", perm(Type::Read, "/app/", "/app0"))
        .unwrap();
    a.role_grant_permission(&b, "app", perm(Type::Write, "/app/w", ""))
        .unwrap();
    a.user_grant_role(&b, "alice", "app").unwrap();
    (b, a)
}

fn login(a: &mut AuthStore, user: &str, pw: &str, now: Duration) -> Result<AuthInfo> {
    let checked = a.check_password(user, pw)?;
    let token = format!("tok-{user}-{checked}");
    a.assign_token(user, token.clone(), checked, now)?;
    a.tokens.info(&token, now)
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let disk = SimDisk::new(1);
    let (b, mut a) = setup(&disk);
    assert_eq!(a.enable(&b), Err(Error::RootRoleNotExist));
    a.user_grant_role(&b, ROOT, ROOT).unwrap();
    a.enable(&b).unwrap();
    assert_eq!(
        a.user_delete(&b, ROOT),
        Err(Error::InvalidAuthMgmt),
        "root stays while auth is on"
    );
    assert_eq!(
        a.user_revoke_role(&b, ROOT, ROOT),
        Err(Error::InvalidAuthMgmt)
    );
    let disk = SimDisk::new(2);
    let b = Backend::open(&disk, Path::new(DB)).unwrap();
    let mut empty = AuthStore::open(&b, DEFAULT_TOKEN_TTL).unwrap();
    assert_eq!(empty.enable(&b), Err(Error::RootUserNotExist));
}

#[test]
fn permissions_by_type_range_and_role() {
    let disk = SimDisk::new(3);
    let (b, mut a) = setup(&disk);
    a.user_grant_role(&b, ROOT, ROOT).unwrap();
    let range = |k: &str, e: &str| KeyRange::new(k.as_bytes(), e.as_bytes());
    assert!(
        a.check(None, &range("/secret", ""), PermType::Write)
            .is_ok(),
        "auth off: all allowed"
    );
    a.enable(&b).unwrap();
    let alice = login(&mut a, "alice", "alicepw", secs(0)).unwrap();
    let root = login(&mut a, ROOT, "rootpw", secs(0)).unwrap();
    let check = |who: &AuthInfo, r: KeyRange, t| a.check(Some(who), &r, t);
    assert!(check(&alice, range("/app/x", ""), PermType::Read).is_ok());
    assert!(check(&alice, KeyRange::prefix(b"/app/"), PermType::Read).is_ok());
    assert_eq!(
        check(&alice, range("/app/x", ""), PermType::Write),
        Err(Error::PermissionDenied)
    );
    assert!(check(&alice, range("/app/w", ""), PermType::Write).is_ok());
    assert_eq!(
        check(&alice, range("/app/", "/b"), PermType::Read),
        Err(Error::PermissionDenied),
        "wider than granted"
    );
    assert_eq!(
        check(&alice, range("/other", ""), PermType::Read),
        Err(Error::PermissionDenied)
    );
    assert!(
        check(&root, range("\0", "\0"), PermType::Write).is_ok(),
        "root may do anything"
    );
    assert_eq!(
        a.check(None, &range("/app/x", ""), PermType::Read),
        Err(Error::UserEmpty),
        "no token"
    );
    assert_eq!(a.check_admin(Some(&alice)), Err(Error::PermissionDenied));
    assert!(a.check_admin(Some(&root)).is_ok());
}

/// A txn needs read on every compare and read or write on every op of both branches,
/// since which branch runs is not known before it runs.
#[test]
fn requests_are_checked_whole() {
    let disk = SimDisk::new(4);
    let (b, mut a) = setup(&disk);
    a.user_grant_role(&b, ROOT, ROOT).unwrap();
    a.enable(&b).unwrap();
    let alice = login(&mut a, "alice", "alicepw", secs(0)).unwrap();
    let put = |k: &str, prev_kv| PutRequest {
        key: k.into(),
        prev_kv,
        ..Default::default()
    };
    assert!(a.check_put(Some(&alice), &put("/app/w", false)).is_ok());
    assert!(
        a.check_put(Some(&alice), &put("/app/w", true)).is_ok(),
        "prev_kv needs read, granted"
    );
    let txn = |compare: &str, fail_put: &str| TxnRequest {
        compare: vec![Compare {
            key: compare.into(),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: b"/app/r".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::RequestPut(put(fail_put, false))),
        }],
    };
    assert!(a.check_txn(Some(&alice), &txn("/app/c", "/app/w")).is_ok());
    assert_eq!(
        a.check_txn(Some(&alice), &txn("/etc", "/app/w")),
        Err(Error::PermissionDenied)
    );
    assert_eq!(
        a.check_txn(Some(&alice), &txn("/app/c", "/app/x")),
        Err(Error::PermissionDenied)
    );
    let watch = |k: &str, e: &str| WatchCreateRequest {
        key: k.into(),
        range_end: e.into(),
        ..Default::default()
    };
    assert!(a
        .check_watch(Some(&alice), &watch("/app/", "/app0"))
        .is_ok());
    assert_eq!(
        a.check_watch(Some(&alice), &watch("/", "\0")),
        Err(Error::PermissionDenied)
    );
    assert_eq!(
        a.check_lease_keys(
            Some(&alice),
            &[b"/app/w".to_vec(), b"/app/x".to_vec()],
            PermType::Write
        ),
        Err(Error::PermissionDenied)
    );
    let keys = [b"/app/w".to_vec(), b"/app/x".to_vec()];
    assert!(
        a.check_lease_keys(Some(&alice), &keys, PermType::Read)
            .is_ok(),
        "listing needs read only"
    );
}

#[test]
fn passwords_tokens_and_stale_revisions() {
    let disk = SimDisk::new(5);
    let (b, mut a) = setup(&disk);
    assert_eq!(
        login(&mut a, "alice", "alicepw", secs(0)).unwrap_err(),
        Error::AuthNotEnabled
    );
    a.user_grant_role(&b, ROOT, ROOT).unwrap();
    a.enable(&b).unwrap();
    assert_eq!(
        login(&mut a, "alice", "wrong", secs(0)).unwrap_err(),
        Error::AuthFailed
    );
    assert_eq!(
        login(&mut a, "nobody", "x", secs(0)).unwrap_err(),
        Error::AuthFailed
    );
    a.user_add(&b, "svc", "", true).unwrap();
    assert_eq!(
        login(&mut a, "svc", "", secs(0)).unwrap_err(),
        Error::AuthFailed,
        "no-password users cannot log in"
    );
    let checked = a.check_password("alice", "alicepw").unwrap();
    let token = "t1".to_string();
    a.assign_token("alice", token.clone(), checked, secs(0))
        .unwrap();
    let alice = a.tokens.info(&token, secs(200)).unwrap();
    assert!(
        a.tokens.info(&token, secs(499)).is_ok(),
        "each use renews the TTL"
    );
    assert_eq!(
        a.tokens.info(&token, secs(800)),
        Err(Error::InvalidAuthToken),
        "expired"
    );
    // An auth change between the password check and the apply voids the login.
    let checked = a.check_password("alice", "alicepw").unwrap();
    a.role_add(&b, "late").unwrap();
    assert_eq!(
        a.assign_token("alice", "t2".into(), checked, secs(200)),
        Err(Error::AuthOldRevision)
    );
    // Any auth change makes older tokens stale: the client re-authenticates.
    a.role_revoke_permission(&b, "app", b"/app/w", b"").unwrap();
    let r = KeyRange::Single(b"/app/w".to_vec());
    assert_eq!(
        a.check(Some(&alice), &r, PermType::Read),
        Err(Error::AuthOldRevision)
    );
    let alice = login(&mut a, "alice", "alicepw", secs(900)).unwrap();
    assert_eq!(
        a.check(Some(&alice), &r, PermType::Write),
        Err(Error::PermissionDenied)
    );
    assert_eq!(
        a.role_revoke_permission(&b, "app", b"/app/w", b""),
        Err(Error::PermissionNotGranted)
    );
    a.user_change_password(&b, "alice", &hash_password("new", COST, [3; 16]))
        .unwrap();
    assert_eq!(
        login(&mut a, "alice", "alicepw", secs(900)).unwrap_err(),
        Error::AuthFailed
    );
    assert!(login(&mut a, "alice", "new", secs(900)).is_ok());
}

#[test]
fn roles_and_users_management_errors() {
    let disk = SimDisk::new(6);
    let (b, mut a) = setup(&disk);
    assert_eq!(
        a.user_add(&b, "alice", "", true),
        Err(Error::UserAlreadyExist)
    );
    assert_eq!(a.user_add(&b, "", "", true), Err(Error::UserEmpty));
    assert_eq!(a.role_add(&b, "app"), Err(Error::RoleAlreadyExist));
    assert_eq!(a.role_add(&b, ""), Err(Error::RoleEmpty));
    assert_eq!(
        a.user_grant_role(&b, "alice", "nope"),
        Err(Error::RoleNotFound)
    );
    assert_eq!(
        a.user_grant_role(&b, "bob", "app"),
        Err(Error::UserNotFound)
    );
    assert_eq!(
        a.user_revoke_role(&b, "alice", "other"),
        Err(Error::RoleNotGranted)
    );
    a.role_delete(&b, "app").unwrap();
    assert!(
        a.user_get("alice").unwrap().roles.is_empty(),
        "deleting a role takes it from its users"
    );
    assert_eq!(a.role_list(), Vec::<String>::new());
    assert_eq!(a.user_list(), vec!["alice".to_string(), ROOT.to_string()]);
}

#[test]
fn auth_state_survives_restart() {
    let disk = SimDisk::new(7);
    let (mut b, mut a) = setup(&disk);
    a.user_grant_role(&b, ROOT, ROOT).unwrap();
    a.enable(&b).unwrap();
    let rev = a.revision();
    b.commit().unwrap();
    drop((b, a));
    disk.crash();
    let b = Backend::open(&disk, Path::new(DB)).unwrap();
    let mut a = AuthStore::open(&b, DEFAULT_TOKEN_TTL).unwrap();
    assert!(a.is_enabled());
    assert_eq!(a.revision(), rev);
    assert_eq!(a.role_get("app").unwrap().key_permission.len(), 2);
    assert!(login(&mut a, "alice", "alicepw", secs(0)).is_ok());
}
