//! The trust boundary: what a client can and cannot tell the services behind the gateway.
//!
//! The gateway owns some request headers toward upstreams: the identity headers the
//! configuration injects (JWT `forward_claims`, API-key `forward_identity`), the forwarding
//! headers (`X-Forwarded-For`/`-Host`/`-Proto`/`-Port`, `Forwarded`, `X-Real-IP`),
//! `X-Request-Id` and `traceparent`. [`TrustBoundaryLayer`] runs on every request, in both
//! runtimes, before routing:
//!
//! - framing that two parties could read differently is refused: more than one `Host`, a
//!   `Host` that is not a valid authority (RFC 9110 §7.2, RFC 3986 §3.2: no userinfo, no path,
//!   a port of at most 65535), an HTTP/1.1 request without `Host` (RFC 9112 §3.2), a target
//!   authority that disagrees with `Host`, `Content-Length` values that differ: **400**; a
//!   `Transfer-Encoding` other than exactly `chunked` (RFC 9112 §6.1; a coding the gateway
//!   would not decode): **501**. With `chunked`, a `Content-Length` is removed (§6.3: the
//!   chunked framing wins, and an intermediary must not forward both), as hyper already does
//!   in server mode;
//! - header names with `_` are dropped (nginx's default; Envoy's
//!   `headers_with_underscores_action`), since some servers read `X_User_Id` as `X-User-Id`;
//!   `server.underscore_headers` can refuse them instead, or let them pass;
//! - client copies of identity headers are removed on every route, whatever its `auth`, so a
//!   public route cannot be used to hand an upstream a forged identity;
//! - client-address headers other than the gateway's own (`Forwarded`, `True-Client-IP`,
//!   `X-Client-IP`, `CF-Connecting-IP`, ...) are removed, unless `server.trusted_headers`
//!   names them and the request came through a trusted proxy (or an AWS front door).
//!
//! A request made from a malformed Lambda event ([`RequestContext::malformed_event`]) is refused here too, with
//! 400 `malformed-event`, so it has a request id and an access-log line like any other.
//!
//! The gateway's own values are written when the request is sent upstream, after hop-by-hop
//! removal, so a `Connection` header cannot strip them ([`crate::upstream::headers`]).

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    response::{IntoResponse, Response},
};
use futures_util::future::{Either, Ready, ready};
use http::{
    HeaderMap, HeaderName, Version,
    header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING},
    uri::Authority,
};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::{context::RequestContext, error::Error};

/// Headers that claim to say who or where the client is. Only the gateway's own forwarding
/// headers describe the client to an upstream; these are removed unless configured as
/// trusted (`server.trusted_headers`).
pub const CLIENT_ADDRESS_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded",
    "forwarded-for",
    "x-forwarded-port",
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-envoy-external-address",
    "cloudfront-viewer-address",
    "x-azure-clientip",
    "x-appengine-user-ip",
];

/// What happens to a request header whose name contains `_` (`server.underscore_headers`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreHeaders {
    /// Removed before anything reads the request (nginx's `underscores_in_headers off`).
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Passed like any other header.
    Allow,
}

/// Which peers may speak for the client in `X-Forwarded-*` (`server.trusted_proxies`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedProxies {
    /// The nearest `n` hops are trusted proxies, whoever connects. With `0`, nobody is.
    Count(usize),
    /// A hop is trusted only when its address is in one of these networks (nginx
    /// `set_real_ip_from` with `real_ip_recursive on`).
    Networks(Vec<IpNet>),
}

impl Default for TrustedProxies {
    fn default() -> Self {
        TrustedProxies::Count(0)
    }
}

impl TrustedProxies {
    /// Whether `peer`, the address that connected, is a trusted proxy.
    pub fn trusts_peer(&self, peer: IpAddr) -> bool {
        match self {
            TrustedProxies::Count(n) => *n > 0,
            TrustedProxies::Networks(networks) => contains(networks, peer),
        }
    }

