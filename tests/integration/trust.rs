//! Trust boundaries: hostile requests, in both runtimes, judged by what a recording upstream
//! really received.

use axum::{body::Body, response::Response};
use serde_json::{Value, json};

use crate::{
    helpers::*,
    lambda::{Function, alb_event, header_values, http_api_event, rest_event},
    tokens::*,
};

const API_KEY: &str = "pk-acme-secret";

/// A JWT provider (EC PEM) injecting `x-user-id`/`x-user-scopes`, an API-key provider with the
/// default identity headers, and routes that are public, JWT-only, key-only and aggregate.
fn identity_config(upstream: &Upstream, signer: &Signer, extra: &str) -> String {
    format!(
        r#"
        [upstreams.backend]
        url = "{url}"
        [auth.jwt.main]
        public_key_pem = '''
{pem}'''
        issuer = "{ISSUER}"
        audience = ["api"]
        algorithms = ["ES256"]
        forward_claims = {{ sub = "x-user-id", scope = "x-user-scopes" }}
        [auth.api_keys.partners]
        keys = [{{ id = "acme", sha256 = "{digest}", scopes = ["orders:read", "orders:write"] }}]
        {extra}
        [[routes]]
        path = "/public/{{*rest}}"
        upstream = "backend"
        [[routes]]
        path = "/jwt/{{*rest}}"
        upstream = "backend"
        auth = ["jwt:main"]
        [[routes]]
        path = "/keys/{{*rest}}"
        upstream = "backend"
        auth = ["api_key:partners"]
        [[routes]]
        path = "/combined"
        aggregate = [{{ upstream = "backend", path = "/part", key = "part" }}]
        "#,
        url = upstream.url(),
        pem = signer.public_pem,
        digest = sha256_hex(API_KEY),
    )
}

/// An upstream answering `{}` as JSON (aggregates need JSON), recording every request.
async fn json_upstream() -> Upstream {
    Upstream::recording(|_| {
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap()
    })
    .await
}

const SPOOFED_IDENTITY: &str =
    "x-user-id: admin\nx-user-scopes: everything\nx-api-key-id: root\nx-api-key-scopes: admin";

fn assert_no_identity(seen: &Captured, except: &[&str]) {
    for name in [
        "x-user-id",
        "x-user-scopes",
        "x-api-key-id",
        "x-api-key-scopes",
    ] {
        if !except.contains(&name) {
            assert!(
                seen.headers.get(name).is_none(),
                "{name} reached the upstream on {}: {:?}",
                seen.target,
                seen.headers.get(name)
            );
        }
    }
}

