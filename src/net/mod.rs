//! Network shims on the client listener: HTTP/1.1 beside gRPC ([`http`]), and the
//! rewriting of etcdctl 3.4's HTTP/2 `:authority` URLs ([`authority`], real build only).
//! They adapt bytes on the wire; they know nothing of the member.

#[cfg(not(madsim))]
mod authority;
mod http;

pub use http::{
    client_server, serve_clients, ClientRouter, HttpBody, HttpHandler, HttpRequest, HttpResponse,
};