    /// The client's address, given the TCP `peer` and the `X-Forwarded-For` entries (left to
    /// right). Entries are only read through trusted hops, from the right: anything further
    /// left was written by the client and can be anything.
    pub fn client_address(&self, peer: IpAddr, chain: &[&str]) -> IpAddr {
        match self {
            TrustedProxies::Count(0) => peer,
            TrustedProxies::Count(n) => {
                let index = chain.len().saturating_sub(*n);
                chain
                    .get(index)
                    .and_then(|entry| parse_entry(entry))
                    .unwrap_or(peer)
            }
            TrustedProxies::Networks(networks) => {
                if !contains(networks, peer) {
                    return peer;
                }
                let mut client = peer;
                for entry in chain.iter().rev() {
                    let Some(address) = parse_entry(entry) else {
                        // Garbage ends the walk: the last address read is as far as trust goes.
                        return client;
                    };
                    client = address;
                    if !contains(networks, address) {
                        return address;
                    }
                }
                client
            }
        }
    }
}

fn contains(networks: &[IpNet], address: IpAddr) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|network| network.contains(&address))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write them.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

/// Parses `server.trusted_proxies` entries: addresses (`10.0.0.7`) or networks
/// (`10.0.0.0/8`, `2001:db8::/32`).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(network.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("not an IP address or CIDR network: {text:?}"))
}

/// Whether `value` is a valid `Host`: an authority with a host and at most a port, nothing
/// else (RFC 9110 §7.2, RFC 3986 §3.2).
pub fn is_valid_host(value: &[u8]) -> bool {
    if value.contains(&b'@') || value.contains(&b'/') || Authority::try_from(value).is_err() {
        return false;
    }
    // `Authority` also accepts an empty or oversized port: split it off and check both parts.
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, rest)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => match rest {
                "" => return true,
                _ => match rest.strip_prefix(':') {
                    Some(port) => (v6, Some(port)),
                    None => return false,
                },
            },
            _ => return false,
        },
        None => match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    !host.is_empty()
        && port.is_none_or(|port| {
            port.bytes().all(|b| b.is_ascii_digit())
                && matches!(port.parse::<u16>(), Ok(p) if p > 0)
        })
}

/// Applies the trust boundary to every request; built once from the configuration.
#[derive(Clone, Debug)]
pub struct TrustBoundaryLayer {
    rules: Arc<Rules>,
}

#[derive(Debug)]
struct Rules {
    underscores: UnderscoreHeaders,
    /// Removed from every request: identity headers, and client-address headers not trusted.
    owned: Vec<HeaderName>,
    /// Client-address headers passed from trusted peers (`server.trusted_headers`).
    trusted: Vec<HeaderName>,
}

impl TrustBoundaryLayer {
    /// `identity` is every header the configuration's providers inject; `trusted` the
    /// client-address headers passed from trusted proxies.
    pub fn new(
        underscores: UnderscoreHeaders,
        identity: impl IntoIterator<Item = HeaderName>,
        trusted: &[HeaderName],
    ) -> Self {
        let mut owned: Vec<HeaderName> = identity.into_iter().collect();
        owned.extend(
            CLIENT_ADDRESS_HEADERS
                .iter()
                .map(|name| HeaderName::from_static(name)),
        );
        owned.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        owned.dedup();
        Self {
            rules: Arc::new(Rules {
                underscores,
                owned,
                trusted: trusted.to_vec(),
            }),
        }
    }
}

impl<S> Layer<S> for TrustBoundaryLayer {
    type Service = TrustBoundary<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TrustBoundary {
            inner,
            rules: self.rules.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrustBoundary<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S> Service<Request> for TrustBoundary<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let context = RequestContext::of(request.extensions());
        let direct_http = context.is_some_and(|c| c.client.direct_http);
        let trusted_peer = context.is_some_and(|c| c.client.trusted_peer);
        if let Some(why) = context.and_then(|c| c.malformed_event) {
            return Either::Right(ready(Ok(Error::MalformedEvent(why).into_response())));
        }
        if let Err(error) = check_framing(&mut request, direct_http) {
            return Either::Right(ready(Ok(error.into_response())));
        }
        if let Err(error) = self.rules.clean(request.headers_mut(), trusted_peer) {
            return Either::Right(ready(Ok(error.into_response())));
        }
        Either::Left(self.inner.call(request))
    }
}

