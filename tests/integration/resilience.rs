//! Resilience: retries, the circuit breaker, targets and health, shedding, fallbacks, faults.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, response::Response, routing::any};
use tokio::sync::oneshot;

use crate::helpers::*;

/// Answers 503 to the first `failures` requests, then 200 with the request body.
async fn flaky(failures: usize) -> Upstream {
    let count = Arc::new(AtomicUsize::new(0));
    Upstream::recording(move |captured| {
        let status = if count.fetch_add(1, Ordering::SeqCst) < failures {
            503
        } else {
            200
        };
        Response::builder()
            .status(status)
            .body(Body::from(captured.body.clone()))
            .unwrap()
    })
    .await
}

/// Answers 503 while `failing` is set, 200 otherwise.
async fn switchable(failing: Arc<AtomicBool>) -> Upstream {
    Upstream::recording(move |_| {
        let status = if failing.load(Ordering::SeqCst) {
            503
        } else {
            200
        };
        Response::builder()
            .status(status)
            .body(Body::from("answer"))
            .unwrap()
    })
    .await
}

fn upstream_config(url: &str, upstream_extra: &str, route_extra: &str) -> String {
    format!(
        "[upstreams.backend]\nurl = \"{url}\"\n{upstream_extra}\n[[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\n{route_extra}\n"
    )
}

const RETRY: &str = "retry = { attempts = 3, backoff = \"1ms\", max_backoff = \"5ms\" }";

#[tokio::test]
async fn a_get_on_a_flaky_upstream_succeeds_after_retries() {
    let upstream = flaky(2).await;
    let gateway = Gateway::start(&upstream_config(&upstream.url(), RETRY, "")).await;
    let response = client().get(gateway.url("/items")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn a_post_without_idempotency_key_reaches_the_upstream_exactly_once_even_when_it_fails() {
    let upstream = flaky(usize::MAX).await;
    let gateway = Gateway::start(&upstream_config(&upstream.url(), RETRY, "")).await;
    let response = client()
        .post(gateway.url("/orders"))
        .body("order")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        503,
        "the upstream's own answer is passed on"
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried_with_its_body() {
    let upstream = flaky(1).await;
    let gateway = Gateway::start(&upstream_config(&upstream.url(), RETRY, "")).await;
    let response = client()
        .post(gateway.url("/orders"))
        .header("idempotency-key", "order-17")
        .body("order body")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "order body");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|r| r.body.as_ref() == b"order body"),
        "the body was replayed intact"
    );
}

#[tokio::test]
async fn a_body_too_large_to_keep_is_streamed_once_and_not_retried() {
    let upstream = flaky(usize::MAX).await;
    let retry =
        "retry = { attempts = 3, backoff = \"1ms\", max_backoff = \"5ms\", max_body = \"1KB\" }";
    let gateway = Gateway::start(&upstream_config(&upstream.url(), retry, "")).await;
    let response = client()
        .put(gateway.url("/blob"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(upstream.last().body.len(), 4096);
}

#[tokio::test]
async fn a_retry_after_beyond_max_backoff_is_not_waited_for() {
    let upstream = Upstream::recording(|_| {
        Response::builder()
            .status(503)
            .header("retry-after", "120")
            .body(Body::empty())
            .unwrap()
    })
    .await;
    let gateway = Gateway::start(&upstream_config(&upstream.url(), RETRY, "")).await;
    let response = client().get(gateway.url("/busy")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "120");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn an_attempt_is_cut_to_the_request_deadline() {
    let upstream = Upstream::serve(Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "late"
    })))
    .await;
    let config = format!(
        "[server]\ntimeout = \"300ms\"\n{}",
        upstream_config(
            &upstream.url(),
            "timeout = \"20s\"\nretry = { attempts = 5, backoff = \"1ms\", max_backoff = \"1ms\" }",
            ""
        )
    );
    let gateway = Gateway::start(&config).await;
    let response = client().get(gateway.url("/slow")).send().await.unwrap();
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn a_retry_starts_in_server_mode_only_if_a_whole_attempt_fits_before_the_timeout() {
    // Each attempt takes 200ms and gets 503. server.timeout is 1.3s and an attempt may take
    // 1s: at 0.2s one more fits, at 0.4s none does. So two of the ten attempts run and the
    // client gets the last answer, not a 504 from a retry the deadline cut off.
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = attempts.clone();
    let upstream = Upstream::serve(Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            (http::StatusCode::SERVICE_UNAVAILABLE, "busy")
        }
    })))
    .await;
    let config = format!(
        "[server]\ntimeout = \"1300ms\"\n{}",
        upstream_config(
            &upstream.url(),
            "timeout = \"1s\"\nretry = { attempts = 10, backoff = \"1ms\", max_backoff = \"1ms\" }",
            ""
        )
    );
    let gateway = Gateway::start(&config).await;
    let response = client().get(gateway.url("/work")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "no retry started that could not finish"
    );
}

