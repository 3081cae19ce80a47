//! Header rules at the proxy boundary.
//!
//! Hop-by-hop fields describe one connection and must not be forwarded (RFC 9110 §7.6.1):
//! `Connection` and every field it names, plus `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-Connection` and the proxy credentials fields.
//! Forwarding them lets a client smuggle requests or strip headers the backend relies on.
//!
//! The headers the gateway owns (identity, forwarding, `X-Request-Id`, `traceparent`) are
//! written here from the request's typed context, after the client's request has had its
//! hop-by-hop fields removed: a client naming them in `Connection` removes only its own copy.

use std::{fmt::Write as _, net::IpAddr};

use http::{
    Extensions, HeaderMap, HeaderName, HeaderValue,
    header::{self, CONNECTION},
};

use crate::{
    auth::Principal,
    context::RequestContext,
    observability::{RequestId, TraceContext, X_REQUEST_ID, trace_context::TRACEPARENT},
    runtime::ClientInfo,
};

const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
/// RFC 7239: one element, the client as the gateway established it.
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// The client address as the gateway established it; a client-sent copy never passes.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop fields, including those the `Connection` field names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::try_from(name.trim()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The header section sent upstream: the client's fields minus hop-by-hop ones, `Host` (the
/// client sets the upstream's) and `Expect` (the gateway has already accepted the body), then
/// the fields the gateway owns, from the request's context in `extensions`: the forwarding
/// fields, `X-Request-Id`, `traceparent` and the principal's identity headers.
pub fn to_upstream(mut headers: HeaderMap, extensions: &Extensions) -> HeaderMap {
    // Read before hop-by-hop removal: `Connection: host` cannot hide what the client asked for.
    let host = headers.remove(header::HOST);
    remove_hop_by_hop(&mut headers);
    headers.remove(header::EXPECT);

    let default_client;
    let client = match RequestContext::of(extensions) {
        Some(context) => &context.client,
        None => {
            default_client = ClientInfo::default();
            &default_client
        }
    };
    match forwarded_for(client) {
        Some(chain) => headers.insert(X_FORWARDED_FOR, chain),
        None => headers.remove(X_FORWARDED_FOR),
    };
    match client
        .ip
        .and_then(|ip| HeaderValue::try_from(ip.to_string()).ok())
    {
        Some(value) => headers.insert(X_REAL_IP, value),
        None => headers.remove(X_REAL_IP),
    };
    headers.insert(X_FORWARDED_PROTO, client.proto.clone());
    match &client.port {
        Some(port) => headers.insert(X_FORWARDED_PORT, port.clone()),
        None => headers.remove(X_FORWARDED_PORT),
    };
    let host = client.host.clone().or(host);
    match forwarded(client.ip, host.as_ref(), &client.proto) {
        Some(value) => headers.insert(FORWARDED, value),
        None => headers.remove(FORWARDED),
    };
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };

    match extensions.get::<RequestId>() {
        Some(id) => headers.insert(X_REQUEST_ID, id.0.clone()),
        None => headers.remove(X_REQUEST_ID),
    };
    match extensions
        .get::<TraceContext>()
        .and_then(TraceContext::header_value)
    {
        Some(traceparent) => headers.insert(TRACEPARENT, traceparent),
        None => headers.remove(TRACEPARENT),
    };
    if let Some(principal) = extensions.get::<Principal>() {
        for (name, value) in &principal.forward {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers
}

/// The chain the request arrived with, and the peer appended (server mode).
fn forwarded_for(client: &ClientInfo) -> Option<HeaderValue> {
    let Some(peer) = client.append_to_forwarded_for else {
        return client.forwarded_for.clone();
    };
    let mut chain = String::with_capacity(64);
    if let Some(received) = client.forwarded_for.as_ref().and_then(|v| v.to_str().ok()) {
        chain.push_str(received);
        chain.push_str(", ");
    }
    let _ = write!(chain, "{peer}");
    HeaderValue::try_from(chain).ok()
}

/// `Forwarded: for=…;host=…;proto=…` (RFC 7239 §4): values that are not tokens are quoted,
/// an IPv6 address in brackets (§6).
fn forwarded(
    ip: Option<IpAddr>,
    host: Option<&HeaderValue>,
    proto: &HeaderValue,
) -> Option<HeaderValue> {
    let mut element = String::with_capacity(64);
    match ip {
        Some(IpAddr::V4(v4)) => {
            let _ = write!(element, "for={v4};");
        }
        Some(IpAddr::V6(v6)) => {
            let _ = write!(element, "for=\"[{v6}]\";");
        }
        None => {}
    }
    if let Some(host) = host.and_then(|h| h.to_str().ok()) {
        // A validated authority: no quote or backslash can be in it.
        if host.bytes().all(is_tchar) {
            let _ = write!(element, "host={host};");
        } else {
            let _ = write!(element, "host=\"{host}\";");
        }
    }
    let _ = write!(element, "proto={}", proto.to_str().unwrap_or("http"));
    HeaderValue::try_from(element).ok()
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::try_from(*k).unwrap(),
                    HeaderValue::try_from(*v).unwrap(),
                )
            })
            .collect()
    }

    fn server_client(forwarded_for: Option<&'static str>) -> Extensions {
        let mut client = ClientInfo::direct(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)));
        client.forwarded_for = forwarded_for.map(HeaderValue::from_static);
        client.port = Some(HeaderValue::from_static("8080"));
        let plan = crate::config::Plan::new(&crate::config::Config::default()).unwrap();
        let entry = crate::context::Entry::new(&plan.server);
        let mut extensions = Extensions::new();
        extensions.insert(entry.context(crate::context::Arrival {
            client,
            ..Default::default()
        }));
        extensions
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn forwarded_for_is_appended_to_the_chain_the_request_arrived_with() {
        let headers = map(&[("x-forwarded-for", "ignored"), ("host", "api.example.com")]);
        let out = to_upstream(headers, &server_client(Some("1.1.1.1, 2.2.2.2")));
        assert_eq!(out[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.7");
        assert_eq!(out[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(out[X_FORWARDED_PROTO], "http");
        assert_eq!(out[X_FORWARDED_PORT], "8080");
        assert_eq!(
            out[FORWARDED],
            "for=10.0.0.7;host=api.example.com;proto=http"
        );
        assert!(out.get(header::HOST).is_none());
    }

    #[test]
    fn clients_cannot_choose_the_headers_the_gateway_owns() {
        let headers = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "1"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-request-id", "forged"),
            ("traceparent", "forged"),
            ("host", "api:8080"),
        ]);
        let out = to_upstream(headers, &server_client(None));
        assert_eq!(out[X_FORWARDED_PROTO], "http");
        assert_eq!(out[X_FORWARDED_HOST], "api:8080");
        assert_eq!(out[X_FORWARDED_PORT], "8080");
        assert_eq!(out[X_REAL_IP], "10.0.0.7");
        assert_eq!(out[FORWARDED], r#"for=10.0.0.7;host="api:8080";proto=http"#);
        assert!(out.get(X_REQUEST_ID).is_none() && out.get(TRACEPARENT).is_none());
    }

    #[test]
    fn connection_cannot_remove_what_the_gateway_adds() {
        let headers = map(&[
            (
                "connection",
                "x-forwarded-for, x-real-ip, host, x-user-id, x-request-id",
            ),
            ("host", "api"),
        ]);
        let mut extensions = server_client(None);
        extensions.insert(RequestId(HeaderValue::from_static("req-1")));
        extensions.insert(Principal {
            provider: "jwt:main".into(),
            id: "alice".into(),
            scopes: vec![],
            claims: None,
            forward: vec![(
                HeaderName::from_static("x-user-id"),
                HeaderValue::from_static("alice"),
            )],
        });
        let out = to_upstream(headers, &extensions);
        assert_eq!(out[X_FORWARDED_FOR], "10.0.0.7");
        assert_eq!(out[X_REAL_IP], "10.0.0.7");
        assert_eq!(out[X_FORWARDED_HOST], "api");
        assert_eq!(out["x-user-id"], "alice");
        assert_eq!(out[X_REQUEST_ID], "req-1");
    }

    #[test]
    fn ipv6_clients_are_bracketed_in_forwarded() {
        let value = forwarded(
            Some("2001:db8::7".parse().unwrap()),
            None,
            &HeaderValue::from_static("https"),
        )
        .unwrap();
        assert_eq!(value, r#"for="[2001:db8::7]";proto=https"#);
    }

    #[test]
    fn repeated_end_to_end_headers_survive() {
        let mut headers = map(&[("accept", "a/b")]);
        headers.append(header::ACCEPT, HeaderValue::from_static("c/d"));
        let out = to_upstream(headers, &server_client(None));
        let values: Vec<_> = out.get_all(header::ACCEPT).iter().collect();
        assert_eq!(values, ["a/b", "c/d"]);
    }
}
