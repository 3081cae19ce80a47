//! Reloading the configuration without a restart: SIGHUP, `proxyfn reload` through the admin
//! listener, and `server.watch`, with a recording upstream on each side of the swap.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{body::Body, response::Response};

use crate::helpers::*;

fn tagged(tag: &'static str) -> impl Fn(&Captured) -> Response + Clone + Send + Sync + 'static {
    move |_| {
        Response::builder()
            .header("x-served-by", tag)
            .body(Body::from(tag))
            .unwrap()
    }
}

fn config(route_to: &str, a: &Upstream, b: &Upstream, extra: &str) -> String {
    format!(
        "[upstreams.a]\nurl = \"{}\"\n[upstreams.b]\nurl = \"{}\"\n\
         [rate_limits.per_ip]\nkey = \"ip\"\nlimit = 3\nper = \"1m\"\n\
         [[routes]]\npath = \"/r\"\nupstream = \"{route_to}\"\n\
         [[routes]]\npath = \"/limited\"\nrate_limit = \"per_ip\"\nresponse = {{ body = \"ok\" }}\n{extra}",
        a.url(),
        b.url()
    )
}

async fn status(gateway: &Process, path: &str) -> u16 {
    client()
        .get(gateway.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sighup_swaps_the_config_under_load_losing_no_request_and_keeping_limiter_state() {
    let a = Upstream::recording(tagged("a")).await;
    let b = Upstream::recording(tagged("b")).await;
    let gateway = Process::start(&config("a", &a, &b, "")).await;
    for _ in 0..2 {
        assert_eq!(status(&gateway, "/limited").await, 200);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let url = gateway.url("/r");
            tokio::spawn(async move {
                let client = client();
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) || statuses.len() < 20 {
                    let response = client.get(&url).send().await;
                    statuses.push(response.map(|r| r.status().as_u16()).unwrap_or(0));
                }
                statuses
            })
        })
        .collect();
    eventually(|| (a.requests().len() >= 20).then_some(())).await;
    gateway.rewrite_config(&config(
        "b",
        &a,
        &b,
        "[[routes]]\npath = \"/new\"\nresponse = { body = \"new\" }\n",
    ));
    gateway.signal("HUP");
    for _ in 0..200 {
        if status(&gateway, "/new").await == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status(&gateway, "/new").await, 200, "the new config serves");
    eventually(|| (b.requests().len() >= 20).then_some(())).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for task in load {
        let statuses = task.await.unwrap();
        sent += statuses.len();
        assert!(
            statuses.iter().all(|&s| s == 200),
            "every request answered: {statuses:?}"
        );
    }
    assert_eq!(
        a.requests().len() + b.requests().len(),
        sent,
        "each request reached exactly one upstream"
    );

    // The policy did not change: its count went on from before the reload.
    assert_eq!(status(&gateway, "/limited").await, 200);
    assert_eq!(status(&gateway, "/limited").await, 429);

    let response = client()
        .get(gateway.url("/r"))
        .header("x-request-id", "after-reload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-served-by"], "b");
    assert_eq!(
        gateway.access_event("after-reload").await["config_generation"],
        2
    );

    // An invalid file is refused: the old configuration keeps serving.
    gateway.rewrite_config(&config("nowhere", &a, &b, ""));
    gateway.signal("HUP");
    let refused = eventually(|| {
        let lines = gateway.lines_containing("configuration refused");
        (!lines.is_empty()).then_some(lines)
    })
    .await
    .expect("the refusal is logged");
    assert!(refused[0].contains("routes[0]"), "{}", refused[0]);
    assert_eq!(status(&gateway, "/new").await, 200);
    let metrics = client()
        .get(gateway.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("proxyfn_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("proxyfn_config_reloads_total{result=\"failed\"} 1"));
}

#[tokio::test]
async fn proxyfn_reload_asks_the_admin_listener_and_reports_a_refusal() {
    let a = Upstream::recording(tagged("a")).await;
    let b = Upstream::recording(tagged("b")).await;
    let admin = format!("127.0.0.1:{}", closed_port().await);
    let env = [("PROXYFN_SERVER__ADMIN_LISTEN", admin.as_str())];
    let gateway = Process::start_with(&config("a", &a, &b, ""), Some("info"), &env).await;
    assert_eq!(status(&gateway, "/new").await, 404);

    gateway.rewrite_config(&config(
        "a",
        &a,
        &b,
        "[[routes]]\npath = \"/new\"\nresponse = { body = \"new\" }\n",
    ));
    let reload = {
        let path = gateway.config_path();
        let admin = admin.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_proxyfn"))
                .arg("--config")
                .arg(&path)
                .arg("reload")
                .env("PROXYFN_SERVER__ADMIN_LISTEN", &admin)
                .output()
                .unwrap()
        }
    };
    let done = tokio::task::spawn_blocking(reload.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(stdout.contains("\"generation\":2"), "{stdout}");
    assert_eq!(
        status(&gateway, "/new").await,
        200,
        "served as soon as reload returns"
    );

    gateway.rewrite_config(&config(
        "a",
        &a,
        &b,
        "[[routes]]\npath = \"/x\"\nupstream = \"gone\"\n",
    ));
    // `proxyfn reload` validates the file itself first, like `proxyfn check`.
    let refused = tokio::task::spawn_blocking(reload).await.unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("routes[2]"), "{stderr}");
    // Asked directly, the gateway refuses it too, with every problem, and keeps serving.
    let asked = client()
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 422);
    let body = asked.text().await.unwrap();
    assert!(
        body.contains("refused") && body.contains("routes[2]"),
        "{body}"
    );
    assert_eq!(
        status(&gateway, "/new").await,
        200,
        "the old config still serves"
    );
}

#[tokio::test]
async fn with_watch_a_changed_file_is_reloaded() {
    let a = Upstream::recording(tagged("a")).await;
    let b = Upstream::recording(tagged("b")).await;
    // The process's own [server] table comes first; `watch` goes in through the environment.
    let gateway = Process::start_with(
        &config("a", &a, &b, ""),
        Some("info"),
        &[("PROXYFN_SERVER__WATCH", "true")],
    )
    .await;
    gateway.rewrite_config(&config(
        "a",
        &a,
        &b,
        "[[routes]]\npath = \"/new\"\nresponse = { body = \"new\" }\n",
    ));
    let mut served = 0;
    for _ in 0..200 {
        served = status(&gateway, "/new").await;
        if served == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(served, 200, "the change was picked up");
}

#[tokio::test]
async fn a_reload_cannot_add_an_admin_listener_the_process_does_not_have() {
    let a = Upstream::recording(tagged("a")).await;
    let b = Upstream::recording(tagged("b")).await;
    let gateway = Process::start(&config("a", &a, &b, "")).await;
    let admin = format!("127.0.0.1:{}", closed_port().await);
    let with_admin = config("a", &a, &b, "").replace(
        "[upstreams.a]",
        &format!("admin_listen = \"{admin}\"\n[upstreams.a]"),
    );
    gateway.rewrite_config(&with_admin);
    gateway.signal("HUP");
    let refused = eventually(|| {
        let lines = gateway.lines_containing("configuration refused");
        (!lines.is_empty()).then_some(lines)
    })
    .await
    .expect("the refusal is logged");
    assert!(refused[0].contains("server.admin_listen"), "{}", refused[0]);
    assert_eq!(
        status(&gateway, "/health").await,
        200,
        "health stays where it was"
    );
}
