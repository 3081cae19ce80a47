//! Rate limiting against real upstreams and a real redis-server: 429s that never reach the
//! upstream, the RateLimit headers, limits shared by two gateway instances, Redis failures
//! and recovery, and runtime overrides set with `proxyfn limits`.

use std::time::Duration;

use crate::{
    app::{BOTH, Call, TestApp},
    helpers::*,
    redis_server::RedisServer,
};

/// A gateway config: the `backend` upstream at `url`, `policies` TOML, and one route
/// `/limited/{*rest}` with `rate_limit = route_limits` (and `route_extra` TOML).
fn limited_config(url: &str, policies: &str, route_limits: &str, route_extra: &str) -> String {
    config_with_upstream(
        url,
        &format!(
            "{policies}\n[[routes]]\npath = \"/limited/{{*rest}}\"\nupstream = \"backend\"\nrate_limit = {route_limits}\n{route_extra}\n\
             [[routes]]\npath = \"/open\"\nresponse = {{ body = \"open\" }}\n"
        ),
    )
}

fn redis_store(redis: &RedisServer, on_store_error: &str) -> String {
    format!(
        "[rate_limit]\nstore = \"redis\"\nredis_url = \"{}\"\non_store_error = \"{on_store_error}\"\ntimeout = \"200ms\"\n",
        redis.url()
    )
}

/// One server worker (so every check shares one batch queue), `server` TOML added to its
/// `[server]`, Redis limits failing closed after a generous 5 s, and `policies` on
/// `/limited/{*rest}` as policy `a`.
async fn one_worker_gateway(
    redis: &RedisServer,
    upstream: &Upstream,
    server: &str,
    policies: &str,
) -> Gateway {
    Gateway::start(&format!(
        "[server]\nworkers = 1\n{server}\n[rate_limit]\nstore = \"redis\"\nredis_url = \"{}\"\n\
         on_store_error = \"deny\"\ntimeout = \"5s\"\n{}",
        redis.url(),
        limited_config(&upstream.url(), policies, "\"a\"", "")
    ))
    .await
}

/// `count` requests to `/limited/x` at once, each on its own connection. One client sends
/// them all: building a client per request is slow enough (TLS roots, in a debug build) to
/// spread the burst over hundreds of milliseconds.
async fn burst(gateway: &Gateway, count: usize) -> Vec<reqwest::Response> {
    let client = client();
    let requests =
        (0..count).map(|_| async { client.get(gateway.url("/limited/x")).send().await.unwrap() });
    futures_util::future::join_all(requests).await
}

async fn get(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_the_upstream_is_not_called() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&limited_config(
        &upstream.url(),
        "[rate_limits.three]\nkey = \"global\"\nlimit = 3\nper = \"1m\"",
        "\"three\"",
        "",
    ))
    .await;

    let mut remaining = vec![];
    for _ in 0..3 {
        let response = get(&gateway, "/limited/x", &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-policy"), "\"three\";q=3;w=60");
        remaining.push(header(&response, "ratelimit").to_owned());
    }
    assert_eq!(
        remaining,
        [
            "\"three\";r=2;t=20",
            "\"three\";r=1;t=40",
            "\"three\";r=0;t=20"
        ]
    );

    let refused = get(&gateway, "/limited/x", &[]).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((19..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&refused, "ratelimit"),
        format!("\"three\";r=0;t={retry_after}")
    );
    assert_eq!(header(&refused, "content-type"), "application/problem+json");
    let id = header(&refused, "x-request-id").to_owned();
    assert_problem_body(
        &serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap(),
        429,
        "rate-limited",
        &id,
    );
    assert_eq!(
        upstream.requests().len(),
        3,
        "refused requests never reach the upstream"
    );

    let open = get(&gateway, "/open", &[]).await;
    assert!(
        open.headers().get("ratelimit").is_none(),
        "unlimited routes carry no headers"
    );
}

