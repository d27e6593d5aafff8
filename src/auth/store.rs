//! The auth store: users, roles, the enabled flag and the auth revision, mirrored in the
//! backend; and the permission check every request passes through.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use redb::ReadableTable;

use super::perms::{check_delete, check_put, check_range, check_txn, perm_range, permitted};
use super::token::SimpleTokens;
use super::{covers, AuthInfo, Error, PermType, Result};
use crate::backend::{be, corrupt, get_u64, put_u64, Backend, Table, AUTH, AUTH_ROLES, AUTH_USERS};
use crate::mvcc::KeyRange;
use crate::proto::authpb::{Permission, Role, User, UserAddOptions};
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest, WatchCreateRequest,
};

/// The user and role that may do anything.
pub const ROOT: &str = "root";
const ENABLED: &[u8] = b"authEnabled";
const REVISION: &[u8] = b"authRevision";

/// A bcrypt hash of `password` in etcd's `$2a$` form. Called before proposing: the salt
/// comes from the caller (a seeded RNG), so nothing here touches OS randomness.
pub fn hash_password(password: &str, cost: u32, salt: [u8; 16]) -> String {
    bcrypt::hash_with_salt(password, cost, salt)
        .unwrap_or_else(|e| panic!("bcrypt cost {cost}: {e}"))
        .format_for_version(bcrypt::Version::TwoA)
}

#[derive(Debug)]
pub struct AuthStore {
    enabled: bool,
    /// Bumped by every change; tokens from before a change are refused.
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    pub tokens: SimpleTokens,
}

fn load<M: Message + Default>(
    backend: &Backend,
    table: Table,
    what: &str,
) -> Result<BTreeMap<String, M>> {
    let t = backend.tx().open_table(table).map_err(be)?;
    let mut out = BTreeMap::new();
    for entry in t.iter().map_err(be)? {
        let (k, v) = entry.map_err(be)?;
        let m = M::decode(v.value())
            .map_err(|e| corrupt(table, k.value(), format!("undecodable {what}: {e}")))?;
        out.insert(String::from_utf8_lossy(k.value()).into_owned(), m);
    }
    Ok(out)
}

fn store<M: Message>(backend: &Backend, table: Table, name: &str, m: Option<&M>) -> Result<()> {
    let mut t = backend.tx().open_table(table).map_err(be)?;
    match m {
        Some(m) => t
            .insert(name.as_bytes(), m.encode_to_vec().as_slice())
            .map_err(be)?,
        None => t.remove(name.as_bytes()).map_err(be)?,
    };
    Ok(())
}

/// Changes the user or role `name` in memory and in the backend.
fn update<M: Message>(
    map: &mut BTreeMap<String, M>,
    backend: &Backend,
    table: Table,
    name: &str,
    missing: Error,
    f: impl FnOnce(&mut M) -> Result<()>,
) -> Result<()> {
    let m = map.get_mut(name).ok_or(missing)?;
    f(m)?;
    store(backend, table, name, Some(&*m))
}