#[tokio::test]
async fn client_copies_of_identity_headers_are_removed_on_every_route() {
    let signer = Signer::ec("ec-1");
    let upstream = json_upstream().await;
    let gateway = Gateway::start(&identity_config(&upstream, &signer, "")).await;
    let token = signer.sign(&claims("user-7"));

    // A public route: no provider is involved, the headers still go.
    let response = raw_request(
        gateway.addr,
        &format!("GET /public/orders HTTP/1.1\nhost: gw\n{SPOOFED_IDENTITY}"),
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    assert_no_identity(&upstream.last(), &[]);

    // An aggregate route's backend call.
    let response = raw_request(
        gateway.addr,
        &format!("GET /combined HTTP/1.1\nhost: gw\n{SPOOFED_IDENTITY}"),
        b"",
    )
    .await;
    assert_eq!(response.status, 200, "{:?}", response);
    assert_eq!(upstream.last().target, "/part");
    assert_no_identity(&upstream.last(), &[]);

    // A route of the API-key provider: the JWT provider's headers are not its to set.
    let response = raw_request(
        gateway.addr,
        &format!("GET /keys/orders HTTP/1.1\nhost: gw\nx-api-key: {API_KEY}\n{SPOOFED_IDENTITY}"),
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.last();
    assert_no_identity(&seen, &["x-api-key-id", "x-api-key-scopes"]);
    assert_eq!(seen.headers["x-api-key-id"], "acme");
    assert_eq!(seen.headers["x-api-key-scopes"], "orders:read orders:write");

    // A JWT route: the token's claims, never the client's copies.
    let response = raw_request(
        gateway.addr,
        &format!(
            "GET /jwt/orders HTTP/1.1\nhost: gw\nauthorization: Bearer {token}\n{SPOOFED_IDENTITY}"
        ),
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.last();
    assert_no_identity(&seen, &["x-user-id", "x-user-scopes"]);
    assert_eq!(seen.headers["x-user-id"], "user-7");
    assert_eq!(seen.headers["x-user-scopes"], "orders:read");
}

#[tokio::test]
async fn api_key_identity_headers_can_be_renamed_or_turned_off() {
    let signer = Signer::ec("ec-1");
    let upstream = json_upstream().await;
    let config = identity_config(&upstream, &signer, "").replace(
        "[auth.api_keys.partners]",
        "[auth.api_keys.partners]\nforward_identity = { id = \"x-consumer-id\", scopes = \"\" }",
    );
    let gateway = Gateway::start(&config).await;

    let response = raw_request(
        gateway.addr,
        &format!("GET /keys/a HTTP/1.1\nhost: gw\nx-api-key: {API_KEY}\nx-consumer-id: root"),
        b"",
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-consumer-id"], "acme");
    assert!(seen.headers.get("x-api-key-id").is_none());
    assert!(seen.headers.get("x-api-key-scopes").is_none());

    // The renamed header is the gateway's on public routes too.
    raw_request(
        gateway.addr,
        "GET /public/a HTTP/1.1\nhost: gw\nx-consumer-id: root",
        b"",
    )
    .await;
    assert!(upstream.last().headers.get("x-consumer-id").is_none());
}

#[tokio::test]
async fn connection_cannot_strip_the_headers_the_gateway_sets() {
    let signer = Signer::ec("ec-1");
    let upstream = json_upstream().await;
    let gateway = Gateway::start(&identity_config(&upstream, &signer, "")).await;
    let token = signer.sign(&claims("user-7"));

    let response = raw_request(
        gateway.addr,
        &format!(
            "GET /jwt/orders HTTP/1.1\nhost: api.example.com\nauthorization: Bearer {token}\n\
             connection: x-user-id, authorization, x-request-id, traceparent, host, x-forwarded-for, x-real-ip\n\
             x-request-id: client-id-1\nX_User_Id: admin"
        ),
        b"",
    )
    .await;

    assert_eq!(
        response.status, 200,
        "the token still authenticates this hop"
    );
    let seen = upstream.last();
    assert_eq!(seen.headers["x-user-id"], "user-7");
    assert_eq!(seen.headers["x-request-id"], "client-id-1");
    assert_eq!(response.header("x-request-id"), Some("client-id-1"));
    assert!(seen.headers.get("traceparent").is_some());
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
    assert!(
        seen.headers.get("authorization").is_none(),
        "a field the client made hop-by-hop is used by the gateway, not forwarded"
    );
    assert!(seen.headers.get("x_user_id").is_none());
    assert!(seen.headers.get("connection").is_none());
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_refused_or_allowed_as_configured() {
    let upstream = Upstream::echo().await;
    let request = "GET /a HTTP/1.1\nhost: gw\nX_User_Id: admin\nx-kept: yes";

    let dropped = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;
    assert_eq!(raw_request(dropped.addr, request, b"").await.status, 200);
    let seen = upstream.last();
    assert!(seen.headers.get("x_user_id").is_none());
    assert_eq!(seen.headers["x-kept"], "yes");

    let refused = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[server]\nunderscore_headers = \"reject\"\n[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;
    let before = upstream.requests().len();
    let response = raw_request(refused.addr, request, b"").await;
    assert_eq!(response.status, 400);
    assert_problem_body(
        &response.json(),
        400,
        "invalid-header",
        response.header("x-request-id").unwrap(),
    );
    assert_eq!(
        upstream.requests().len(),
        before,
        "the upstream was not called"
    );

    let allowed = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[server]\nunderscore_headers = \"allow\"\n[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;
    assert_eq!(raw_request(allowed.addr, request, b"").await.status, 200);
    assert_eq!(upstream.last().headers["x_user_id"], "admin");
}

#[tokio::test]
async fn forwarding_headers_are_the_gateways_own_in_server_mode() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;

    let response = raw_request(
        gateway.addr,
        "GET /a HTTP/1.1\nhost: api.example.com:8443\nforwarded: for=6.6.6.6;host=evil;proto=https\n\
         true-client-ip: 6.6.6.6\nx-client-ip: 6.6.6.6\ncf-connecting-ip: 6.6.6.6\n\
         x-forwarded-port: 1\nx-forwarded-proto: https\nx-forwarded-host: evil.example\nx-real-ip: 6.6.6.6",
        b"",
    )
    .await;

    assert_eq!(response.status, 200);
    let seen = upstream.last();
    for name in ["true-client-ip", "x-client-ip", "cf-connecting-ip"] {
        assert!(seen.headers.get(name).is_none(), "{name} passed");
    }
    assert_eq!(
        seen.headers["forwarded"],
        "for=127.0.0.1;host=\"api.example.com:8443\";proto=http"
    );
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com:8443");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(
        seen.headers["x-forwarded-port"],
        gateway.addr.port().to_string().as_str()
    );
    assert_eq!(seen.headers["x-real-ip"], "127.0.0.1");
}

#[tokio::test]
async fn trusted_client_address_headers_pass_only_from_trusted_proxies() {
    let upstream = Upstream::echo().await;
    let route = "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n";
    let request =
        "GET /a HTTP/1.1\nhost: gw\ncf-connecting-ip: 198.51.100.4\ntrue-client-ip: 6.6.6.6";

    let behind_cloudflare = Gateway::start(&config_with_upstream(
        &upstream.url(),
        &format!(
            "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\ntrusted_headers = [\"cf-connecting-ip\"]\n{route}"
        ),
    ))
    .await;
    raw_request(behind_cloudflare.addr, request, b"").await;
    let seen = upstream.last();
    assert_eq!(seen.headers["cf-connecting-ip"], "198.51.100.4");
    assert!(seen.headers.get("true-client-ip").is_none(), "not listed");

    let peer_not_trusted = Gateway::start(&config_with_upstream(
        &upstream.url(),
        &format!(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\ntrusted_headers = [\"cf-connecting-ip\"]\n{route}"
        ),
    ))
    .await;
    raw_request(peer_not_trusted.addr, request, b"").await;
    assert!(upstream.last().headers.get("cf-connecting-ip").is_none());
}

/// A per-IP limit of one request a minute on `/a`.
fn per_ip_config(upstream: &Upstream, trusted_proxies: &str) -> String {
    config_with_upstream(
        &upstream.url(),
        &format!(
            "[server]\ntrusted_proxies = {trusted_proxies}\n\
             [rate_limits.per_ip]\nkey = \"ip\"\nlimit = 1\nper = \"1m\"\n\
             [[routes]]\npath = \"/a\"\nupstream = \"backend\"\nrate_limit = \"per_ip\"\n"
        ),
    )
}

async fn from_forwarded_for(gateway: &Gateway, address: &str) -> RawResponse {
    raw_request(
        gateway.addr,
        &format!("GET /a HTTP/1.1\nhost: gw\nx-forwarded-for: {address}"),
        b"",
    )
    .await
}

#[tokio::test]
async fn with_proxy_networks_a_direct_client_cannot_choose_its_address() {
    let upstream = Upstream::echo().await;

    // The peer (127.0.0.1) is not a trusted proxy: X-Forwarded-For is only the client's claim.
    let gateway = Gateway::start(&per_ip_config(&upstream, "[\"10.0.0.0/8\"]")).await;
    assert_eq!(
        from_forwarded_for(&gateway, "198.51.100.1").await.status,
        200
    );
    assert_eq!(
        from_forwarded_for(&gateway, "198.51.100.2").await.status,
        429
    );
    assert_eq!(upstream.last().headers["x-real-ip"], "127.0.0.1");

    // Through a trusted proxy, the first untrusted hop from the right is the client.
    let gateway =
        Gateway::start(&per_ip_config(&upstream, "[\"127.0.0.1\", \"10.0.0.0/8\"]")).await;
    assert_eq!(
        from_forwarded_for(&gateway, "6.6.6.6, 198.51.100.1, 10.1.1.1")
            .await
            .status,
        200
    );
    assert_eq!(upstream.last().headers["x-real-ip"], "198.51.100.1");
    assert_eq!(
        from_forwarded_for(&gateway, "198.51.100.1, 10.2.2.2")
            .await
            .status,
        429
    );
    assert_eq!(
        from_forwarded_for(&gateway, "198.51.100.2").await.status,
        200
    );
}

#[tokio::test]
async fn with_a_hop_count_alone_a_direct_client_chooses_its_address() {
    // Documented: a count trusts whoever connects. This is why proxyfn.toml uses networks.
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&per_ip_config(&upstream, "1")).await;
    assert_eq!(
        from_forwarded_for(&gateway, "198.51.100.1").await.status,
        200
    );
    assert_eq!(
        from_forwarded_for(&gateway, "198.51.100.2").await.status,
        200
    );
    assert_eq!(upstream.last().headers["x-real-ip"], "198.51.100.2");
}

#[tokio::test]
async fn ambiguous_hosts_are_refused_with_a_problem() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;

    for head in [
        "GET /a HTTP/1.1\nhost: gw\nhost: evil.example",
        "GET /a HTTP/1.1\nhost: evil/../admin@x",
        "GET /a HTTP/1.1\nhost: user@gw",
        "GET /a HTTP/1.1\nhost: example.com:99999",
        "GET /a HTTP/1.1\nhost: ",
        "GET /a HTTP/1.1",
        "GET http://other.example/a HTTP/1.1\nhost: gw",
    ] {
        let response = raw_request(gateway.addr, head, b"").await;
        assert_eq!(response.status, 400, "{head:?}");
        assert_problem_body(
            &response.json(),
            400,
            "invalid-host",
            response.header("x-request-id").unwrap(),
        );
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());

    // HTTP/1.0 has no Host requirement; an absolute target naming the Host is fine.
    assert_eq!(
        raw_request(gateway.addr, "GET /a HTTP/1.0", b"")
            .await
            .status,
        200
    );
    assert!(upstream.last().headers.get("x-forwarded-host").is_none());
    let response = raw_request(gateway.addr, "GET http://gw/a HTTP/1.1\nhost: gw", b"").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused_and_never_forwarded() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;
    let chunked_body = b"5\r\nhello\r\n0\r\n\r\n";

    for coding in ["gzip, chunked", "identity, chunked", "chunked, chunked"] {
        let response = raw_request(
            gateway.addr,
            &format!("POST /a HTTP/1.1\nhost: gw\ntransfer-encoding: {coding}"),
            chunked_body,
        )
        .await;
        assert_eq!(response.status, 501, "{coding}");
        assert_problem_body(
            &response.json(),
            501,
            "unsupported-transfer-coding",
            response.header("x-request-id").unwrap(),
        );
    }
    assert!(upstream.requests().is_empty());

    // Two framings of one body: the chunked one wins, the length is not forwarded.
    let response = raw_request(
        gateway.addr,
        "POST /a HTTP/1.1\nhost: gw\ncontent-length: 50\ntransfer-encoding: chunked",
        chunked_body,
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.last();
    assert_eq!(seen.body.as_ref(), b"hello");
    assert!(
        seen.headers.get("content-length").is_none(),
        "streamed on, chunked: {:?}",
        seen.headers
    );

    let response = raw_request(
        gateway.addr,
        "POST /a HTTP/1.1\nhost: gw\ntransfer-encoding: chunked",
        chunked_body,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(upstream.last().body.as_ref(), b"hello");
}

#[tokio::test]
async fn header_values_with_obs_text_reach_the_upstream_byte_for_byte() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"GET /a HTTP/1.1\r\nhost: gw\r\nx-file: caf\xe9.txt\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(upstream.last().headers["x-file"].as_bytes(), b"caf\xe9.txt");
}

#[tokio::test]
async fn tokens_without_sub_are_limited_by_address_and_never_cached_together() {
    let signer = Signer::ec("ec-1");
    let upstream = Upstream::echo().await;
    let config = format!(
        r#"
        [server]
        trusted_proxies = ["127.0.0.1"]
        [upstreams.backend]
        url = "{url}"
        [auth.jwt.main]
        public_key_pem = '''
{pem}'''
        algorithms = ["ES256"]
        [rate_limits.per_user]
        key = "user"
        limit = 1
        per = "1m"
        [[routes]]
        path = "/me"
        upstream = "backend"
        auth = ["jwt:main"]
        rate_limit = "per_user"
        cache = {{ ttl = "1m", per_principal = true }}
        "#,
        url = upstream.url(),
        pem = signer.public_pem,
    );
    let gateway = Gateway::start(&config).await;
    let subless = |n: u64| signer.sign(&json!({ "exp": now() + 3600, "jti": n }));
    let from = |token: String, address: &'static str| {
        let gateway = &gateway;
        async move {
            client()
                .get(gateway.url("/me"))
                .bearer_auth(token)
                .header("x-forwarded-for", address)
                .send()
                .await
                .unwrap()
        }
    };

    let first = from(subless(1), "198.51.100.1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "BYPASS");
    // Another sub-less token from another address has its own bucket...
    assert_eq!(from(subless(2), "198.51.100.2").await.status(), 200);
    // ...and one from the first address shares that address's.
    assert_eq!(from(subless(3), "198.51.100.1").await.status(), 429);
    assert_eq!(upstream.requests().len(), 2);
}

#[tokio::test]
async fn failed_authentication_counts_against_the_address_limit() {
    let upstream = Upstream::echo().await;
    let config = config_with_upstream(
        &upstream.url(),
        &format!(
            "[auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}]\n\
             [rate_limits.per_ip]\nkey = \"ip\"\nlimit = 3\nper = \"1m\"\n\
             [rate_limits.per_key]\nkey = \"api_key\"\nlimit = 1\nper = \"1m\"\n\
             [[routes]]\npath = \"/a\"\nupstream = \"backend\"\nauth = [\"api_key:partners\"]\n\
             rate_limit = [\"per_ip\", \"per_key\"]\n",
            sha256_hex(API_KEY)
        ),
    );
    let gateway = Gateway::start(&config).await;
    let with_key = |key: &'static str| {
        client()
            .get(gateway.url("/a"))
            .header("x-api-key", key)
            .send()
    };

    let wrong = with_key("guess-1").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.headers()["ratelimit-policy"],
        "\"per_ip\";q=3;w=60",
        "a refusal says what it counted against"
    );
    assert_eq!(with_key("guess-2").await.unwrap().status(), 401);
    // The per-key policy was not touched by the failures: the right key gets through.
    let right = with_key(API_KEY).await.unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!(
        right.headers()["ratelimit-policy"],
        "\"per_ip\";q=3;w=60, \"per_key\";q=1;w=60"
    );
    // The address has used its three.
    let limited = with_key("guess-3").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn only_real_preflights_are_answered_by_cors() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&config_with_upstream(
        &upstream.url(),
        "[cors]\nallow_origins = [\"https://app.example.com\"]\nallow_methods = [\"GET\", \"OPTIONS\"]\n\
         [[routes]]\npath = \"/a\"\nupstream = \"backend\"\n",
    ))
    .await;

    // A preflight: answered by the gateway.
    let preflight = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/a"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert!(
        preflight
            .headers()
            .contains_key("access-control-allow-methods")
    );
    assert!(upstream.requests().is_empty());

    // A plain OPTIONS, and a page's actual OPTIONS request: the route's.
    let plain = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.headers()["x-upstream"], "yes");
    assert_eq!(upstream.last().method, "OPTIONS");
    let actual = client()
        .request(reqwest::Method::OPTIONS, gateway.url("/a"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(actual.headers()["x-upstream"], "yes");
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        !actual
            .headers()
            .contains_key("access-control-allow-methods")
    );
    assert_eq!(upstream.requests().len(), 2);
}