#[tokio::test]
async fn ip_policies_count_the_address_the_runtime_trusts_not_a_spoofed_header() {
    let upstream = Upstream::echo().await;
    let policies = "[rate_limits.per_ip]\nkey = \"ip\"\nlimit = 1\nper = \"1m\"";
    let direct = Gateway::start(&limited_config(&upstream.url(), policies, "\"per_ip\"", "")).await;
    // Without trusted proxies, X-Forwarded-For is the client's own claim: ignored.
    assert_eq!(
        get(
            &direct,
            "/limited/a",
            &[("x-forwarded-for", "198.51.100.1")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(
            &direct,
            "/limited/a",
            &[("x-forwarded-for", "198.51.100.2")]
        )
        .await
        .status(),
        429
    );

    // Behind one trusted proxy, the address it appended is the client.
    let proxied = Gateway::start(&format!(
        "[server]\ntrusted_proxies = 1\n{}",
        limited_config(&upstream.url(), policies, "\"per_ip\"", "")
    ))
    .await;
    assert_eq!(
        get(
            &proxied,
            "/limited/a",
            &[("x-forwarded-for", "198.51.100.1")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(
            &proxied,
            "/limited/a",
            &[("x-forwarded-for", "198.51.100.2")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        get(
            &proxied,
            "/limited/a",
            &[("x-forwarded-for", "198.51.100.1")]
        )
        .await
        .status(),
        429
    );
}

#[tokio::test]
async fn user_policies_count_each_principal_and_anonymous_requests_by_address() {
    let upstream = Upstream::echo().await;
    let config = format!(
        "[auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}, {{ id = \"globex\", sha256 = \"{}\" }}]\n{}\
         [[routes]]\npath = \"/anon\"\nupstream = \"backend\"\nrate_limit = \"per_user\"\n",
        sha256_hex("acme-key"),
        sha256_hex("globex-key"),
        limited_config(
            &upstream.url(),
            "[rate_limits.per_user]\nkey = \"user\"\nlimit = 2\nper = \"1h\"",
            "\"per_user\"",
            "auth = [\"api_key:partners\"]",
        )
    );
    let gateway = Gateway::start(&config).await;
    let acme = [("x-api-key", "acme-key")];
    let globex = [("x-api-key", "globex-key")];
    assert_eq!(get(&gateway, "/limited/a", &acme).await.status(), 200);
    assert_eq!(get(&gateway, "/limited/a", &acme).await.status(), 200);
    assert_eq!(get(&gateway, "/limited/a", &acme).await.status(), 429);
    assert_eq!(
        get(&gateway, "/limited/a", &globex).await.status(),
        200,
        "another principal, another bucket"
    );
    // The anonymous route counts by address, in a bucket apart from any principal's.
    assert_eq!(get(&gateway, "/anon", &[]).await.status(), 200);
    assert_eq!(get(&gateway, "/anon", &[]).await.status(), 200);
    assert_eq!(get(&gateway, "/anon", &[]).await.status(), 429);
}

#[tokio::test]
async fn header_policies_count_each_value_and_a_route_with_two_policies_needs_both() {
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&limited_config(
        &upstream.url(),
        "[rate_limits.per_tenant]\nkey = \"header:x-tenant\"\nlimit = 2\nper = \"1h\"\n\
         [rate_limits.total]\nkey = \"global\"\nlimit = 3\nper = \"1h\"",
        "[\"per_tenant\", \"total\"]",
        "",
    ))
    .await;
    let a = [("x-tenant", "a")];
    let b = [("x-tenant", "b")];
    let first = get(&gateway, "/limited/x", &a).await;
    assert_eq!(
        header(&first, "ratelimit-policy"),
        "\"per_tenant\";q=2;w=3600, \"total\";q=3;w=3600"
    );
    assert_eq!(
        header(&first, "ratelimit"),
        "\"per_tenant\";r=1;t=1800, \"total\";r=2;t=1200"
    );
    assert_eq!(get(&gateway, "/limited/x", &a).await.status(), 200);
    assert_eq!(
        get(&gateway, "/limited/x", &a).await.status(),
        429,
        "tenant a is out"
    );
    assert_eq!(
        get(&gateway, "/limited/x", &b).await.status(),
        200,
        "tenant b, total now 3"
    );
    assert_eq!(
        get(&gateway, "/limited/x", &b).await.status(),
        429,
        "the total is out"
    );
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn two_gateways_sharing_redis_enforce_one_limit_over_a_concurrent_burst() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let config = format!(
        "{}{}",
        redis_store(&redis, "deny"),
        limited_config(
            &upstream.url(),
            "[rate_limits.shared]\nkey = \"global\"\nlimit = 10\nper = \"1m\"\nburst = 5",
            "\"shared\"",
            "",
        )
    );
    let one = Gateway::start(&config).await;
    let two = Gateway::start(&config).await;

    let requests = (0..40).map(|i| {
        let url = if i % 2 == 0 {
            one.url("/limited/x")
        } else {
            two.url("/limited/x")
        };
        async move { client().get(url).send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(requests).await;

    let allowed = responses.iter().filter(|r| r.status() == 200).count();
    let refused: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(allowed + refused.len(), 40, "only 200s and 429s");
    // A burst of 5 at once, then one request per 6 s: in the time this test takes, 5 or 6.
    assert!(
        (5..=6).contains(&allowed),
        "allowed {allowed}, limit + burst is 15"
    );
    assert_eq!(upstream.requests().len(), allowed);
    for response in refused {
        let retry_after: u64 = header(response, "retry-after").parse().unwrap();
        assert!(
            (1..=6).contains(&retry_after),
            "one interval at most: {retry_after}"
        );
    }
}

#[tokio::test]
async fn each_worker_keeps_its_own_redis_connection() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&format!(
        "[server]\nworkers = 2\n{}{}",
        redis_store(&redis, "deny"),
        limited_config(
            &upstream.url(),
            "[rate_limits.a]\nkey = \"ip\"\nlimit = 100\nper = \"1m\"",
            "\"a\"",
            "",
        )
    ))
    .await;

    // Each status() call is a new client connection, and connections go to the workers in
    // turn, so the requests take turns on the two workers and never overlap.
    for _ in 0..4 {
        assert_eq!(gateway.status("/limited/x").await, 200);
    }

    let clients = redis.command("CLIENT LIST").await;
    let gateway_connections = clients
        .lines()
        .filter(|line| line.contains("cmd=") && !line.contains("cmd=client|list"))
        .count();
    assert_eq!(
        gateway_connections, 2,
        "one connection per worker:\n{clients}"
    );
}

#[tokio::test]
async fn each_limited_request_is_one_script_call_to_redis() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let gateway = Gateway::start(&format!(
        "{}{}",
        redis_store(&redis, "deny"),
        limited_config(
            &upstream.url(),
            "[rate_limits.a]\nkey = \"ip\"\nlimit = 100\nper = \"1m\"\n\
             [rate_limits.b]\nkey = \"global\"\nlimit = 100\nper = \"1m\"",
            "[\"a\", \"b\"]",
            "",
        )
    ))
    .await;
    // The first call loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    assert_eq!(gateway.status("/limited/warm").await, 200);
    redis.command("CONFIG RESETSTAT").await;

    for _ in 0..7 {
        assert_eq!(gateway.status("/limited/x").await, 200);
    }
    assert_eq!(
        gateway.status("/open").await,
        200,
        "unlimited routes never call Redis"
    );

    assert_eq!(
        redis.calls("evalsha").await,
        7,
        "one script call per request, both policies in it"
    );
    // Commands the script runs count too: one TIME per call, and per policy HMGET + GET
    // (+ SET when allowed). Nothing else reached Redis.
    assert_eq!(redis.calls("time").await, 7);
    assert_eq!(redis.calls("hmget").await, 14);
    let info = redis.command("INFO commandstats").await;
    let script_or_test = [
        "evalsha",
        "time",
        "hmget",
        "get",
        "set",
        "info",
        "quit",
        "config|resetstat",
    ];
    let others: Vec<&str> = info
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter(|l| !script_or_test.contains(&l.split(':').next().unwrap()))
        .collect();
    assert!(others.is_empty(), "no other commands: {others:?}");
}

#[tokio::test]
async fn concurrent_checks_on_one_worker_share_script_calls_and_count_exactly() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let gateway = one_worker_gateway(
        &redis,
        &upstream,
        "",
        "[rate_limits.a]\nkey = \"global\"\nlimit = 10\nper = \"1m\"\nburst = 12",
    )
    .await;
    // The first call loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    assert_eq!(gateway.status("/limited/warm").await, 200);
    redis.command("CONFIG RESETSTAT").await;

    // Redis holds the first call, so the checks that arrive meanwhile queue behind it.
    redis.pause(300).await;
    let responses = burst(&gateway, 20).await;

    let allowed = responses.iter().filter(|r| r.status() == 200).count();
    let refused = responses.iter().filter(|r| r.status() == 429).count();
    assert_eq!(
        (allowed, refused),
        (11, 9),
        "a burst of 12, one taken by the first request"
    );
    assert_eq!(upstream.requests().len(), 1 + allowed);
    let calls = redis.calls("evalsha").await;
    assert!(
        (1..=4).contains(&calls),
        "20 checks share {calls} script calls"
    );
    assert_eq!(
        redis.calls("set").await,
        11,
        "only allowed requests store their state"
    );
}

#[tokio::test]
async fn checks_that_gave_up_waiting_are_never_sent_to_redis() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    // The request deadline (100 ms) comes long before the Redis timeout (5 s).
    let gateway = one_worker_gateway(
        &redis,
        &upstream,
        "timeout = \"100ms\"",
        "[rate_limits.a]\nkey = \"global\"\nlimit = 100\nper = \"1m\"",
    )
    .await;
    assert_eq!(gateway.status("/limited/warm").await, 200);
    redis.command("CONFIG RESETSTAT").await;

    // Redis holds the first check's call past every request's deadline.
    redis.pause(500).await;
    let statuses: Vec<_> = burst(&gateway, 10)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert!(statuses.iter().all(|s| *s == 504), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The held call ran once Redis resumed; the checks queued behind it had been given up
    // with their requests, so they were never sent.
    assert_eq!(redis.calls("evalsha").await, 1);
    assert_eq!(upstream.requests().len(), 1, "only the warm-up request");
}

#[tokio::test]
async fn with_redis_down_on_store_error_decides_and_redis_returning_needs_no_restart() {
    let mut redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let policies = "[rate_limits.two]\nkey = \"global\"\nlimit = 2\nper = \"1h\"";
    let start = |mode: &'static str| {
        let config = format!(
            "{}{}",
            redis_store(&redis, mode),
            limited_config(&upstream.url(), policies, "\"two\"", "")
        );
        async move { Gateway::start(&config).await }
    };
    let allow = start("allow").await;
    let deny = start("deny").await;
    let local = start("local").await;
    assert_eq!(
        deny.status("/limited/x").await,
        200,
        "shared limiting works"
    );

    redis.stop().await;
    // allow: fail open, with the policy but no (unknown) remaining count.
    for _ in 0..4 {
        let response = get(&allow, "/limited/x", &[]).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit-policy").is_some());
        assert!(response.headers().get("ratelimit").is_none());
    }
    // deny: fail closed.
    let refused = get(&deny, "/limited/x", &[]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), "1");
    let id = header(&refused, "x-request-id").to_owned();
    assert_problem_body(
        &serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap(),
        503,
        "rate-limit-unavailable",
        &id,
    );
    // local: this instance's own limiter, the same quota.
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..4).map(|_| local.status("/limited/x"))).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );

    // Redis comes back (empty): the same gateway limits through it again.
    redis.restart().await;
    let mut recovered = false;
    for _ in 0..100 {
        if deny.status("/limited/x").await == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        recovered,
        "the deny gateway answers 200 again once Redis is back"
    );
    assert_eq!(deny.status("/limited/x").await, 200);
    assert_eq!(
        deny.status("/limited/x").await,
        429,
        "the shared count is back in Redis"
    );
    assert_eq!(
        local.status("/limited/x").await,
        429,
        "and shared by every instance"
    );
}

