//! The response cache: hits and misses, `vary`, upstream `Cache-Control`, authenticated
//! requests, the size cap, and a Redis store shared by two gateway instances.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{body::Body, response::Response};

use crate::{helpers::*, redis_server::RedisServer};

/// Answers `call N to TARGET`, counting calls; `/no-store`, `/private`, `/max-age-0`,
/// `/cookie` and `/big` answer with what their names say.
async fn counting() -> (Upstream, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let upstream = Upstream::recording(move |captured| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let path = captured
            .target
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut response = Response::builder().header("content-type", "text/plain");
        response = match path.as_str() {
            "/no-store" => response.header("cache-control", "no-store"),
            "/private" => response.header("cache-control", "private, max-age=60"),
            "/max-age-0" => response.header("cache-control", "max-age=0"),
            "/cookie" => response.header("set-cookie", "session=abc"),
            _ => response.header("cache-control", "public, max-age=300"),
        };
        let body = if path == "/big" {
            "x".repeat(4096)
        } else {
            format!("call {n} to {}", captured.target)
        };
        response.body(Body::from(body)).unwrap()
    })
    .await;
    (upstream, calls)
}

fn config(upstream: &Upstream, extra: &str, cache: &str) -> String {
    format!(
        "{extra}\n[upstreams.backend]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/{{*any}}\"\nmethods = [\"GET\"]\nupstream = \"backend\"\ncache = {cache}\n",
        upstream.url()
    )
}

