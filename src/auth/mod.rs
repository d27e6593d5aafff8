//! Authentication and authorization, etcd's auth store: users with bcrypt-hashed
//! passwords, roles with permissions on key ranges, the root user and role, simple tokens,
//! and an auth revision that every change bumps so that tokens issued before a change are
//! refused (the client re-authenticates and gets the new permissions).
//!
//! Changes are applied from the log and stored in the backend's `auth`, `authUsers` and
//! `authRoles` tables. Password hashes are computed before proposing (bcrypt is slow and
//! salted), so the log carries hashes and members stay deterministic.

mod jwt;
mod perms;
mod store;
mod token;

pub use jwt::{JwtTokens, DEFAULT_JWT_TTL};
pub use perms::{covers, AuthInfo, PermType};
pub use store::{hash_password, AuthStore, ROOT};
pub use token::{SimpleTokens, DEFAULT_TOKEN_TTL, MAX_TOKENS};

/// Errors of the auth layer, etcd's messages.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// Fatal, as for the KV store.
    #[error("auth backend: {0}")]
    Backend(String),
}

impl From<crate::backend::BackendError> for Error {
    fn from(e: crate::backend::BackendError) -> Self {
        Error::Backend(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
