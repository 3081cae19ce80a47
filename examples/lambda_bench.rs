//! Lambda mode, measured: proxyfn's release binary next to a minimal lambda_http + axum "hello"
//! (`examples/lambda_hello.rs`), both run as functions against the local Runtime API the
//! Lambda tests use. Run by `scripts/bench`; by hand:
//!
//! ```sh
//! cargo build --release --locked --bin proxyfn --example lambda_hello --example lambda_bench
//! target/release/examples/lambda_bench --gateway target/release/proxyfn \
//!     --hello target/release/examples/lambda_hello --config proxyfn.toml
//! ```
//!
//! Each round starts one fresh process of each (interleaved, so drift hits both alike) and
//! measures:
//! - init: exec to the first `/next` poll, which is where Lambda's init phase ends, and the
//!   CPU time the process used until then (the steadier figure on a shared VM);
//! - the first invocation, then `--invocations` more: time from the event being queued to the
//!   function's response reaching the Runtime API, and the function's CPU time per invocation;
//! - peak RSS (VmHWM) after the invocations.
//!
//! With `--base`, an earlier build of the gateway runs beside it, with the same
//! configurations, in the same rounds.
//!
//! With `--aws-config`, a third function is the gateway serving a configuration with AWS
//! service routes, whose SDK clients are made at init; with `--zip`, the function zip's size
//! is reported and checked. Each function gets the environment Lambda sets, static
//! credentials included, so the SDK's credentials chain sees what it sees there.

#[path = "../tests/integration/runtime_api.rs"]
mod runtime_api;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use clap::Parser;
use runtime_api::{Outcome, RuntimeApi};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The gateway binary (release build).
    #[arg(long)]
    gateway: PathBuf,
    /// The minimal lambda_http + axum function built with the same profile.
    #[arg(long)]
    hello: PathBuf,
    /// The gateway's configuration.
    #[arg(long, default_value = "proxyfn.toml")]
    config: PathBuf,
    /// The path invoked (an HTTP API GET); proxyfn.toml's /hello is a mock route behind the
    /// whole layer stack and a rate limit.
    #[arg(long, default_value = "/hello")]
    path: String,
    /// A second gateway configuration, with AWS service routes.
    #[arg(long)]
    aws_config: Option<PathBuf>,
    /// An earlier build of the gateway, run with the same configurations in the same rounds:
    /// an interleaved A/B of a change.
    #[arg(long)]
    base: Option<PathBuf>,
    /// The function zip (bootstrap and the files it reads), for its size.
    #[arg(long)]
    zip: Option<PathBuf>,
    /// Fresh processes of each function.
    #[arg(long, default_value_t = 20)]
    processes: usize,
    /// Warm invocations per process, after the first.
    #[arg(long, default_value_t = 500)]
    invocations: usize,
}

/// What one process measured.
struct Sample {
    init: Duration,
    /// CPU time the process used until its first poll: steadier than the wall-clock `init`,
    /// which on a shared VM moves with whatever ran just before.
    init_cpu: Duration,
    first_invocation: Duration,
    invocations: Vec<Duration>,
    cpu_per_invocation: Duration,
    peak_rss_kb: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = std::fs::canonicalize(&args.config).expect("the config file exists");
    let aws_config = args
        .aws_config
        .as_ref()
        .map(|path| std::fs::canonicalize(path).expect("the AWS config file exists"));
    let event = http_api_event(&args.path);
    let (mut hello, mut gateway, mut with_aws) = (Vec::new(), Vec::new(), Vec::new());
    let (mut base, mut base_with_aws) = (Vec::new(), Vec::new());
    for _ in 0..args.processes {
        hello.push(run_function(&args.hello, None, &event, args.invocations).await);
        if let Some(binary) = &args.base {
            base.push(run_function(binary, Some(&config), &event, args.invocations).await);
            if let Some(aws_config) = &aws_config {
                base_with_aws
                    .push(run_function(binary, Some(aws_config), &event, args.invocations).await);
            }
        }
        gateway.push(run_function(&args.gateway, Some(&config), &event, args.invocations).await);
        if let Some(aws_config) = &aws_config {
            with_aws.push(
                run_function(&args.gateway, Some(aws_config), &event, args.invocations).await,
            );
        }
    }
    let with_aws = (!with_aws.is_empty()).then(|| summarize(&with_aws));
    let base = (!base.is_empty()).then(|| summarize(&base));
    let base_with_aws = (!base_with_aws.is_empty()).then(|| summarize(&base_with_aws));
    report(
        &args,
        &summarize(&hello),
        &summarize(&gateway),
        with_aws.as_ref(),
        [base.as_ref(), base_with_aws.as_ref()],
    );
}