/// `(X-Cache, body)` of a GET with the given headers.
async fn fetch(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = client().get(gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
    (x_cache, response.text().await.unwrap())
}

fn cached(body: &str) -> (String, String) {
    ("HIT".to_owned(), body.to_owned())
}

fn fresh(body: &str) -> (String, String) {
    ("MISS".to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_second_request_is_a_hit_with_an_age_and_the_query_is_part_of_the_key() {
    let (upstream, calls) = counting().await;
    let gateway = Gateway::start(&config(&upstream, "", "{ ttl = \"30s\" }")).await;
    assert_eq!(
        fetch(&gateway, "/items", &[]).await,
        fresh("call 1 to /items")
    );
    let response = client().get(gateway.url("/items")).send().await.unwrap();
    assert_eq!(response.headers()["x-cache"], "HIT");
    let age: u64 = response.headers()["age"].to_str().unwrap().parse().unwrap();
    assert!(age <= 30);
    assert_eq!(response.text().await.unwrap(), "call 1 to /items");
    assert_eq!(
        fetch(&gateway, "/items?page=2", &[]).await,
        fresh("call 2 to /items?page=2")
    );
    assert_eq!(
        fetch(&gateway, "/items?page=2", &[]).await,
        cached("call 2 to /items?page=2")
    );
    let head = client().head(gateway.url("/items")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "HEAD is cached apart from GET"
    );
}

#[tokio::test]
async fn vary_headers_select_separate_entries() {
    let (upstream, _) = counting().await;
    let gateway = Gateway::start(&config(
        &upstream,
        "",
        "{ ttl = \"30s\", vary = [\"accept-language\"] }",
    ))
    .await;
    let en = [("accept-language", "en")];
    let de = [("accept-language", "de")];
    assert_eq!(
        fetch(&gateway, "/page", &en).await,
        fresh("call 1 to /page")
    );
    assert_eq!(
        fetch(&gateway, "/page", &de).await,
        fresh("call 2 to /page")
    );
    assert_eq!(
        fetch(&gateway, "/page", &en).await,
        cached("call 1 to /page")
    );
    assert_eq!(
        fetch(&gateway, "/page", &de).await,
        cached("call 2 to /page")
    );
}

#[tokio::test]
async fn upstream_and_client_cache_control_the_cookie_and_the_size_cap_are_honoured() {
    let (upstream, calls) = counting().await;
    let gateway = Gateway::start(&config(
        &upstream,
        "[cache]\nmax_entry = \"1KB\"",
        "{ ttl = \"30s\" }",
    ))
    .await;
    for path in ["/no-store", "/private", "/max-age-0", "/cookie", "/big"] {
        let before = calls.load(Ordering::SeqCst);
        assert_eq!(fetch(&gateway, path, &[]).await.0, "MISS", "{path}");
        assert_eq!(fetch(&gateway, path, &[]).await.0, "MISS", "{path}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before + 2,
            "{path} never cached"
        );
    }
    assert_eq!(fetch(&gateway, "/ok", &[]).await.0, "MISS");
    let no_store = [("cache-control", "no-store")];
    assert_eq!(fetch(&gateway, "/ok", &no_store).await.0, "BYPASS");
    let no_cache = [("cache-control", "no-cache")];
    let (x_cache, body) = fetch(&gateway, "/ok", &no_cache).await;
    assert_eq!(x_cache, "MISS", "no-cache revalidates: {body}");
    assert_eq!(
        fetch(&gateway, "/ok", &[]).await,
        cached(&body),
        "and refreshes the entry"
    );
}

#[tokio::test]
async fn authenticated_answers_are_never_shared_and_per_principal_ones_stay_apart() {
    let (upstream, calls) = counting().await;
    let keys = format!(
        "[auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}, {{ id = \"globex\", sha256 = \"{}\" }}]\n",
        sha256_hex("acme-key"),
        sha256_hex("globex-key")
    );
    let shared = Gateway::start(&format!(
        "{}auth = [\"api_key:partners\"]\n",
        config(&upstream, &keys, "{ ttl = \"30s\" }")
    ))
    .await;
    let acme = [("x-api-key", "acme-key")];
    let globex = [("x-api-key", "globex-key")];
    assert_eq!(fetch(&shared, "/me", &acme).await.0, "BYPASS");
    assert_eq!(fetch(&shared, "/me", &acme).await.0, "BYPASS");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let per_principal = Gateway::start(&format!(
        "{}auth = [\"api_key:partners\"]\n",
        config(&upstream, &keys, "{ ttl = \"30s\", per_principal = true }")
    ))
    .await;
    let (_, acme_body) = fetch(&per_principal, "/me", &acme).await;
    assert_eq!(
        fetch(&per_principal, "/me", &acme).await,
        cached(&acme_body)
    );
    let (x_cache, globex_body) = fetch(&per_principal, "/me", &globex).await;
    assert_eq!(
        x_cache, "MISS",
        "another principal never gets acme's answer"
    );
    assert_ne!(globex_body, acme_body);

    let public = Gateway::start(&config(&upstream, "", "{ ttl = \"30s\" }")).await;
    let bearer = [("authorization", "Bearer anything")];
    assert_eq!(fetch(&public, "/me", &bearer).await.0, "BYPASS");
}

#[tokio::test]
async fn a_redis_store_is_shared_by_two_gateway_instances() {
    let redis = RedisServer::start().await;
    let (upstream, calls) = counting().await;
    let section = format!(
        "[cache]\nstore = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    );
    let first = Gateway::start(&config(&upstream, &section, "{ ttl = \"30s\" }")).await;
    let second = Gateway::start(&config(&upstream, &section, "{ ttl = \"30s\" }")).await;
    assert_eq!(
        fetch(&first, "/shared", &[]).await,
        fresh("call 1 to /shared")
    );
    assert_eq!(
        fetch(&second, "/shared", &[]).await,
        cached("call 1 to /shared")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let keys = redis.command("KEYS proxyfn:cache:*").await;
    let key = keys
        .lines()
        .find(|line| line.starts_with("proxyfn:cache:"))
        .expect("one cache key in Redis");
    let reply = redis.command(&format!("PTTL {key}")).await;
    let ttl: i64 = reply
        .lines()
        .next()
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 30_000,
        "entries expire with the ttl: {ttl}"
    );
}

#[test]
fn cache_mistakes_fail_the_config_check() {
    let file = ConfigFile::new(
        r#"
[cache]
store = "redis"
[[routes]]
path = "/a"
methods = ["POST"]
response = { body = "a" }
cache = { ttl = "30s", vary = ["authorization"] }
"#,
    );
    let output = file.run(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in [
        "cache.redis_url",
        "routes[0] (/a).cache:",
        "routes[0] (/a).cache.vary[0]",
    ] {
        assert!(stderr.contains(key), "{key} in {stderr}");
    }
}