#[tokio::test]
async fn a_runtime_override_takes_effect_on_the_next_request() {
    let redis = RedisServer::start().await;
    let upstream = Upstream::echo().await;
    let config = format!(
        "{}{}",
        redis_store(&redis, "deny"),
        limited_config(
            &upstream.url(),
            "[rate_limits.per_user]\nkey = \"user\"\nlimit = 1\nper = \"1h\"",
            "\"per_user\"",
            "auth = [\"api_key:partners\"]",
        ) + &format!(
            "[auth.api_keys.partners]\nkeys = [{{ id = \"acme\", sha256 = \"{}\" }}]\n",
            sha256_hex("acme-key")
        )
    );
    let file = ConfigFile::new(&config);
    let cli = |args: &[&str]| file.run_ok(&[&["limits"], args].concat());
    let gateway = Gateway::start(&config).await;
    let acme = [("x-api-key", "acme-key")];
    assert_eq!(get(&gateway, "/limited/x", &acme).await.status(), 200);
    assert_eq!(get(&gateway, "/limited/x", &acme).await.status(), 429);

    let too_long = file.run(&[
        "limits", "set", "per_user", "acme", "--limit", "1", "--per", "2d",
    ]);
    assert_eq!(too_long.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&too_long.stderr).contains("--per must be at most 1 day"),
        "the same rules as [rate_limits]"
    );
    let set = cli(&[
        "set", "per_user", "acme", "--limit", "100", "--per", "1m", "--burst", "10",
    ]);
    assert!(set.contains("100 per 1m (burst 10)"), "{set}");
    let response = get(&gateway, "/limited/x", &acme).await;
    assert_eq!(response.status(), 200, "the override applies at once");
    assert_eq!(
        header(&response, "ratelimit-policy"),
        "\"per_user\";q=100;w=60"
    );
    assert!(cli(&["get", "per_user", "acme"]).contains("(override)"));

    assert!(cli(&["clear", "per_user", "acme"]).contains("override removed"));
    assert!(cli(&["get", "per_user", "acme"]).contains("as configured"));
    let response = get(&gateway, "/limited/x", &acme).await;
    assert_eq!(
        header(&response, "ratelimit-policy"),
        "\"per_user\";q=1;w=3600"
    );
}