/// Starts `binary` as a Lambda function, invokes it, and stops it.
async fn run_function(
    binary: &Path,
    config: Option<&Path>,
    event: &Value,
    invocations: usize,
) -> Sample {
    let api = RuntimeApi::start().await;
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/21/[$LATEST]bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "ASIABENCHMARKEXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "bench/secret/key/not/a/real/one/EXAMPLE",
        )
        .env("AWS_SESSION_TOKEN", "bench-session-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(config) = config {
        command
            .env("PROXYFN_CONFIG", config)
            .current_dir(config.parent().expect("the config is in a directory"));
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("the function starts");
    let pid = child.id().expect("a running child has a pid");
    let init = loop {
        if let Some(polled) = api.first_poll() {
            break polled - started;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited during init ({status}): {:?}",
                binary.display(),
                api.init_error()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "init took over 10 s"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    };

    // The process now waits in the /next long poll: its CPU time so far is its init's.
    let init_cpu = cpu_time(pid);
    let first_invocation = invoke(&api, event, 0).await;
    let cpu_before = cpu_time(pid);
    let mut times = Vec::with_capacity(invocations);
    for i in 1..=invocations {
        times.push(invoke(&api, event, i).await);
    }
    let cpu_per_invocation = (cpu_time(pid) - cpu_before) / invocations.max(1) as u32;
    let peak_rss_kb = status_kb(pid, "VmHWM:");
    child.kill().await.expect("the function stops");
    Sample {
        init,
        init_cpu,
        first_invocation,
        invocations: times,
        cpu_per_invocation,
        peak_rss_kb,
    }
}

/// One invocation, from queueing the event to its response; a non-200 answer is a broken
/// benchmark, not a number. Invocation `i` comes from its own client address, so a per-client
/// rate limit (proxyfn.toml's /hello allows 10 per second) counts but never refuses.
async fn invoke(api: &RuntimeApi, event: &Value, i: usize) -> Duration {
    let mut event = event.clone();
    event["requestContext"]["http"]["sourceIp"] =
        format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255).into();
    let queued = Instant::now();
    let outcome = api.invoke(event).await;
    let took = queued.elapsed();
    match outcome {
        Outcome::Response(response) if response["statusCode"] == 200 => took,
        other => panic!("the function did not answer 200: {other:?}"),
    }
}

/// CPU time of every thread of `pid`, in nanoseconds from /proc/PID/task/*/schedstat (the
/// clock-tick counters in /proc/PID/stat are too coarse for a few hundred invocations).
fn cpu_time(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc is readable");
    let nanos = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split(' ').next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc is readable")
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// An HTTP API (payload 2.0) GET in the documented shape.
fn http_api_event(path: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "host": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
            "user-agent": "curl/8.0",
            "x-forwarded-for": "203.0.113.42",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "r3pmxmplak",
            "domainName": "r3pmxmplak.execute-api.us-east-2.amazonaws.com",
            "domainPrefix": "r3pmxmplak",
            "http": { "method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.42", "userAgent": "curl/8.0" },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "21/Nov/2026:08:00:00 +0000",
            "timeEpoch": 1795248000000u64
        },
        "isBase64Encoded": false
    })
}

/// Medians over processes (and over every warm invocation for the latency percentiles).
struct Summary {
    init: Duration,
    init_cpu: Duration,
    first_invocation: Duration,
    p50: Duration,
    p99: Duration,
    cpu_per_invocation: Duration,
    peak_rss_kb: u64,
}

fn summarize(samples: &[Sample]) -> Summary {
    let mut all: Vec<Duration> = samples.iter().flat_map(|s| s.invocations.clone()).collect();
    all.sort();
    Summary {
        init: median(samples.iter().map(|s| s.init)),
        init_cpu: median(samples.iter().map(|s| s.init_cpu)),
        first_invocation: median(samples.iter().map(|s| s.first_invocation)),
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        cpu_per_invocation: median(samples.iter().map(|s| s.cpu_per_invocation)),
        peak_rss_kb: median(samples.iter().map(|s| s.peak_rss_kb)),
    }
}