impl AuthStore {
    pub fn open(backend: &Backend, token_ttl: Duration) -> Result<Self> {
        Ok(AuthStore {
            enabled: get_u64(backend.tx(), AUTH, ENABLED)? != 0,
            revision: get_u64(backend.tx(), AUTH, REVISION)?,
            users: load(backend, AUTH_USERS, "user")?,
            roles: load(backend, AUTH_ROLES, "role")?,
            tokens: SimpleTokens::new(token_ttl),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn bump(&mut self, backend: &Backend) -> Result<()> {
        self.revision += 1;
        Ok(put_u64(backend.tx(), AUTH, REVISION, self.revision)?)
    }

    fn has_root_role(user: &User) -> bool {
        user.roles.iter().any(|r| r == ROOT)
    }

    /// Turns auth on; only once a root user with the root role exists, so that someone
    /// can still administer the cluster.
    pub fn enable(&mut self, backend: &Backend) -> Result<()> {
        let root = self.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
        if !Self::has_root_role(root) {
            return Err(Error::RootRoleNotExist);
        }
        if !self.enabled {
            self.enabled = true;
            put_u64(backend.tx(), AUTH, ENABLED, 1)?;
            self.bump(backend)?;
        }
        Ok(())
    }

    pub fn disable(&mut self, backend: &Backend) -> Result<()> {
        if self.enabled {
            self.enabled = false;
            put_u64(backend.tx(), AUTH, ENABLED, 0)?;
            self.bump(backend)?;
        }
        Ok(())
    }

    /// Checks a password, before proposing (bcrypt is too slow for the apply loop);
    /// returns the auth revision it was checked at, for [`AuthStore::assign_token`].
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64> {
        if !self.enabled {
            return Err(Error::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(Error::AuthFailed)?;
        let no_password = user.options.as_ref().is_some_and(|o| o.no_password);
        let hash = String::from_utf8_lossy(&user.password);
        if no_password || !bcrypt::verify(password, &hash).unwrap_or(false) {
            return Err(Error::AuthFailed);
        }
        Ok(self.revision)
    }

    /// Applies an authenticate entry: gives `token` (chosen by the proposer) to the user,
    /// unless auth changed since the password was checked at `checked_revision`.
    pub fn assign_token(
        &mut self,
        name: &str,
        token: String,
        checked_revision: u64,
        now: Duration,
    ) -> Result<()> {
        if checked_revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        if !self.users.contains_key(name) {
            return Err(Error::AuthFailed);
        }
        let info = AuthInfo {
            user: name.to_string(),
            revision: self.revision,
        };
        self.tokens.assign(token, info, now);
        Ok(())
    }

    /// Adds a user; `hashed_password` from [`hash_password`], empty with `no_password`.
    pub fn user_add(
        &mut self,
        backend: &Backend,
        name: &str,
        hashed_password: &str,
        no_password: bool,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(Error::UserEmpty);
        }
        if self.users.contains_key(name) {
            return Err(Error::UserAlreadyExist);
        }
        let user = User {
            name: name.into(),
            password: hashed_password.into(),
            roles: Vec::new(),
            options: Some(UserAddOptions { no_password }),
        };
        store(backend, AUTH_USERS, name, Some(&user))?;
        self.users.insert(name.to_string(), user);
        self.bump(backend)
    }

    pub fn user_delete(&mut self, backend: &Backend, name: &str) -> Result<()> {
        if self.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.users.remove(name).ok_or(Error::UserNotFound)?;
        store::<User>(backend, AUTH_USERS, name, None)?;
        self.tokens.invalidate_user(name);
        self.bump(backend)
    }

    pub fn user_change_password(
        &mut self,
        backend: &Backend,
        name: &str,
        hashed_password: &str,
    ) -> Result<()> {
        self.update_user(backend, name, |u| {
            u.password = hashed_password.into();
            Ok(())
        })?;
        self.tokens.invalidate_user(name);
        Ok(())
    }

    /// Grants `role` (which must exist, unless it is root) to a user; granting twice is a
    /// no-op, as in etcd.
    pub fn user_grant_role(&mut self, backend: &Backend, name: &str, role: &str) -> Result<()> {
        if role != ROOT && !self.roles.contains_key(role) {
            return Err(Error::RoleNotFound);
        }
        self.update_user(backend, name, |u| {
            if let Err(at) = u.roles.binary_search_by(|r| r.as_str().cmp(role)) {
                u.roles.insert(at, role.to_string());
            }
            Ok(())
        })
    }

    pub fn user_revoke_role(&mut self, backend: &Backend, name: &str, role: &str) -> Result<()> {
        if self.enabled && name == ROOT && role == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.update_user(backend, name, |u| {
            let at = u
                .roles
                .iter()
                .position(|r| r == role)
                .ok_or(Error::RoleNotGranted)?;
            u.roles.remove(at);
            Ok(())
        })
    }

    fn update_user(
        &mut self,
        backend: &Backend,
        name: &str,
        f: impl FnOnce(&mut User) -> Result<()>,
    ) -> Result<()> {
        update(
            &mut self.users,
            backend,
            AUTH_USERS,
            name,
            Error::UserNotFound,
            f,
        )?;
        self.bump(backend)
    }

    pub fn user_get(&self, name: &str) -> Result<&User> {
        self.users.get(name).ok_or(Error::UserNotFound)
    }

    pub fn user_list(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_add(&mut self, backend: &Backend, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(Error::RoleAlreadyExist);
        }
        let role = Role {
            name: name.into(),
            key_permission: Vec::new(),
        };
        store(backend, AUTH_ROLES, name, Some(&role))?;
        self.roles.insert(name.to_string(), role);
        self.bump(backend)
    }

    /// Deletes a role and takes it from every user that had it.
    pub fn role_delete(&mut self, backend: &Backend, name: &str) -> Result<()> {
        if self.enabled && name == ROOT {
            return Err(Error::InvalidAuthMgmt);
        }
        self.roles.remove(name).ok_or(Error::RoleNotFound)?;
        store::<Role>(backend, AUTH_ROLES, name, None)?;
        for (user_name, user) in self.users.iter_mut() {
            if let Some(at) = user.roles.iter().position(|r| r == name) {
                user.roles.remove(at);
                store(backend, AUTH_USERS, user_name, Some(&*user))?;
            }
        }
        self.bump(backend)
    }

    /// Grants a permission; one on the same range replaces it (etcd keeps them sorted by
    /// key and range end).
    pub fn role_grant_permission(
        &mut self,
        backend: &Backend,
        name: &str,
        perm: Permission,
    ) -> Result<()> {
        self.update_role(backend, name, |r| {
            let key = |p: &Permission| (p.key.clone(), p.range_end.clone());
            match r.key_permission.binary_search_by_key(&key(&perm), key) {
                Ok(at) => r.key_permission[at] = perm,
                Err(at) => r.key_permission.insert(at, perm),
            }
            Ok(())
        })
    }

    pub fn role_revoke_permission(
        &mut self,
        backend: &Backend,
        name: &str,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<()> {
        self.update_role(backend, name, |r| {
            let at = r
                .key_permission
                .iter()
                .position(|p| p.key == key && p.range_end == range_end)
                .ok_or(Error::PermissionNotGranted)?;
            r.key_permission.remove(at);
            Ok(())
        })
    }

    fn update_role(
        &mut self,
        backend: &Backend,
        name: &str,
        f: impl FnOnce(&mut Role) -> Result<()>,
    ) -> Result<()> {
        update(
            &mut self.roles,
            backend,
            AUTH_ROLES,
            name,
            Error::RoleNotFound,
            f,
        )?;
        self.bump(backend)
    }

    pub fn role_get(&self, name: &str) -> Result<&Role> {
        self.roles.get(name).ok_or(Error::RoleNotFound)
    }

    pub fn role_list(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// etcd's isOpPermitted: with auth on, the caller must hold a current token and
    /// permissions of the right type whose union covers `range`; root may do anything.
    pub fn check(&self, info: Option<&AuthInfo>, range: &KeyRange, want: PermType) -> Result<()> {
        let Some(user) = self.current_user(info)? else {
            return Ok(());
        };
        if Self::has_root_role(user) {
            return Ok(());
        }
        let granted: Vec<KeyRange> = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| &r.key_permission)
            .filter(|p| want.allowed_by(p.perm_type))
            .map(perm_range)
            .collect();
        permitted(covers(&granted, range))
    }

    /// The caller's user when auth is on (`None` when it is off), refusing missing and
    /// stale tokens.
    fn current_user(&self, info: Option<&AuthInfo>) -> Result<Option<&User>> {
        if !self.enabled {
            return Ok(None);
        }
        let info = info.ok_or(Error::UserEmpty)?;
        if info.revision < self.revision {
            return Err(Error::AuthOldRevision);
        }
        self.users
            .get(&info.user)
            .map(Some)
            .ok_or(Error::PermissionDenied)
    }

    /// Auth and cluster administration: root only (anyone while auth is off).
    pub fn check_admin(&self, info: Option<&AuthInfo>) -> Result<()> {
        match self.current_user(info)? {
            None => Ok(()),
            Some(user) => permitted(Self::has_root_role(user)),
        }
    }

    pub fn check_range(&self, info: Option<&AuthInfo>, req: &RangeRequest) -> Result<()> {
        check_range(req, &|r, t| self.check(info, r, t))
    }

    pub fn check_put(&self, info: Option<&AuthInfo>, req: &PutRequest) -> Result<()> {
        check_put(req, &|r, t| self.check(info, r, t))
    }

    pub fn check_delete(&self, info: Option<&AuthInfo>, req: &DeleteRangeRequest) -> Result<()> {
        check_delete(req, &|r, t| self.check(info, r, t))
    }

    pub fn check_txn(&self, info: Option<&AuthInfo>, req: &TxnRequest) -> Result<()> {
        check_txn(req, &|r, t| self.check(info, r, t))
    }

    /// A watch reads its range.
    pub fn check_watch(&self, info: Option<&AuthInfo>, req: &WatchCreateRequest) -> Result<()> {
        self.check(
            info,
            &KeyRange::new(&req.key, &req.range_end),
            PermType::Read,
        )
    }

    /// Lease requests act on the lease's keys: a revoke deletes them (`Write` on every
    /// one), a time-to-live with keys lists them (`Read`).
    pub fn check_lease_keys<'a>(
        &self,
        info: Option<&AuthInfo>,
        keys: impl IntoIterator<Item = &'a Vec<u8>>,
        want: PermType,
    ) -> Result<()> {
        for k in keys {
            self.check(info, &KeyRange::Single(k.clone()), want)?;
        }
        Ok(())
    }
}
