//! Authentication and authorization: tokens minted here, a real JWKS endpoint, a real Redis.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{helpers::*, redis_server::RedisServer, tokens::*};

fn jwks_config(
    upstream: &Upstream,
    jwks: &JwksServer,
    provider_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        r#"
        [upstreams.backend]
        url = "{upstream}"
        [auth.jwt.main]
        jwks_url = "{jwks}"
        issuer = "{ISSUER}"
        audience = ["api"]
        algorithms = ["RS256", "ES256"]
        forward_claims = {{ sub = "x-user-id", scope = "x-user-scopes" }}
        {provider_extra}
        [[routes]]
        path = "/{{*rest}}"
        upstream = "backend"
        auth = ["jwt:main"]
        {route_extra}
        "#,
        upstream = upstream.url(),
        jwks = jwks.url(),
    )
}

async fn get_with_token(gateway: &Gateway, token: &str) -> reqwest::Response {
    client()
        .get(gateway.url("/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Asserts a 401 whose challenge names `reason`, and returns the problem body.
async fn expect_rejected(response: reqwest::Response, reason: &str) -> Value {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"proxyfn\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("error_description=\"{reason}\"")),
        "{challenge}"
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    expect_problem(response, 401, "unauthorized").await
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_reach_the_upstream_with_identity_headers() {
    let (rsa, ec) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"));
    let jwks = JwksServer::start(&[&rsa, &ec], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "", "")).await;

    for signer in [&rsa, &ec] {
        let token = signer.sign(&claims("user-1"));
        let response = get_with_token(&gateway, &token).await;
        assert_eq!(response.status(), 200, "{:?}", signer.alg);
        let seen = upstream.last();
        assert_eq!(seen.headers["x-user-id"], "user-1");
        assert_eq!(seen.headers["x-user-scopes"], "orders:read");
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {token}"),
            "forward_token defaults to true"
        );
    }
    assert_eq!(
        jwks.fetch_count(),
        1,
        "the key set was fetched once and cached"
    );
}

#[tokio::test]
async fn invalid_tokens_are_401_with_the_reason_class_and_never_reach_the_upstream() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "leeway = \"0s\"", "")).await;

    let with = |patch: Value| {
        let mut c = claims("user-1");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        rsa.sign(&c)
    };
    let valid = rsa.sign(&claims("user-1"));
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_payload = base64url(
        &json!({"sub": "admin", "iss": ISSUER, "aud": "api", "exp": now() + 3600}).to_string(),
    );
    let unsigned = format!(
        "{}.{}.",
        base64url(r#"{"alg":"none","typ":"JWT"}"#),
        base64url(&claims("user-1").to_string())
    );

    let cases = [
        (with(json!({"exp": now() - 60})), "expired"),
        (with(json!({"nbf": now() + 600})), "not_yet_valid"),
        (with(json!({"aud": "someone-else"})), "wrong_audience"),
        (
            format!("{head}.{forged_payload}.{signature}"),
            "bad_signature",
        ),
        (unsigned, "malformed"),
        (
            with(json!({"exp": (now() + 3600).to_string()})),
            "invalid_claims",
        ),
        (
            {
                let mut c = claims("user-1");
                c.as_object_mut().unwrap().remove("exp");
                rsa.sign(&c)
            },
            "invalid_claims",
        ),
        ("x".repeat(9000), "too_large"),
        ("not-a-jwt".to_owned(), "malformed"),
    ];
    for (token, reason) in cases {
        let response = get_with_token(&gateway, &token).await;
        let problem = expect_rejected(response, reason).await;
        assert!(
            !problem.to_string().contains(&token[..token.len().min(40)]),
            "the token is never echoed"
        );
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn the_issuer_is_checked_before_any_key_is_fetched() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "", "")).await;
    let mut foreign = claims("user-1");
    foreign["iss"] = json!("https://evil.test/");
    expect_rejected(
        get_with_token(&gateway, &rsa.sign(&foreign)).await,
        "unknown_issuer",
    )
    .await;
    assert_eq!(jwks.fetch_count(), 0);
}

