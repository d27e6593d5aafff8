//! etcd's Auth service as a member serves it (`v3_server.go`'s auth calls and
//! `apply_auth.go`): changes go through the log with passwords already hashed and tokens
//! already chosen, so every member applies the same bytes; reads are served locally after
//! a ReadIndex round. Who may call what is decided here, from the caller's token, and
//! nowhere in the transport.

use rand::Rng;

use super::apply::Applied;
use super::error::Result;
use super::store::lock;
use super::v3::Server;
use crate::auth::{hash_password, AuthInfo, AuthStore, PermType};
use crate::backend::Backend;
use crate::lease::Lessor;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse,
    AuthRoleListResponse, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListResponse,
    AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateResponse,
    DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest, WatchCreateRequest,
};
use crate::proto::internalpb::internal_raft_request::Request;
use crate::proto::internalpb::{InternalAuthenticateRequest, RequestHeader};

/// Whether `caller` may do `access` under `auth`; `lessor` knows the keys of leases.
fn check(
    auth: &AuthStore,
    lessor: &Lessor,
    caller: Option<&AuthInfo>,
    access: Access<'_>,
) -> crate::auth::Result<()> {
    if !auth.is_enabled() {
        return Ok(());
    }
    let lease_keys = |id: i64| -> Vec<Vec<u8>> {
        lessor
            .get(id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default()
    };
    let (keys, want) = match &access {
        Access::Put(p) if p.lease != 0 => (lease_keys(p.lease), PermType::Write),
        Access::LeaseRevoke(id) => (lease_keys(*id), PermType::Write),
        Access::LeaseTimeToLive(id) => (lease_keys(*id), PermType::Read),
        _ => (Vec::new(), PermType::Read),
    };
    auth.check_lease_keys(caller, &keys, want)?;
    match access {
        Access::Range(r) => auth.check_range(caller, r),
        Access::Put(p) => auth.check_put(caller, p),
        Access::DeleteRange(d) => auth.check_delete(caller, d),
        Access::Txn(t) => auth.check_txn(caller, t),
        Access::Watch(w) => auth.check_watch(caller, w),
        Access::LeaseRevoke(_) | Access::LeaseTimeToLive(_) => Ok(()),
        Access::Keys(range, want) => auth.check(caller, &range, want),
        Access::Admin => auth.check_admin(caller),
    }
}

/// Checks a client's request again as it is applied, as etcd's `authApplierV3` does, with
/// the user and auth revision it was proposed with: if users, roles or permissions
/// changed in between, the request fails (`revision of auth store is old`) and the client
/// retries under today's permissions. So once a revoke is applied, no write proposed
/// before it under the revoked permission can still land.
pub(super) fn check_at_apply(
    auth: &AuthStore,
    lessor: &Lessor,
    header: &RequestHeader,
    request: &Request,
) -> crate::auth::Result<()> {
    let caller = AuthInfo {
        user: header.username.clone(),
        revision: header.auth_revision,
    };
    let access = match request {
        Request::Put(r) => Access::Put(r),
        Request::DeleteRange(r) => Access::DeleteRange(r),
        Request::Txn(r) => Access::Txn(r),
        Request::LeaseRevoke(r) => Access::LeaseRevoke(r.id),
        // Only client writes and auth changes carry a header; any other request that
        // ever does is root's until it has a check of its own.
        _ => Access::Admin,
    };
    check(auth, lessor, Some(&caller), access)
}

/// The wall clock as JWT expiries count it (virtual under madsim).
fn unix_now() -> std::time::Duration {
    std::time::Duration::from_nanos(crate::runtime::Clock.unix_nanos() as u64)
}

/// Letters of a simple token, as etcd's `randString` draws them.
const TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Random letters in a simple token (etcd's `defaultSimpleTokenLength`).
const TOKEN_LENGTH: usize = 16;

/// Applies an auth change from the log; `None` if `request` is not one.
pub(super) fn apply(
    auth: &mut AuthStore,
    backend: &Backend,
    request: &Request,
    now: std::time::Duration,
) -> Option<crate::auth::Result<Applied>> {
    Some(match request {
        Request::AuthEnable(_) => auth
            .enable(backend)
            .map(|()| Applied::AuthEnable(AuthEnableResponse::default())),
        Request::AuthDisable(_) => auth
            .disable(backend)
            .map(|()| Applied::AuthDisable(AuthDisableResponse::default())),
        Request::Authenticate(r) => auth
            .assign_token(&r.name, r.simple_token.clone(), r.checked_revision, now)
            .map(|()| {
                Applied::Authenticate(AuthenticateResponse {
                    header: None,
                    token: r.simple_token.clone(),
                })
            }),
        Request::AuthUserAdd(r) => {
            let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
            auth.user_add(backend, &r.name, &r.hashed_password, no_password)
                .map(|()| Applied::AuthUserAdd(AuthUserAddResponse::default()))
        }
        Request::AuthUserDelete(r) => auth
            .user_delete(backend, &r.name)
            .map(|()| Applied::AuthUserDelete(AuthUserDeleteResponse::default())),
        Request::AuthUserChangePassword(r) => auth
            .user_change_password(backend, &r.name, &r.hashed_password)
            .map(|()| Applied::AuthUserChangePassword(AuthUserChangePasswordResponse::default())),
        Request::AuthUserGrantRole(r) => auth
            .user_grant_role(backend, &r.user, &r.role)
            .map(|()| Applied::AuthUserGrantRole(AuthUserGrantRoleResponse::default())),
        Request::AuthUserRevokeRole(r) => auth
            .user_revoke_role(backend, &r.name, &r.role)
            .map(|()| Applied::AuthUserRevokeRole(AuthUserRevokeRoleResponse::default())),
        Request::AuthRoleAdd(r) => auth
            .role_add(backend, &r.name)
            .map(|()| Applied::AuthRoleAdd(AuthRoleAddResponse::default())),
        Request::AuthRoleDelete(r) => auth
            .role_delete(backend, &r.role)
            .map(|()| Applied::AuthRoleDelete(AuthRoleDeleteResponse::default())),
        Request::AuthRoleGrantPermission(r) => auth
            .role_grant_permission(backend, &r.name, r.perm.clone().unwrap_or_default())
            .map(|()| Applied::AuthRoleGrantPermission(AuthRoleGrantPermissionResponse::default())),
        Request::AuthRoleRevokePermission(r) => auth
            .role_revoke_permission(backend, &r.role, &r.key, &r.range_end)
            .map(|()| {
                Applied::AuthRoleRevokePermission(AuthRoleRevokePermissionResponse::default())
            }),
        _ => return None,
    })
}

/// What a caller asks to do, as etcd's auth applier checks it.
pub enum Access<'a> {
    Range(&'a RangeRequest),
    Put(&'a PutRequest),
    DeleteRange(&'a DeleteRangeRequest),
    Txn(&'a TxnRequest),
    Watch(&'a WatchCreateRequest),
    /// Revoking deletes the lease's keys: write on every one.
    LeaseRevoke(i64),
    /// A lease's time to live names its keys: read on every one (etcd's fix for
    /// GHSA-3p4g-rcw5-8298, in 3.4.26 and 3.5.8).
    LeaseTimeToLive(i64),
    /// Keys an election or lock reads or writes (as etcd's, whose Election and Lock
    /// servers act through KV calls carrying the caller's token).
    Keys(KeyRange, PermType),
    /// Maintenance and membership calls that only root may make.
    Admin,
}

impl Server {
    /// Whether `caller` may do `access` under the current users, roles and auth revision:
    /// a token issued before a permission change is checked against today's permissions.
    pub fn authorize(&self, caller: Option<&AuthInfo>, access: Access<'_>) -> Result<()> {
        // Lock order: lessor, then auth (as the apply loop takes them).
        let lessor = lock(&self.lessor);
        Ok(check(&lock(&self.auth), &lessor, caller, access)?)
    }

    /// The caller a request's `token` names, or without a token the Common Name of its
    /// client certificate (`--client-cert-auth`, as etcd's `AuthInfoFromTLS`): `None` while
    /// auth is off (tokens are then ignored, as etcd does) or when neither came; an
    /// unknown or expired token fails.
    /// A simple token names only a user: as in etcd, the caller is checked at the auth
    /// revision of its arrival, so a token outlives permission changes and every request
    /// meets the permissions of its time.
    pub fn auth_info(
        &self,
        token: Option<&str>,
        cert_name: Option<&str>,
    ) -> Result<Option<AuthInfo>> {
        let mut auth = lock(&self.auth);
        if !auth.is_enabled() {
            return Ok(None);
        }
        let user = match (token, cert_name, &self.jwt) {
            // A JWT carries the auth revision it was issued at: one from before a change
            // is refused when checked.
            (Some(token), _, Some(jwt)) => return Ok(Some(jwt.verify(token, unix_now())?)),
            (Some(token), _, None) => auth.tokens.info(token, self.clock.now())?.user,
            (None, Some(name), _) => name.to_string(),
            (None, None, _) => return Ok(None),
        };
        let revision = auth.revision();
        Ok(Some(AuthInfo { user, revision }))
    }

    /// Auth administration is root's (anyone's while auth is off).
    fn admin(&self, caller: Option<&AuthInfo>) -> Result<()> {
        Ok(lock(&self.auth).check_admin(caller)?)
    }

    /// A bcrypt hash with a salt from this member's seeded generator.
    fn hash_new_password(&self, password: &str) -> String {
        let salt = lock(&self.rng).random();
        hash_password(password, self.bcrypt_cost, salt)
    }

    /// Anyone may turn auth on; once it is on, asking again is root's.
    pub async fn auth_enable(&self, caller: Option<&AuthInfo>) -> Result<AuthEnableResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthEnable(AuthEnableRequest {}))
            .await
    }

    pub async fn auth_disable(&self, caller: Option<&AuthInfo>) -> Result<AuthDisableResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthDisable(AuthDisableRequest {}))
            .await
    }

    pub async fn auth_status(&self) -> Result<AuthStatusResponse> {
        self.read_index().await?;
        let auth = lock(&self.auth);
        Ok(AuthStatusResponse {
            header: self.header(None),
            enabled: auth.is_enabled(),
            auth_revision: auth.revision(),
        })
    }

    /// Checks the password here (bcrypt is too slow for the apply loop), then has every
    /// member give the new token to the user.
    pub async fn authenticate(&self, name: &str, password: &str) -> Result<AuthenticateResponse> {
        let checked_revision = lock(&self.auth).check_password(name, password)?;
        let simple_token = {
            let mut rng = lock(&self.rng);
            let letters: String = (0..TOKEN_LENGTH)
                .map(|_| TOKEN_LETTERS[rng.random_range(0..TOKEN_LETTERS.len())] as char)
                .collect();
            format!("{letters}.{}", rng.random::<u32>())
        };
        let request = InternalAuthenticateRequest {
            name: name.to_string(),
            simple_token,
            checked_revision,
        };
        let mut resp: AuthenticateResponse =
            self.write(None, Request::Authenticate(request)).await?;
        if let Some(jwt) = &self.jwt {
            let revision = lock(&self.auth).revision();
            let info = AuthInfo {
                user: name.to_string(),
                revision,
            };
            resp.token = jwt.sign(&info, unix_now())?;
        }
        Ok(resp)
    }

    pub async fn user_add(
        &self,
        caller: Option<&AuthInfo>,
        mut req: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse> {
        self.admin(caller)?;
        if !req.options.as_ref().is_some_and(|o| o.no_password) {
            req.hashed_password = self.hash_new_password(&req.password);
        }
        req.password.clear();
        self.write(caller, Request::AuthUserAdd(req)).await
    }

    /// A user's roles: root may ask about anyone, a user about itself.
    pub async fn user_get(
        &self,
        caller: Option<&AuthInfo>,
        name: &str,
    ) -> Result<AuthUserGetResponse> {
        if caller.is_none_or(|c| c.user != name) {
            self.admin(caller)?;
        }
        self.read_index().await?;
        let roles = lock(&self.auth).user_get(name)?.roles.clone();
        Ok(AuthUserGetResponse {
            header: self.header(None),
            roles,
        })
    }

    pub async fn user_list(&self, caller: Option<&AuthInfo>) -> Result<AuthUserListResponse> {
        self.admin(caller)?;
        self.read_index().await?;
        let users = lock(&self.auth).user_list();
        Ok(AuthUserListResponse {
            header: self.header(None),
            users,
        })
    }

    pub async fn user_delete(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthUserDelete(req)).await
    }

    pub async fn user_change_password(
        &self,
        caller: Option<&AuthInfo>,
        mut req: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse> {
        self.admin(caller)?;
        req.hashed_password = self.hash_new_password(&req.password);
        req.password.clear();
        self.write(caller, Request::AuthUserChangePassword(req))
            .await
    }

    pub async fn user_grant_role(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthUserGrantRole(req)).await
    }

    pub async fn user_revoke_role(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthUserRevokeRole(req)).await
    }

    pub async fn role_add(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthRoleAddRequest,
    ) -> Result<AuthRoleAddResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthRoleAdd(req)).await
    }

    /// A role's permissions: root may ask about any role, a user about its own.
    pub async fn role_get(
        &self,
        caller: Option<&AuthInfo>,
        role: &str,
    ) -> Result<AuthRoleGetResponse> {
        let own = caller.is_some_and(|c| {
            let auth = lock(&self.auth);
            auth.user_get(&c.user)
                .is_ok_and(|u| u.roles.iter().any(|r| r == role))
        });
        if !own {
            self.admin(caller)?;
        }
        self.read_index().await?;
        // Root's permissions are implicit: it lists none, as etcd 3.4 answers.
        let perm = lock(&self.auth).role_get(role)?.key_permission.clone();
        Ok(AuthRoleGetResponse {
            header: self.header(None),
            perm,
        })
    }

    pub async fn role_list(&self, caller: Option<&AuthInfo>) -> Result<AuthRoleListResponse> {
        self.admin(caller)?;
        self.read_index().await?;
        let roles = lock(&self.auth).role_list();
        Ok(AuthRoleListResponse {
            header: self.header(None),
            roles,
        })
    }

    pub async fn role_delete(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthRoleDelete(req)).await
    }

    pub async fn role_grant_permission(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthRoleGrantPermission(req))
            .await
    }

    pub async fn role_revoke_permission(
        &self,
        caller: Option<&AuthInfo>,
        req: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse> {
        self.admin(caller)?;
        self.write(caller, Request::AuthRoleRevokePermission(req))
            .await
    }
}