#[tokio::test]
async fn the_breaker_opens_answers_without_the_upstream_and_closes_after_probes() {
    let failing = Arc::new(AtomicBool::new(true));
    let upstream = switchable(failing.clone()).await;
    let breaker = "circuit_breaker = { failure_ratio = 0.5, min_requests = 4, window = \"10s\", open_for = \"300ms\", half_open_requests = 2 }";
    let gateway = Gateway::start(&upstream_config(&upstream.url(), breaker, "")).await;

    for _ in 0..4 {
        assert_eq!(gateway.status("/x").await, 503);
    }
    assert_eq!(upstream.requests().len(), 4);
    let response = client().get(gateway.url("/x")).send().await.unwrap();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    expect_problem(response, 503, "circuit-open").await;
    assert_eq!(
        upstream.requests().len(),
        4,
        "open: the upstream was not called"
    );
    let ready = ready_json(&gateway).await;
    assert_eq!(ready["upstreams"]["backend"]["circuit_breaker"], "open");

    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..2 {
        assert_eq!(gateway.status("/x").await, 200, "half-open probe");
    }
    assert_eq!(
        ready_json(&gateway).await["upstreams"]["backend"]["circuit_breaker"],
        "closed"
    );
    assert_eq!(gateway.status("/x").await, 200);
}