// ---- Lambda: the same rules, with what the AWS front door established ----

#[tokio::test]
async fn in_lambda_forwarding_headers_come_from_the_event_never_from_the_client() {
    let upstream = Upstream::echo().await;
    let function = Function::start(&crate::lambda::proxy_config(&upstream, "")).await;
    let spoofed: &[(&str, &[&str])] = &[
        ("Host", &["api.example.com"]),
        ("X-Forwarded-Host", &["evil.example"]),
        ("X-Forwarded-Proto", &["http"]),
        ("X-Forwarded-Port", &["80"]),
        ("Forwarded", &["for=6.6.6.6;host=evil"]),
        ("True-Client-IP", &["6.6.6.6"]),
        ("X-Forwarded-For", &["6.6.6.6, 198.51.100.7"]),
    ];

    let response = function
        .api
        .respond(rest_event(
            "GET",
            "/users/1",
            "prod",
            json!({}),
            spoofed,
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["x-forwarded-port"], "443");
    assert_eq!(
        seen.headers["forwarded"],
        "for=198.51.100.7;host=api.example.com;proto=https"
    );
    assert!(seen.headers.get("true-client-ip").is_none());
    assert_eq!(seen.headers["x-real-ip"], "198.51.100.7");
    assert_eq!(
        seen.headers["x-forwarded-for"], "6.6.6.6, 198.51.100.7",
        "as the front door appended it"
    );

    let headers: serde_json::Map<String, Value> = spoofed
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), json!(v[0])))
        .collect();
    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/users/2",
            "",
            "$default",
            Value::Object(headers),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert!(seen.headers.get("true-client-ip").is_none());

    // No Host in the event: the front door's domain name is what the client asked for.
    let response = function
        .api
        .respond(http_api_event(
            "GET",
            "/users/3",
            "",
            "$default",
            json!({}),
            &[],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        upstream.last().headers["x-forwarded-host"],
        "r3pmxmplak.execute-api.us-east-2.amazonaws.com"
    );

    // ALB sets X-Forwarded-Proto and -Port itself: those are the front door's.
    let response = function
        .api
        .respond(alb_event(
            "GET",
            "/users/4",
            json!({}),
            &[
                ("host", &["lb.example.com"]),
                ("x-forwarded-proto", &["http"]),
                ("x-forwarded-port", &["80"]),
                ("x-forwarded-for", &["192.0.2.10"]),
                ("x-forwarded-host", &["evil.example"]),
            ],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-forwarded-host"], "lb.example.com");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-port"], "80");
}

