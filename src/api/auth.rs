//! The Auth service: the caller's `token` (gRPC metadata, as etcd clients send it) becomes
//! the server's idea of who is asking; each call goes to the server with it.

use tonic::{Request, Response, Status};

use crate::auth::{AuthInfo, PermType};
use crate::mvcc::KeyRange;
use crate::net::ConnInfo;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::server::auth::Access;
use crate::server::Server;

/// Serves etcd's Auth service for one member.
#[derive(Clone)]
pub struct AuthService(pub Server);

/// The caller a request's `token` metadata names, or else its client certificate (see
/// [`Server::auth_info`]).
pub fn caller<T>(server: &Server, request: &Request<T>) -> Result<Option<AuthInfo>, Status> {
    let token = request
        .metadata()
        .get("token")
        .and_then(|t| t.to_str().ok());
    let cert_name = request
        .extensions()
        .get::<ConnInfo>()
        .and_then(|c| c.common_name.as_deref());
    Ok(server.auth_info(token, cert_name)?)
}

/// Refuses the call unless its caller is root (or auth is off).
pub fn admin<T>(server: &Server, request: &Request<T>) -> Result<(), Status> {
    let caller = caller(server, request)?;
    Ok(server.authorize(caller.as_ref(), Access::Admin)?)
}

/// Refuses the call unless its caller may read and write the keys under `name/`, where
/// an election or lock keeps its contenders.
pub fn contend<T>(server: &Server, request: &Request<T>, name: &[u8]) -> Result<(), Status> {
    may(server, request, name, &[PermType::Read, PermType::Write])
}

/// Refuses the call unless its caller may do `wants` on the keys under `name/`.
pub fn may<T>(
    server: &Server,
    request: &Request<T>,
    name: &[u8],
    wants: &[PermType],
) -> Result<(), Status> {
    let caller = caller(server, request)?;
    let range = KeyRange::prefix(&[name, b"/"].concat());
    for &want in wants {
        server.authorize(caller.as_ref(), Access::Keys(range.clone(), want))?;
    }
    Ok(())
}

/// Resolves the caller, then answers `$call` on the server with it and the request.
macro_rules! with_caller {
    ($self:ident, $request:ident, |$caller:ident, $req:ident| $call:expr) => {{
        let $caller = caller(&$self.0, &$request)?;
        let $caller = $caller.as_ref();
        let $req = $request.into_inner();
        Ok(Response::new($call.await?))
    }};
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        with_caller!(self, request, |c, _r| self.0.auth_enable(c))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        with_caller!(self, request, |c, _r| self.0.auth_disable(c))
    }

    async fn auth_status(
        &self,
        _: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        Ok(Response::new(self.0.auth_status().await?))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.0.authenticate(&r.name, &r.password).await?,
        ))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.user_add(c, r))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.user_get(c, &r.name))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        with_caller!(self, request, |c, _r| self.0.user_list(c))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.user_delete(c, r))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.user_change_password(c, r))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.user_grant_role(c, r))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.user_revoke_role(c, r))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.role_add(c, r))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.role_get(c, &r.role))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        with_caller!(self, request, |c, _r| self.0.role_list(c))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.role_delete(c, r))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.role_grant_permission(c, r))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        with_caller!(self, request, |c, r| self.0.role_revoke_permission(c, r))
    }
}
