//! One test body for both runtimes. [`TestApp`] builds a configuration from parts (upstreams,
//! Redis, routes, any other section as TOML); [`TestApp::start`] runs it as a server
//! (in-process, the real server runtime) or as a Lambda function (the real binary behind a
//! local Runtime API, sent Function URL events); [`Running::send`] takes one [`Call`] to
//! either and gives back the same [`Answer`], so a feature test asserts once and runs twice.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::{
    helpers::{Gateway, Process, Upstream, client, eventually},
    lambda::{Function, decoded_body},
    lambda_event::LambdaEvent,
    redis_server::RedisServer,
};

/// The runtimes a both-runtime test runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Server,
    Lambda,
}

pub const BOTH: [Runtime; 2] = [Runtime::Server, Runtime::Lambda];

/// A gateway configuration under construction.
#[derive(Clone, Debug, Default)]
pub struct TestApp {
    sections: Vec<String>,
    routes: Vec<String>,
}

impl TestApp {
    pub fn new() -> Self {
        Self::default()
    }

    /// `[upstreams.NAME]` at the upstream's address, with more keys as TOML lines.
    pub fn with_upstream_keys(mut self, name: &str, upstream: &Upstream, keys: &str) -> Self {
        self.sections.push(format!(
            "[upstreams.{name}]\nurl = \"{}\"\n{keys}\n",
            upstream.url()
        ));
        self
    }

    pub fn with_upstream(self, name: &str, upstream: &Upstream) -> Self {
        self.with_upstream_keys(name, upstream, "")
    }

    /// Rate limits kept in `redis`.
    pub fn with_redis(mut self, redis: &RedisServer) -> Self {
        self.sections.push(format!(
            "[rate_limit]\nstore = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        ));
        self
    }

    /// Any other section, as TOML.
    pub fn config(mut self, toml: &str) -> Self {
        self.sections.push(format!("{toml}\n"));
        self
    }

    /// A `[[routes]]` entry for `path`, its other keys as TOML lines.
    pub fn route(mut self, path: &str, keys: &str) -> Self {
        self.routes
            .push(format!("[[routes]]\npath = {path:?}\n{keys}\n"));
        self
    }

    pub fn toml(&self) -> String {
        self.sections.concat() + &self.routes.concat()
    }

    pub async fn start(&self, runtime: Runtime) -> Running {
        let toml = self.toml();
        match runtime {
            Runtime::Server => Running::Server(Gateway::start(&toml).await),
            Runtime::Lambda => Running::Lambda(Box::new(Function::start(&toml).await)),
        }
    }

    /// Runs the real binary in either runtime, with `envs` in its environment (as the AWS
    /// credentials chain reads it: an in-process server would share the tests' own).
    pub async fn start_binary(&self, runtime: Runtime, envs: &[(&str, &str)]) -> Running {
        let toml = self.toml();
        match runtime {
            Runtime::Server => Running::Binary(Box::new(
                Process::start_with(&toml, Some("info"), envs).await,
            )),
            Runtime::Lambda => {
                Running::Lambda(Box::new(Function::start_with_env(&toml, envs).await))
            }
        }
    }
}

/// A gateway running in one of the runtimes.
pub enum Running {
    Server(Gateway),
    /// The binary in server mode.
    Binary(Box<Process>),
    Lambda(Box<Function>),
}

/// One request, as a client sends it.
#[derive(Clone, Debug)]
pub struct Call {
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Call {
    pub fn new(method: &'static str, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str, body: &str) -> Self {
        Self::new("POST", path).body(body)
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }
}

/// The gateway's answer, the same shape from either runtime.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    /// Asserts a problem+json answer of `status` and `kind`, with a request id; returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(
            self.header("content-type"),
            ["application/problem+json"],
            "{self:?}"
        );
        let problem = self.json();
        assert_eq!(problem["type"], format!("urn:proxyfn:problem:{kind}"));
        assert!(
            !problem["request_id"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{problem}"
        );
        problem
    }
}

impl Running {
    pub async fn send(&self, call: Call) -> Answer {
        match self {
            Running::Server(_) | Running::Binary(_) => {
                let method = http::Method::from_bytes(call.method.as_bytes()).unwrap();
                let mut url = match self {
                    Running::Server(gateway) => gateway.url(&call.path),
                    Running::Binary(process) => process.url(&call.path),
                    Running::Lambda(_) => unreachable!(),
                };
                if !call.query.is_empty() {
                    url.push('?');
                    url.push_str(
                        &url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(&call.query)
                            .finish(),
                    );
                }
                let mut request = client().request(method, url);
                for (name, value) in &call.headers {
                    request = request.header(name, value);
                }
                if let Some(body) = call.body {
                    request = request.body(body);
                }
                let response = request.send().await.unwrap();
                Answer {
                    status: response.status().as_u16(),
                    headers: response.headers().clone(),
                    body: response.bytes().await.unwrap(),
                }
            }
            Running::Lambda(function) => {
                let mut event = LambdaEvent::function_url(call.method, &call.path);
                for (name, value) in &call.query {
                    event = event.query(name, value);
                }
                for (name, value) in &call.headers {
                    event = event.header(name, value);
                }
                if let Some(body) = &call.body {
                    event = event.text_body(body);
                }
                let response = function.api.respond(event.build()).await;
                answer_of(&response)
            }
        }
    }
}

impl Running {
    /// The JSON log lines the binary printed that contain `needle`, once there are at least
    /// `expected` of them (lines arrive asynchronously).
    pub async fn log_lines(&self, needle: &str, expected: usize) -> Vec<Value> {
        let lines = match self {
            Running::Binary(process) => process.lines.clone(),
            Running::Lambda(function) => function.lines.clone(),
            Running::Server(_) => panic!("an in-process server's log is the tests' own"),
        };
        let matching = || {
            lines
                .lock()
                .unwrap()
                .iter()
                .filter(|line| line.contains(needle))
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect::<Vec<Value>>()
        };
        eventually(|| Some(matching()).filter(|found| found.len() >= expected)).await;
        matching()
    }
}

/// A Function URL response (payload 2.0) as an [`Answer`]: `headers` hold one value per
/// name, comma-joined, and `cookies` the `Set-Cookie` values.
fn answer_of(response: &Value) -> Answer {
    let mut headers = HeaderMap::new();
    for (name, value) in response["headers"].as_object().into_iter().flatten() {
        headers.append(
            HeaderName::try_from(name.as_str()).unwrap(),
            HeaderValue::try_from(value.as_str().unwrap()).unwrap(),
        );
    }
    for cookie in response["cookies"].as_array().into_iter().flatten() {
        headers.append(
            http::header::SET_COOKIE,
            HeaderValue::try_from(cookie.as_str().unwrap()).unwrap(),
        );
    }
    Answer {
        status: u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap(),
        headers,
        body: Bytes::from(decoded_body(response)),
    }
}