#[tokio::test]
async fn missing_and_doubled_credentials_are_401() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "", "")).await;

    let response = client().get(gateway.url("/orders")).send().await.unwrap();
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"proxyfn\"",
        "no error code without credentials"
    );
    expect_problem(response, 401, "unauthorized").await;

    let token = rsa.sign(&claims("user-1"));
    let response = client()
        .get(gateway.url("/orders"))
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    expect_rejected(response, "multiple_credentials").await;

    let response = client()
        .get(gateway.url("/orders"))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    expect_rejected(response, "malformed").await;
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let rsa = Signer::rsa("rsa-1");
    let upstream = Upstream::echo().await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\n[auth.jwt.pem]\npublic_key_pem = '''\n{}'''\nalgorithms = [\"RS256\"]\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\nauth = [\"jwt:pem\"]\n",
        upstream.url(),
        rsa.public_pem
    );
    let gateway = Gateway::start(&config).await;

    let confused = Signer::hmac(rsa.public_pem.as_bytes()).sign(&claims("admin"));
    expect_rejected(
        get_with_token(&gateway, &confused).await,
        "algorithm_not_allowed",
    )
    .await;
    assert_eq!(
        get_with_token(&gateway, &rsa.sign(&claims("user-1")))
            .await
            .status(),
        200
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn an_eddsa_public_key_pem_verifies_eddsa_tokens() {
    let ed = Signer::ed("ed-1");
    let upstream = Upstream::echo().await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\n[auth.jwt.ed]\npublic_key_pem = '''\n{}'''\nalgorithms = [\"EdDSA\"]\n\
         forward_claims = {{ sub = \"x-user-id\" }}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\nauth = [\"jwt:ed\"]\n",
        upstream.url(),
        ed.public_pem
    );
    let gateway = Gateway::start(&config).await;
    assert_eq!(
        get_with_token(&gateway, &ed.sign(&claims("ed-user")))
            .await
            .status(),
        200
    );
    assert_eq!(upstream.last().headers["x-user-id"], "ed-user");
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_so_key_rotation_works() {
    let (old, new) = (Signer::rsa("old"), Signer::rsa("new"));
    let jwks = JwksServer::start(&[&old], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(
        &upstream,
        &jwks,
        "jwks_min_refresh = \"200ms\"",
        "",
    ))
    .await;

    assert_eq!(
        get_with_token(&gateway, &old.sign(&claims("u")))
            .await
            .status(),
        200
    );
    assert_eq!(jwks.fetch_count(), 1);
    jwks.serve_keys(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(250)).await;

    let token = new.sign(&claims("u"));
    let requests = (0..10).map(|_| {
        let (client, url, token) = (client(), gateway.url("/orders"), token.clone());
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(
        jwks.fetch_count(),
        2,
        "ten concurrent requests with the new kid caused one refetch"
    );
}

#[tokio::test]
async fn a_flood_of_forged_kids_cannot_hammer_the_identity_provider() {
    let (real, forger) = (Signer::rsa("real"), Signer::rsa("forged"));
    let jwks = JwksServer::start(&[&real], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "", "")).await;
    assert_eq!(
        get_with_token(&gateway, &real.sign(&claims("u")))
            .await
            .status(),
        200
    );

    for i in 0..20 {
        let mut signer_claims = claims("attacker");
        signer_claims["n"] = json!(i);
        expect_rejected(
            get_with_token(&gateway, &forger.sign(&signer_claims)).await,
            "unknown_key",
        )
        .await;
    }
    assert_eq!(
        jwks.fetch_count(),
        1,
        "no refetch within jwks_min_refresh (30s)"
    );
}

#[tokio::test]
async fn with_the_jwks_endpoint_down_cached_keys_keep_working() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 0).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(
        &upstream,
        &jwks,
        "jwks_min_refresh = \"100ms\"",
        "",
    ))
    .await;
    assert_eq!(
        get_with_token(&gateway, &rsa.sign(&claims("a")))
            .await
            .status(),
        200
    );

    jwks.set_down(true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let response = get_with_token(&gateway, &rsa.sign(&claims("b"))).await;
    assert_eq!(
        response.status(),
        200,
        "expired keys still serve while the endpoint is down"
    );
    assert_eq!(jwks.fetch_count(), 2, "a refresh was attempted");
}

#[tokio::test]
async fn with_the_jwks_endpoint_down_and_no_keys_the_answer_is_503_not_401() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    jwks.set_down(true);
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "", "")).await;
    let response = get_with_token(&gateway, &rsa.sign(&claims("a"))).await;
    assert_eq!(response.headers()["retry-after"], "30");
    expect_problem(response, 503, "auth-unavailable").await;
}

#[tokio::test]
async fn scopes_must_all_be_granted() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(
        &upstream,
        &jwks,
        "",
        "scopes = [\"orders:read\", \"orders:write\"]",
    ))
    .await;

    let mut both = claims("u");
    both["scope"] = json!("orders:read orders:write profile");
    assert_eq!(
        get_with_token(&gateway, &rsa.sign(&both)).await.status(),
        200
    );

    let response = get_with_token(&gateway, &rsa.sign(&claims("u"))).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"proxyfn\", error=\"insufficient_scope\", scope=\"orders:read orders:write\""
    );
    let problem = expect_problem(response, 403, "insufficient-scope").await;
    assert!(problem["detail"].as_str().unwrap().contains("orders:write"));
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn client_sent_identity_headers_are_removed_and_the_token_can_be_withheld() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "forward_token = false", "")).await;

    let mut no_scope = claims("real-user");
    no_scope.as_object_mut().unwrap().remove("scope");
    let response = client()
        .get(gateway.url("/orders"))
        .bearer_auth(rsa.sign(&no_scope))
        .header("x-user-id", "admin")
        .header("x-user-scopes", "everything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.headers["x-user-id"], "real-user");
    assert!(
        seen.headers.get("x-user-scopes").is_none(),
        "a spoofed header is removed even with no claim to replace it"
    );
    assert!(
        seen.headers.get("authorization").is_none(),
        "forward_token = false"
    );
}

