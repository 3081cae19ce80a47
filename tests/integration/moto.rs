//! A real moto server (AWS services, in-memory) on a free port, started for the test and
//! stopped with it, and SDK clients that set up and read back its resources.
//! `scripts/test` installs moto when it is missing.

#![allow(dead_code)]

use std::{process::Stdio, time::Duration};

use crate::helpers::closed_port;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    pub port: u16,
    child: tokio::process::Child,
}

impl Moto {
    /// Starts `moto_server` on a free port and waits until it answers.
    pub async fn start() -> Self {
        for _ in 0..5 {
            let port = closed_port().await;
            let child = tokio::process::Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("python3 is installed, with moto (scripts/test installs it)");
            let mut moto = Self { port, child };
            if moto.wait_until_up().await {
                return moto;
            }
        }
        panic!("moto_server could not listen on any of 5 free ports");
    }

    async fn wait_until_up(&mut self) -> bool {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if client
                .get(format!("{}/moto-api/", self.url()))
                .send()
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment the gateway's AWS credentials chain reads: static test credentials,
    /// no profile files, no instance metadata.
    pub fn env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/proxyfn-test-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/proxyfn-test-credentials",
            ),
        ]
    }

    /// An `[aws]` section pointing the gateway at `endpoint` (moto, or a proxy in front).
    pub fn section(endpoint: &str, extra: &str) -> String {
        format!("[aws]\nregion = \"{REGION}\"\nendpoint_url = \"{endpoint}\"\n{extra}\n")
    }

    /// The SDK configuration of the tests' own clients.
    pub fn sdk(&self) -> aws_types::SdkConfig {
        aws_types::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_types::region::Region::new(REGION))
            .endpoint_url(self.url())
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"),
            ))
            .build()
    }
}

/// What the [`FaultProxy`] does with one request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Passes it on to moto.
    Forward,
    /// Answers with an AWS JSON-protocol error (`__type`), without calling moto.
    AwsError { status: u16, code: &'static str },
    /// Waits, then passes it on (a slow service).
    Delay(Duration),
    /// Answers 200 with this awsJson body, without calling moto.
    Json(&'static str),
}

/// An HTTP proxy in front of moto that answers each request by the next step of its script
/// (then forwards), and counts the requests, so tests see how many attempts the SDK made.
pub struct FaultProxy {
    upstream: crate::helpers::Upstream,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultProxy {
    pub async fn start(moto: &Moto, script: Vec<Step>) -> Self {
        use std::sync::{Arc, Mutex, atomic::AtomicUsize};

        use axum::{body::Body, extract::Request, response::Response};
        use http_body_util::BodyExt;

        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let seen = Arc::new(AtomicUsize::new(0));
        let (target, counter) = (moto.url(), seen.clone());
        let client = reqwest::Client::new();
        let router = axum::Router::new().fallback(move |request: Request| {
            let (script, counter, client, target) =
                (script.clone(), counter.clone(), client.clone(), target.clone());
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let step = script.lock().unwrap().pop_front().unwrap_or(Step::Forward);
                match step {
                    Step::AwsError { status, code } => {
                        return Response::builder()
                            .status(status)
                            .header("content-type", "application/x-amz-json-1.0")
                            .header("x-amzn-errortype", code)
                            .header("x-amzn-requestid", "proxy-request-id")
                            .body(Body::from(format!(
                                "{{\"__type\":\"com.amazonaws.test#{code}\",\"message\":\"secret detail from AWS\"}}"
                            )))
                            .unwrap();
                    }
                    Step::Json(body) => {
                        return Response::builder()
                            .header("content-type", "application/x-amz-json-1.1")
                            .header("x-amzn-requestid", "proxy-request-id")
                            .body(Body::from(body))
                            .unwrap();
                    }
                    Step::Delay(delay) => tokio::time::sleep(delay).await,
                    Step::Forward => {}
                }
                let (parts, body) = request.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let target = format!(
                    "{target}{}",
                    parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
                );
                let mut forwarded = client.request(parts.method, target).body(body);
                for (name, value) in &parts.headers {
                    if name != http::header::HOST {
                        forwarded = forwarded.header(name, value);
                    }
                }
                let answer = forwarded.send().await.unwrap();
                let mut response = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    response = response.header(name, value);
                }
                response
                    .body(Body::from(answer.bytes().await.unwrap()))
                    .unwrap()
            }
        });
        Self {
            upstream: crate::helpers::Upstream::serve(router).await,
            seen,
        }
    }

    pub fn url(&self) -> String {
        self.upstream.url()
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}