/// Host, Transfer-Encoding and Content-Length, as RFC 9112 requires of a server.
fn check_framing(request: &mut Request, direct_http: bool) -> Result<(), Error> {
    let headers = request.headers();
    let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let only_chunked = codings.next().is_none()
            && first
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked {
            return Err(Error::UnsupportedTransferCoding);
        }
        request.headers_mut().remove(CONTENT_LENGTH);
    }
    let mut lengths = request.headers().get_all(CONTENT_LENGTH).iter();
    if let (Some(first), Some(_)) = (lengths.next(), lengths.next()) {
        let first = first.clone();
        if request
            .headers()
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|other| *other != first)
        {
            return Err(Error::AmbiguousFraming("Content-Length values differ"));
        }
        request.headers_mut().insert(CONTENT_LENGTH, first);
    }
    let headers = request.headers();
    let mut hosts = headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Error::InvalidHost("more than one Host header")),
        (Some(host), None) => {
            if !is_valid_host(host.as_bytes()) {
                return Err(Error::InvalidHost(
                    "the Host header is not a valid authority",
                ));
            }
            if let Some(authority) = request.uri().authority()
                && !authority
                    .as_str()
                    .eq_ignore_ascii_case(host.to_str().unwrap_or_default())
            {
                return Err(Error::InvalidHost(
                    "the request target's authority and the Host header disagree",
                ));
            }
        }
        (None, _) => {
            if direct_http && request.version() == Version::HTTP_11 {
                return Err(Error::InvalidHost(
                    "an HTTP/1.1 request needs a Host header",
                ));
            }
        }
    }
    Ok(())
}

impl Rules {
    /// Removes what a client may not send upstream; most requests have none of it, and then
    /// nothing is allocated.
    fn clean(&self, headers: &mut HeaderMap, trusted_peer: bool) -> Result<(), Error> {
        let passes = |name: &HeaderName| trusted_peer && self.trusted.contains(name);
        let underscored = |name: &HeaderName| {
            self.underscores != UnderscoreHeaders::Allow && name.as_str().contains('_')
        };
        let unwanted = |name: &HeaderName| {
            underscored(name)
                || (self
                    .owned
                    .binary_search_by(|o| o.as_str().cmp(name.as_str()))
                    .is_ok()
                    && !passes(name))
        };
        if !headers.keys().any(unwanted) {
            return Ok(());
        }
        if self.underscores == UnderscoreHeaders::Reject && headers.keys().any(underscored) {
            return Err(Error::InvalidHeaderName);
        }
        let doomed: Vec<HeaderName> = headers.keys().filter(|n| unwanted(n)).cloned().collect();
        for name in &doomed {
            if underscored(name) {
                tracing::debug!(header = name.as_str(), "header with '_' dropped");
            }
            headers.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_a_host_and_at_most_a_port() {
        for good in [
            "api.example.com",
            "api.example.com:8443",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[2001:db8::1]",
            "xn--a.example.com",
            "localhost",
        ] {
            assert!(is_valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "evil/../admin@x",
            "user@host",
            "host/path",
            "example.com:99999",
            "example.com:0",
            "example.com:",
            "exa mple.com",
            "2001:db8::1",
            "<url-id>.lambda-url.us-east-1.on.aws",
        ] {
            assert!(!is_valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn a_hop_count_reads_that_many_entries_from_the_right() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let chain = ["6.6.6.6", "1.2.3.4", "172.16.0.9"];
        assert_eq!(TrustedProxies::Count(0).client_address(peer, &chain), peer);
        assert_eq!(
            TrustedProxies::Count(1).client_address(peer, &chain),
            "172.16.0.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            TrustedProxies::Count(2).client_address(peer, &chain),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            TrustedProxies::Count(1).client_address(peer, &["not-an-ip"]),
            peer
        );
    }

    #[test]
    fn networks_trust_only_hops_inside_them() {
        let trusted = TrustedProxies::Networks(vec![
            parse_network("10.0.0.0/8").unwrap(),
            parse_network("192.168.1.5").unwrap(),
        ]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // A client connecting directly cannot choose its address.
        assert_eq!(trusted.client_address(stranger, &["1.1.1.1"]), stranger);
        // Through trusted hops, the first untrusted address from the right is the client.
        assert_eq!(
            trusted.client_address(proxy, &["6.6.6.6", "198.51.100.4", "192.168.1.5"]),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        // A port on an entry is tolerated; garbage stops at the last address read.
        assert_eq!(
            trusted.client_address(proxy, &["198.51.100.4:5000"]),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            trusted.client_address(proxy, &["198.51.100.4", "junk", "10.9.9.9"]),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // IPv4-mapped IPv6 peers match IPv4 networks.
        assert!(trusted.trusts_peer("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!trusted.trusts_peer(stranger));
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("proxy.internal").is_err());
    }
}