fn api_key_config(upstream: &Upstream, provider: &str) -> String {
    format!(
        "[upstreams.backend]\nurl = \"{}\"\n[auth.api_keys.partners]\n{provider}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\nauth = [\"api_key:partners\"]\nscopes = [\"orders:read\"]\n",
        upstream.url()
    )
}

#[tokio::test]
async fn api_keys_from_config_are_checked_by_digest_in_a_header_or_the_query() {
    let upstream = Upstream::echo().await;
    let keys = format!(
        "keys = [{{ id = \"acme\", sha256 = \"{}\", scopes = [\"orders:read\"] }}, {{ id = \"weak\", sha256 = \"{}\" }}]",
        sha256_hex("acme-secret"),
        sha256_hex("weak-secret")
    );
    let gateway = Gateway::start(&api_key_config(&upstream, &keys)).await;

    let ok = client()
        .get(gateway.url("/orders"))
        .header("x-api-key", "acme-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let response = client()
        .get(gateway.url("/orders"))
        .header("x-api-key", "wrong")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("unknown_api_key")
    );
    expect_problem(response, 401, "unauthorized").await;
    let response = client()
        .get(gateway.url("/orders"))
        .header("x-api-key", "weak-secret")
        .send()
        .await
        .unwrap();
    expect_problem(response, 403, "insufficient-scope").await;

    let query = Gateway::start(&api_key_config(
        &upstream,
        &format!("query = \"api_key\"\n{keys}"),
    ))
    .await;
    assert_eq!(query.status("/orders?api_key=acme-secret").await, 200);
    assert_eq!(query.status("/orders?api_key=nope").await, 401);
}

#[tokio::test]
async fn api_keys_in_redis_are_added_and_revoked_at_runtime() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let config = api_key_config(
        &upstream,
        &format!("store = \"redis\"\nredis_url = \"{}\"", redis.url()),
    );
    let file = ConfigFile::new(&config);
    let gateway = Gateway::start(&config).await;
    let cli = |args: &[&str]| file.run_ok(args);

    let key = cli(&[
        "keys",
        "add",
        "partners",
        "--id",
        "acme",
        "--scope",
        "orders:read",
    ])
    .trim()
    .to_owned();
    assert!(key.starts_with("pfk_"), "{key}");
    let listed = cli(&["keys", "list", "partners"]);
    assert!(
        listed.contains("acme") && !listed.contains(&key),
        "the key itself is never listed: {listed}"
    );

    let send = |key: String| {
        client()
            .get(gateway.url("/orders"))
            .header("x-api-key", key)
            .send()
    };
    assert_eq!(send(key.clone()).await.unwrap().status(), 200);
    cli(&["keys", "revoke", "partners", "--id", "acme"]);
    assert_eq!(
        send(key.clone()).await.unwrap().status(),
        401,
        "revoked without a restart"
    );
}

#[tokio::test]
async fn with_the_key_store_down_redis_keys_get_503_and_config_keys_still_work() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let provider = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nkeys = [{{ id = \"static\", sha256 = \"{}\", scopes = [\"orders:read\"] }}]",
        redis.url(),
        sha256_hex("static-key")
    );
    let gateway = Gateway::start(&api_key_config(&upstream, &provider)).await;
    redis.stop().await;

    let response = client()
        .get(gateway.url("/orders"))
        .header("x-api-key", "static-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client()
        .get(gateway.url("/orders"))
        .header("x-api-key", "other")
        .send()
        .await
        .unwrap();
    expect_problem(response, 503, "auth-unavailable").await;
}

#[tokio::test]
async fn any_one_provider_suffices() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\n[auth.jwt.main]\njwks_url = \"{}\"\nalgorithms = [\"RS256\"]\n\
         [auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}]\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\nauth = [\"jwt:main\", \"api_key:partners\"]\n",
        upstream.url(),
        jwks.url(),
        sha256_hex("acme-secret")
    );
    let gateway = Gateway::start(&config).await;
    assert_eq!(
        get_with_token(&gateway, &rsa.sign(&claims("u")))
            .await
            .status(),
        200
    );
    let response = client()
        .get(gateway.url("/x"))
        .header("x-api-key", "acme-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.status("/x").await, 401);
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn a_token_can_come_from_a_cookie() {
    let rsa = Signer::rsa("rsa-1");
    let jwks = JwksServer::start(&[&rsa], 300).await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&jwks_config(&upstream, &jwks, "cookie = \"session\"", "")).await;
    let token = rsa.sign(&claims("cookie-user"));

    let response = client()
        .get(gateway.url("/orders"))
        .header("cookie", format!("theme=dark; session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().headers["x-user-id"], "cookie-user");

    let response = client()
        .get(gateway.url("/orders"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "with cookie set, the Authorization header is not read"
    );
    let response = client()
        .get(gateway.url("/orders"))
        .header("cookie", format!("session={token}; session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "two session cookies are two tokens");
}
