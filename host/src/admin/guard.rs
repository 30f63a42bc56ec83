//! Browser rules for every route (SPEC §15): browsers are not trusted,
//! even on loopback.
//!
//! - DNS rebinding: a page on `evil.example` whose name was re-pointed at
//!   127.0.0.1 reaches the endpoint with `Host: evil.example`. A request
//!   whose `Host` is neither the address bound (`IP:PORT`) nor `localhost`
//!   (nor `127.0.0.1` / `[::1]` when bound to loopback), with the bound port
//!   or none, is 400. No `Host` at all (HTTP/1.0) is let through. Bound to
//!   an unspecified address (`0.0.0.0`, `[::]`), any IP literal with the
//!   bound port is the endpoint's own address: no name was resolved, so
//!   nothing was rebound.
//! - CSRF: a state-changing request (not GET or HEAD) whose `Origin` is not
//!   one of those addresses, with the bound port, is 403. No `Origin`
//!   (curl, the command line) is let through.
//!
//! The checks are pure functions of the header and the bound address; the
//! middleware only applies them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;

/// Whether `host` (a `Host` header's value) names the endpoint bound at `bound`.
pub(crate) fn host_allowed(host: &str, bound: SocketAddr) -> bool {
    match split_authority(host) {
        Some((name, port)) => {
            (port.is_none() || port == Some(bound.port())) && name_allowed(&name, bound, port)
        }
        None => false,
    }
}

/// Whether `origin` (an `Origin` header's value, `scheme://host[:port]`) is
/// a page served by the endpoint bound at `bound` itself.
pub(crate) fn origin_allowed(origin: &str, bound: SocketAddr) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        // `null` (a sandboxed page, a file) and anything else.
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match split_authority(authority) {
        Some((name, port)) => {
            let port = port.unwrap_or(default_port);
            port == bound.port() && name_allowed(&name, bound, Some(port))
        }
        None => false,
    }
}

/// The lowercased host name (IPv6 literals keep their brackets) and port of
/// `authority`; `None` when it is not `NAME[:PORT]`.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim().to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (name, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (name, rest) = authority.split_at(end + 1);
        match rest {
            "" => (name.to_owned(), None),
            rest => (name.to_owned(), Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (authority.clone(), None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    if name.is_empty() {
        return None;
    }
    Some((name, port))
}

/// Whether host `name` (lowercase, IPv6 in brackets) is the endpoint's:
/// `localhost`, the bound IP, the loopback addresses when bound to
/// loopback, and (with the bound port given) any IP literal when bound to
/// an unspecified address.
fn name_allowed(name: &str, bound: SocketAddr, port: Option<u16>) -> bool {
    if name == "localhost" {
        return true;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return false;
    };
    // An IPv6 literal must be bracketed, an IPv4 one must not.
    if ip.is_ipv6() == (bare.len() == name.len()) {
        return false;
    }
    if ip == bound.ip() && port == Some(bound.port()) {
        return true;
    }
    if bound.ip().is_loopback() && ip.is_loopback() {
        return true;
    }
    bound.ip().is_unspecified() && port == Some(bound.port())
}

/// Applies the browser rules to every request.
pub(crate) async fn browser_rules(
    State(state): State<Arc<super::State>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if let Some(host) = headers.get(header::HOST) {
        let text = String::from_utf8_lossy(host.as_bytes());
        if !host_allowed(&text, state.listen) {
            return ApiError::bad_request(format!(
                "Host `{}` is not this endpoint ({} or localhost:{}): refused, as a DNS \
                 rebinding attempt would be",
                text.escape_debug(),
                state.listen,
                state.listen.port()
            ))
            .into_response();
        }
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let text = String::from_utf8_lossy(origin.as_bytes());
        if !origin_allowed(&text, state.listen) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin `{}` is not this endpoint (http://{}): a page elsewhere may not \
                     change this host (CSRF)",
                    text.escape_debug(),
                    state.listen
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_bound_address_and_localhost_are_allowed_hosts() {
        let b = addr("127.0.0.1:9090");
        for ok in [
            "127.0.0.1:9090",
            "localhost:9090",
            "LOCALHOST:9090",
            "localhost",
            "127.0.0.1",
            "[::1]:9090",
            "[::1]",
        ] {
            assert!(host_allowed(ok, b), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9090",
            "localhost:9091",
            "127.0.0.1:80",
            "localhost.evil.example:9090",
            "user@localhost:9090",
            "::1",
            "[127.0.0.1]:9090",
            "",
            "localhost:",
            "localhost:99999",
        ] {
            assert!(!host_allowed(refused, b), "{refused}");
        }
    }

    #[test]
    fn a_non_loopback_bind_allows_its_own_ip_only_with_its_port() {
        let b = addr("192.168.1.5:9090");
        assert!(host_allowed("192.168.1.5:9090", b));
        assert!(host_allowed("localhost:9090", b));
        assert!(!host_allowed("192.168.1.5", b));
        assert!(!host_allowed("127.0.0.1:9090", b));
        assert!(!host_allowed("10.0.0.1:9090", b));
        let v6 = addr("[fe80::1]:9090");
        assert!(host_allowed("[FE80::1]:9090", v6));
        // Bound to every address: IP literals with the port, never names.
        let any = addr("0.0.0.0:9090");
        assert!(host_allowed("10.0.0.7:9090", any));
        assert!(!host_allowed("10.0.0.7", any));
        assert!(!host_allowed("evil.example:9090", any));
    }

    #[test]
    fn an_origin_must_be_the_endpoint_itself() {
        let b = addr("127.0.0.1:9090");
        for ok in [
            "http://127.0.0.1:9090",
            "http://localhost:9090",
            "HTTP://LocalHost:9090",
            "http://[::1]:9090",
        ] {
            assert!(origin_allowed(ok, b), "{ok}");
        }
        for refused in [
            "http://evil.example",
            "http://evil.example:9090",
            "http://localhost",
            "http://localhost:8080",
            "null",
            "file://",
            "ftp://localhost:9090",
        ] {
            assert!(!origin_allowed(refused, b), "{refused}");
        }
        // The default port counts as given.
        assert!(origin_allowed("http://localhost", addr("127.0.0.1:80")));
        assert!(origin_allowed("https://localhost", addr("127.0.0.1:443")));
    }
}