fn median<T: Ord + Copy>(values: impl Iterator<Item = T>) -> T {
    let mut values: Vec<T> = values.collect();
    values.sort();
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn report(
    args: &Args,
    hello: &Summary,
    gateway: &Summary,
    with_aws: Option<&Summary>,
    [base, base_with_aws]: [Option<&Summary>; 2],
) {
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "lambda mode: {} fresh processes of each, interleaved; {} warm invocations each of GET {}",
        args.processes, args.invocations, args.path
    );
    println!(
        "{:<14}{:>10}{:>14}{:>14}{:>12}{:>12}{:>14}{:>13}{:>14}",
        "function",
        "init ms",
        "init CPU ms",
        "1st invoke µs",
        "p50 µs",
        "p99 µs",
        "cpu µs/invoke",
        "peak RSS kB",
        "binary bytes"
    );
    let functions = [
        Some(("hello", hello, &args.hello)),
        Some(("proxyfn", gateway, &args.gateway)),
        with_aws.map(|s| ("proxyfn+aws", s, &args.gateway)),
        base.zip(args.base.as_ref())
            .map(|(s, binary)| ("base", s, binary)),
        base_with_aws
            .zip(args.base.as_ref())
            .map(|(s, binary)| ("base+aws", s, binary)),
    ];
    for (name, s, binary) in functions.into_iter().flatten() {
        println!(
            "{name:<14}{:>10.2}{:>14.2}{:>14.0}{:>12.0}{:>12.0}{:>14.0}{:>13}{:>14}",
            s.init.as_secs_f64() * 1e3,
            s.init_cpu.as_secs_f64() * 1e3,
            us(s.first_invocation),
            us(s.p50),
            us(s.p99),
            us(s.cpu_per_invocation),
            s.peak_rss_kb,
            size(binary),
        );
    }
    let init_ratio = gateway.init.as_secs_f64() / hello.init.as_secs_f64();
    let init_cpu_ratio = gateway.init_cpu.as_secs_f64() / hello.init_cpu.as_secs_f64();
    let overhead = us(gateway.p50) - us(hello.p50);
    println!(
        "proxyfn / hello: init {init_ratio:.2}x (CPU {init_cpu_ratio:.2}x), per-invocation overhead {overhead:.0} µs (p50), \
         {:.0} µs (p99), CPU {:.0} µs",
        us(gateway.p99) - us(hello.p99),
        us(gateway.cpu_per_invocation) - us(hello.cpu_per_invocation),
    );
    println!("\ntargets (lambda)");
    target(
        "Lambda init <= 1.5x the minimal lambda_http hello (proxyfn.toml)",
        init_ratio <= 1.5,
        format!("{init_ratio:.2}x, CPU {init_cpu_ratio:.2}x"),
    );
    if let Some(with_aws) = with_aws {
        let ratio = with_aws.init.as_secs_f64() / hello.init.as_secs_f64();
        let cpu_ratio = with_aws.init_cpu.as_secs_f64() / hello.init_cpu.as_secs_f64();
        target(
            "Lambda init <= 1.5x the hello, with a route per AWS service",
            ratio <= 1.5,
            format!("{ratio:.2}x, CPU {cpu_ratio:.2}x"),
        );
    }
    target(
        "per-invocation CPU <= the hello's",
        gateway.cpu_per_invocation <= hello.cpu_per_invocation,
        format!(
            "{:.0} against {:.0} µs",
            us(gateway.cpu_per_invocation),
            us(hello.cpu_per_invocation)
        ),
    );
    if let Some(zip) = &args.zip {
        let bytes = size(zip);
        target(
            "function zip <= 12 MB with every default feature",
            bytes <= 12_000_000,
            format!("{bytes} bytes (binary {} bytes)", size(&args.gateway)),
        );
    }
}

fn target(name: &str, met: bool, detail: String) {
    println!(
        "  [{}] {name}: {detail}",
        if met { "met" } else { "NOT met" }
    );
}