#[tokio::test]
async fn in_lambda_identity_spoofing_and_connection_tricks_fail_as_in_server_mode() {
    let signer = Signer::ec("ec-1");
    let upstream = json_upstream().await;
    let function = Function::start(&identity_config(&upstream, &signer, "")).await;
    let token = signer.sign(&claims("user-7"));
    let authorization = format!("Bearer {token}");

    let response = function
        .api
        .respond(rest_event(
            "GET",
            "/public/orders",
            "prod",
            json!({}),
            &[
                ("Host", &["api.example.com"]),
                ("X-User-Id", &["admin"]),
                ("X_User_Id", &["admin"]),
            ],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let seen = upstream.last();
    assert_no_identity(&seen, &[]);
    assert!(seen.headers.get("x_user_id").is_none());

    let response = function
        .api
        .respond(rest_event(
            "GET",
            "/jwt/orders",
            "prod",
            json!({}),
            &[
                ("Host", &["api.example.com"]),
                ("Authorization", &[authorization.as_str()]),
                ("Connection", &["x-user-id, x-request-id, host"]),
            ],
            None,
        ))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-user-id"], "user-7");
    assert_eq!(seen.headers["x-forwarded-host"], "api.example.com");
    assert_eq!(
        seen.headers["x-request-id"].to_str().unwrap(),
        header_values(&response["multiValueHeaders"], "x-request-id")[0]
    );
}