#[tokio::test]
async fn limits_commands_need_the_redis_store_and_a_known_policy() {
    let file = ConfigFile::new("[rate_limits.p]\nkey = \"ip\"\nlimit = 1\nper = \"1s\"\n");
    let run = |args: &[&str]| file.run(args);
    let memory = run(&["limits", "get", "p", "ip:1.2.3.4"]);
    assert_eq!(memory.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&memory.stderr).contains("store = \"redis\""));
}

#[tokio::test]
async fn a_redis_cluster_shares_limits_with_policies_in_different_slots() {
    let cluster = crate::redis_server::RedisCluster::start().await;
    let upstream = Upstream::echo().await;
    let config = format!(
        "[rate_limit]\nstore = \"redis\"\ncluster = true\nredis_url = \"{}\"\non_store_error = \"deny\"\ntimeout = \"1s\"\n{}",
        cluster.url(),
        limited_config(
            &upstream.url(),
            "[rate_limits.per_tenant]\nkey = \"header:x-tenant\"\nlimit = 2\nper = \"1h\"\n\
             [rate_limits.total]\nkey = \"global\"\nlimit = 3\nper = \"1h\"",
            "[\"per_tenant\", \"total\"]",
            "",
        )
    );
    let one = Gateway::start(&config).await;
    let two = Gateway::start(&config).await;
    let a = [("x-tenant", "a")];
    let b = [("x-tenant", "b")];
    assert_eq!(get(&one, "/limited/x", &a).await.status(), 200);
    assert_eq!(get(&two, "/limited/x", &a).await.status(), 200);
    assert_eq!(
        get(&one, "/limited/x", &a).await.status(),
        429,
        "tenant a is out on both"
    );
    let third = get(&two, "/limited/x", &b).await;
    assert_eq!(third.status(), 200);
    assert_eq!(
        header(&third, "ratelimit"),
        "\"per_tenant\";r=1;t=1800, \"total\";r=0;t=1200"
    );
    assert_eq!(
        get(&one, "/limited/x", &b).await.status(),
        429,
        "the total is out"
    );

    // The state is spread over the nodes by slot, each policy's keys on one node.
    let mut keys = 0;
    for node in &cluster.nodes {
        let reply = node.command("DBSIZE").await;
        keys += reply
            .trim_start_matches(':')
            .lines()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(keys, 3, "a, b and the total");

    // Overrides work the same against a cluster.
    ConfigFile::new(&config).run_ok(&[
        "limits", "set", "total", "global", "--limit", "100", "--per", "1h",
    ]);
    assert_eq!(
        get(&one, "/limited/x", &b).await.status(),
        200,
        "b has one left, total reset"
    );
}

#[tokio::test]
async fn refusals_are_problems_with_the_request_id_in_both_runtimes() {
    for runtime in BOTH {
        let upstream = Upstream::echo().await;
        let limited = TestApp::new()
            .with_upstream("backend", &upstream)
            .config("[rate_limits.one]\nkey = \"global\"\nlimit = 1\nper = \"1h\"")
            .route("/one", "upstream = \"backend\"\nrate_limit = \"one\"");
        let call = |id: &str| Call::get("/one").header("x-request-id", id);

        let gateway = limited.start(runtime).await;
        assert_eq!(gateway.send(call("l-1")).await.status, 200, "{runtime:?}");
        let refused = gateway.send(call("l-2")).await;
        let problem = refused.problem(429, "rate-limited");
        assert_problem_body(&problem, 429, "rate-limited", "l-2");

        // Redis unreachable with on_store_error = "deny": 503, not a runtime error.
        let down = limited
            .clone()
            .config(&format!(
                "[rate_limit]\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{}\"\non_store_error = \"deny\"",
                closed_port().await
            ))
            .start(runtime)
            .await;
        let unavailable = down.send(call("l-3")).await;
        assert_eq!(unavailable.header("retry-after"), ["1"], "{runtime:?}");
        let problem = unavailable.problem(503, "rate-limit-unavailable");
        assert_problem_body(&problem, 503, "rate-limit-unavailable", "l-3");
        assert_eq!(upstream.requests().len(), 1, "{runtime:?}");
    }
}

#[tokio::test]
async fn a_limit_kept_in_redis_refuses_the_same_in_both_runtimes() {
    let redis = RedisServer::start().await;
    for runtime in BOTH {
        let upstream = Upstream::echo().await;
        // A policy name of its own per runtime: the two runs share one Redis.
        let policy = format!("per_ip_{runtime:?}").to_lowercase();
        let gateway = TestApp::new()
            .with_upstream("backend", &upstream)
            .with_redis(&redis)
            .config(&format!(
                "[rate_limits.{policy}]\nkey = \"ip\"\nlimit = 2\nper = \"1h\""
            ))
            .route(
                "/{*rest}",
                &format!("upstream = \"backend\"\nrate_limit = \"{policy}\""),
            )
            .start(runtime)
            .await;
        for _ in 0..2 {
            let allowed = gateway.send(Call::get("/a").query("q", "1")).await;
            assert_eq!(allowed.status, 200, "{runtime:?}");
            assert!(!allowed.header("ratelimit").is_empty(), "{runtime:?}");
        }
        gateway
            .send(Call::get("/a").query("q", "1"))
            .await
            .problem(429, "rate-limited");
        assert_eq!(upstream.requests().len(), 2, "{runtime:?}");
        assert_eq!(upstream.last().target, "/a?q=1", "{runtime:?}");
    }
}