async fn ready_json(gateway: &Gateway) -> serde_json::Value {
    let body = client()
        .get(gateway.url("/ready"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_fallback_is_served_when_the_upstream_is_down_or_open() {
    let port = closed_port().await;
    let breaker = "circuit_breaker = { failure_ratio = 0.5, min_requests = 2, window = \"10s\", open_for = \"60s\" }";
    let fallback = "fallback = { status = 200, body = '{\"items\":[]}', headers = { \"content-type\" = \"application/json\" } }";
    let gateway = Gateway::start(&upstream_config(
        &format!("http://127.0.0.1:{port}"),
        breaker,
        fallback,
    ))
    .await;

    for _ in 0..3 {
        let response = client().get(gateway.url("/items")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-proxyfn-fallback"], "true");
        assert_eq!(response.text().await.unwrap(), "{\"items\":[]}");
    }
    let ready = ready_json(&gateway).await;
    assert_eq!(
        ready["upstreams"]["backend"]["circuit_breaker"], "open",
        "the last one was served while open"
    );
}

#[tokio::test]
async fn a_fallback_replaces_an_upstream_5xx_but_not_a_4xx() {
    let status = Arc::new(AtomicUsize::new(500));
    let answer = status.clone();
    let upstream = Upstream::recording(move |_| {
        Response::builder()
            .status(answer.load(Ordering::SeqCst) as u16)
            .body(Body::from("upstream"))
            .unwrap()
    })
    .await;
    let gateway = Gateway::start(&upstream_config(
        &upstream.url(),
        "",
        "fallback = { body = \"default\" }",
    ))
    .await;

    let response = client().get(gateway.url("/x")).send().await.unwrap();
    assert_eq!(response.headers()["x-proxyfn-fallback"], "true");
    status.store(404, Ordering::SeqCst);
    let response = client().get(gateway.url("/x")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().get("x-proxyfn-fallback").is_none());
}

#[tokio::test]
async fn round_robin_skips_a_dead_target() {
    let alive = Upstream::echo().await;
    let dead = closed_port().await;
    let config = format!(
        "[upstreams.backend]\nurls = [\"{}\", \"http://127.0.0.1:{dead}\"]\nretry = {{ attempts = 2, backoff = \"1ms\", max_backoff = \"1ms\" }}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\n",
        alive.url()
    );
    let gateway = Gateway::start(&config).await;

    for _ in 0..10 {
        assert_eq!(gateway.status("/x").await, 200);
    }
    assert_eq!(alive.requests().len(), 10);
    let ready = ready_json(&gateway).await;
    assert!(
        !ready.to_string().contains("127.0.0.1"),
        "/ready is public: no upstream URL in {ready}"
    );
    let targets = &ready["upstreams"]["backend"]["targets"];
    assert_eq!(targets[0]["healthy"], true);
    assert_eq!(
        targets[1]["healthy"], false,
        "ejected after consecutive connect failures: {ready}"
    );
}

#[tokio::test]
async fn active_health_checks_take_a_failing_target_out_of_rotation() {
    let healthy = Upstream::echo().await;
    let sick = Upstream::recording(|captured| {
        let status = if captured.target == "/healthz" {
            500
        } else {
            200
        };
        Response::builder()
            .status(status)
            .body(Body::from("sick"))
            .unwrap()
    })
    .await;
    let config = format!(
        "[upstreams.backend]\nurls = [\"{}\", \"{}\"]\nhealth_check = {{ path = \"/healthz\", interval = \"50ms\" }}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\n",
        healthy.url(),
        sick.url()
    );
    let gateway = Gateway::start(&config).await;

    let mut ready = ready_json(&gateway).await;
    for _ in 0..100 {
        if ready["upstreams"]["backend"]["healthy_targets"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = ready_json(&gateway).await;
    }
    assert_eq!(
        ready["upstreams"]["backend"]["targets"][1]["healthy"], false,
        "{ready}"
    );
    let before = sick
        .requests()
        .iter()
        .filter(|r| r.target != "/healthz")
        .count();
    for _ in 0..6 {
        client().get(gateway.url("/work")).send().await.unwrap();
    }
    let after = sick
        .requests()
        .iter()
        .filter(|r| r.target != "/healthz")
        .count();
    assert_eq!(before, after, "no traffic to the failing target");
}

#[tokio::test]
async fn ready_is_503_when_a_routed_upstream_has_no_healthy_target() {
    let sick =
        Upstream::recording(|_| Response::builder().status(500).body(Body::empty()).unwrap()).await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\nhealth_check = {{ path = \"/healthz\", interval = \"50ms\" }}\n\
         [[routes]]\npath = \"/{{*rest}}\"\nupstream = \"backend\"\n",
        sick.url()
    );
    let gateway = Gateway::start(&config).await;
    let mut status = 200;
    for _ in 0..100 {
        status = gateway.status("/ready").await;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 503);
    assert_eq!(ready_json(&gateway).await["status"], "unavailable");
    let response = client().get(gateway.url("/work")).send().await.unwrap();
    expect_problem(response, 503, "no-healthy-upstream").await;
}

#[tokio::test]
async fn requests_over_max_concurrency_are_shed_at_once() {
    let (arrived_tx, arrived_rx) = oneshot::channel::<()>();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let held = Arc::new(std::sync::Mutex::new(Some((arrived_tx, release_rx))));
    let upstream = Upstream::serve(Router::new().fallback(any(move || {
        let taken = held.lock().unwrap().take();
        async move {
            if let Some((arrived, release)) = taken {
                let _ = arrived.send(());
                let _ = release.await;
            }
            "done"
        }
    })))
    .await;
    let gateway =
        Gateway::start(&upstream_config(&upstream.url(), "max_concurrency = 1", "")).await;

    let first = tokio::spawn(client().get(gateway.url("/slow")).send());
    arrived_rx.await.unwrap();
    let response = client().get(gateway.url("/second")).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    expect_problem(response, 503, "upstream-overloaded").await;

    release_tx.send(()).unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(
        first.text().await.unwrap(),
        "done",
        "the permit is held until the body is done"
    );
    assert_eq!(gateway.status("/third").await, 200);
}

#[tokio::test]
async fn faults_inject_errors_and_latency_only_when_configured() {
    let upstream = Upstream::echo().await;
    let config = format!(
        "[upstreams.backend]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/abort\"\nupstream = \"backend\"\nfault = {{ abort_status = 418, abort_percent = 100 }}\n\
         [[routes]]\npath = \"/delay\"\nupstream = \"backend\"\nfault = {{ delay = \"5ms\", delay_percent = 100 }}\n\
         [[routes]]\npath = \"/never\"\nupstream = \"backend\"\nfault = {{ abort_status = 500, abort_percent = 0 }}\n",
        upstream.url()
    );
    let gateway = Gateway::start(&config).await;

    let response = client().get(gateway.url("/abort")).send().await.unwrap();
    expect_problem(response, 418, "fault-injected").await;
    assert!(upstream.requests().is_empty());
    assert_eq!(gateway.status("/delay").await, 200);
    for _ in 0..20 {
        assert_eq!(gateway.status("/never").await, 200);
    }
}
