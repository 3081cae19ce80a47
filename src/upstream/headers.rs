//! Header rules at the proxy boundary.
//!
//! Hop-by-hop fields describe one connection and must not be forwarded (RFC 9110 §7.6.1):
//! `Connection` and every field it names, plus `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-Connection` and the proxy credentials fields.
//! Forwarding them lets a client smuggle requests or strip headers the backend relies on.

use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{self, CONNECTION},
};

use crate::runtime::ClientInfo;

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
/// The client address as the gateway established it; a client-sent copy never passes.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop fields, including those the `Connection` field names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// The header section sent upstream: the client's fields minus hop-by-hop ones, `Host` (the
/// client sets the upstream's) and `Expect` (the gateway has already accepted the body), plus
/// the `X-Forwarded-*` fields and `X-Real-IP`.
pub fn to_upstream(mut headers: HeaderMap, client: &ClientInfo) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    let host = headers.remove(header::HOST);
    headers.remove(header::EXPECT);

    if let Some(peer) = client.append_to_forwarded_for {
        let mut chain = String::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(value) = value.to_str() {
                chain.push_str(value);
                chain.push_str(", ");
            }
        }
        chain.push_str(&peer.to_string());
        if let Ok(value) = HeaderValue::try_from(chain) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }

    match client.ip {
        Some(ip) => match HeaderValue::try_from(ip.to_string()) {
            Ok(value) => headers.insert(X_REAL_IP, value),
            Err(_) => headers.remove(X_REAL_IP),
        },
        None => headers.remove(X_REAL_IP),
    };
    if !client.trust_forwarded || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, client.proto.clone());
    }
    if !client.trust_forwarded || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    headers
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

    fn server_client() -> ClientInfo {
        ClientInfo::direct(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)))
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
    fn forwarded_for_is_appended_and_repeated_values_are_kept_in_order() {
        let mut headers = map(&[("x-forwarded-for", "1.1.1.1"), ("host", "api.example.com")]);
        headers.append(X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        let out = to_upstream(headers, &server_client());
        assert_eq!(out[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.7");
        assert_eq!(out[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(out[X_FORWARDED_PROTO], "http");
        assert!(out.get(header::HOST).is_none());
    }

    #[test]
    fn untrusted_clients_cannot_choose_forwarded_proto_or_host() {
        let headers = map(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("host", "api"),
        ]);
        let out = to_upstream(headers, &server_client());
        assert_eq!(out[X_FORWARDED_PROTO], "http");
        assert_eq!(out[X_FORWARDED_HOST], "api");
    }

    #[test]
    fn repeated_end_to_end_headers_survive() {
        let mut headers = map(&[("accept", "a/b")]);
        headers.append(header::ACCEPT, HeaderValue::from_static("c/d"));
        let out = to_upstream(headers, &server_client());
        let values: Vec<_> = out.get_all(header::ACCEPT).iter().collect();
        assert_eq!(values, ["a/b", "c/d"]);
    }
}
