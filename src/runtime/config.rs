//! `[server]` and `[lambda]`: how each runtime listens and the limits every request obeys,
//! as the file spells them, validated into [`ServerSettings`] and [`LambdaSettings`].

use std::{net::SocketAddr, time::Duration};

use http::HeaderName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, HumanDuration, Problems, parse_header_name};

/// `[server]`: how the gateway listens and the limits every request obeys.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on in server mode. `PORT` overrides the port.
    pub listen: String,
    /// Server mode: a second address serving only the operational endpoints (`/health`,
    /// `/ready`, `/metrics`, `POST /reload`), which then leave the public listener.
    pub admin_listen: Option<String>,
    /// Server mode: reload the configuration when its file changes (for development).
    pub watch: bool,
    /// Requests with a larger body get 413.
    pub body_limit: ByteSize,
    /// Requests whose header section (names + values) is larger get 431.
    pub header_limit: ByteSize,
    /// Deadline for the whole request, until the response head is ready.
    pub timeout: HumanDuration,
    /// Server mode: which proxies in front of the gateway may speak for the client in
    /// `X-Forwarded-*`: a hop count, or a list of addresses and CIDR networks.
    pub trusted_proxies: TrustedProxiesConfig,
    /// Client-address headers (`cf-connecting-ip`, ...) passed on from trusted proxies
    /// instead of being removed.
    pub trusted_headers: Vec<String>,
    /// What happens to request header names with `_`: `drop`, `reject` or `allow`.
    pub underscore_headers: crate::trust::UnderscoreHeaders,
    /// Remove an API Gateway stage prefix (`/prod`) before routing (Lambda mode).
    pub strip_stage: bool,
    /// How long graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: HumanDuration,
    /// Lambda: time kept free before the invocation deadline to send the response.
    pub deadline_margin: HumanDuration,
    /// Server mode: threads serving connections, each with its own event loop and upstream
    /// connection pools. Omitted: one per CPU.
    pub workers: Option<usize>,
    /// Server mode: time a client has to send a request's header section, from its first byte
    /// (or from connecting).
    pub header_timeout: HumanDuration,
    /// Server mode: how long a keep-alive connection may wait for its next request.
    pub idle_timeout: HumanDuration,
    /// Longest pause while the gateway waits for more of a request body; then 408.
    pub body_timeout: HumanDuration,
    /// Server mode: open connections beyond which new ones are closed at once. Omitted: half
    /// the process's descriptor limit.
    pub max_connections: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            listen: "127.0.0.1:8080".into(),
            admin_listen: None,
            watch: false,
            body_limit: ByteSize(10 << 20),
            header_limit: ByteSize(32 << 10),
            timeout: HumanDuration(Duration::from_secs(29)),
            trusted_proxies: TrustedProxiesConfig::Count(0),
            trusted_headers: Vec::new(),
            underscore_headers: crate::trust::UnderscoreHeaders::Drop,
            strip_stage: true,
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
            deadline_margin: HumanDuration(Duration::from_millis(200)),
            workers: None,
            header_timeout: HumanDuration(Duration::from_secs(30)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            body_timeout: HumanDuration(Duration::from_secs(30)),
            max_connections: None,
        }
    }
}

/// `trusted_proxies = 2` or `trusted_proxies = ["10.0.0.0/8", "192.168.1.5"]`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TrustedProxiesConfig {
    Count(usize),
    Networks(Vec<String>),
}

/// `[lambda]`: how invocations are answered in Lambda mode.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaConfig {
    /// Largest invocation response (the JSON the Runtime API gets); Lambda refuses more than
    /// 6 MB.
    pub max_response: ByteSize,
    /// `buffered`, or `stream` when the function is invoked with response streaming (a
    /// Function URL with invoke mode RESPONSE_STREAM, a REST API with `responseTransferMode:
    /// STREAM`): the invoke mode is a deployment fact the function cannot see.
    pub response_mode: ResponseMode,
}

impl Default for LambdaConfig {
    fn default() -> Self {
        Self {
            max_response: ByteSize(6 << 20),
            response_mode: ResponseMode::Buffered,
        }
    }
}

/// How Lambda invocations send their answers: `buffered`, one JSON document, complete,
/// within `max_response`; or `stream`, the Runtime API's streaming response (status and
/// headers first, then the body as it arrives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    #[default]
    Buffered,
    Stream,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub watch: bool,
    pub body_limit: u64,
    pub header_limit: usize,
    pub timeout: Duration,
    pub trusted_proxies: crate::trust::TrustedProxies,
    /// Client-address headers passed on from trusted proxies.
    pub trusted_headers: Vec<HeaderName>,
    pub underscore_headers: crate::trust::UnderscoreHeaders,
    pub strip_stage: bool,
    pub shutdown_timeout: Duration,
    pub deadline_margin: Duration,
    /// Server mode's worker threads, when configured; see [`ServerSettings::workers`].
    pub configured_workers: Option<usize>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// When configured; else derived from the descriptor limit when the server starts.
    pub max_connections: Option<usize>,
}

impl ServerSettings {
    /// Server mode's worker threads: as configured, else one per CPU (read only when asked:
    /// finding the CPU quota reads cgroup files, which a Lambda cold start need not pay for).
    pub fn workers(&self) -> usize {
        self.configured_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    }
}

/// `[lambda]`, validated.
#[derive(Clone, Copy, Debug)]
pub struct LambdaSettings {
    /// The largest invocation response, in bytes (buffered answers).
    pub max_response: usize,
    pub response_mode: ResponseMode,
}

/// Validates `[server]`.
pub fn server_settings(server: &ServerConfig, problems: &mut Problems) -> Option<ServerSettings> {
    let listen = resolve_listen(&server.listen)
        .map_err(|message| problems.add("server.listen", message))
        .ok();
    let admin_listen = server.admin_listen.as_deref().and_then(|admin| {
        resolve_listen(admin)
            .map_err(|message| problems.add("server.admin_listen", message))
            .ok()
    });
    if let (Some(public), Some(admin)) = (listen, admin_listen)
        && public == admin
    {
        problems.add(
            "server.admin_listen",
            "must differ from server.listen: the admin endpoints leave the public listener",
        );
    }
    if server.timeout.0.is_zero() {
        problems.add("server.timeout", "must be greater than zero");
    }
    if server.header_limit.0 < 1024 {
        problems.add("server.header_limit", "must be at least 1KB");
    }
    let header_limit = usize::try_from(server.header_limit.0).unwrap_or(usize::MAX);
    for (field, value) in [
        ("header_timeout", server.header_timeout.0),
        ("idle_timeout", server.idle_timeout.0),
        ("body_timeout", server.body_timeout.0),
    ] {
        if value.is_zero() {
            problems.add(format!("server.{field}"), "must be greater than zero");
        }
    }
    if server.max_connections == Some(0) {
        problems.add(
            "server.max_connections",
            "must be at least 1 (omit it for half the descriptor limit)",
        );
    }
    if server
        .workers
        .is_some_and(|n| !(1..=MAX_WORKERS).contains(&n))
    {
        problems.add(
            "server.workers",
            format!("must be between 1 and {MAX_WORKERS}"),
        );
    }
    let trusted_proxies = match &server.trusted_proxies {
        TrustedProxiesConfig::Count(n) => crate::trust::TrustedProxies::Count(*n),
        TrustedProxiesConfig::Networks(entries) => {
            if entries.is_empty() {
                problems.add(
                    "server.trusted_proxies",
                    "list at least one address or network, or use 0 to trust none",
                );
            }
            crate::trust::TrustedProxies::Networks(
                entries
                    .iter()
                    .enumerate()
                    .filter_map(|(i, entry)| {
                        crate::trust::parse_network(entry)
                            .map_err(|message| {
                                problems.add(format!("server.trusted_proxies[{i}]"), message)
                            })
                            .ok()
                    })
                    .collect(),
            )
        }
    };
    let trusted_headers = server
        .trusted_headers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let key = format!("server.trusted_headers[{i}]");
            let name = parse_header_name(&key, name, problems)?;
            if !crate::trust::CLIENT_ADDRESS_HEADERS.contains(&name.as_str()) {
                problems.add(
                    key,
                    format!(
                        "{:?} is not a client-address header the gateway removes (those are: {})",
                        name.as_str(),
                        crate::trust::CLIENT_ADDRESS_HEADERS.join(", ")
                    ),
                );
                return None;
            }
            Some(name)
        })
        .collect();
    Some(ServerSettings {
        listen: listen?,
        admin_listen,
        watch: server.watch,
        body_limit: server.body_limit.0,
        header_limit,
        timeout: server.timeout.0,
        trusted_proxies,
        trusted_headers,
        underscore_headers: server.underscore_headers,
        strip_stage: server.strip_stage,
        shutdown_timeout: server.shutdown_timeout.0,
        deadline_margin: server.deadline_margin.0,
        configured_workers: server.workers,
        header_timeout: server.header_timeout.0,
        idle_timeout: server.idle_timeout.0,
        body_timeout: server.body_timeout.0,
        max_connections: server.max_connections,
    })
}

/// Validates `[lambda]`.
pub fn lambda_settings(lambda: &LambdaConfig, problems: &mut Problems) -> LambdaSettings {
    let max_response = usize::try_from(lambda.max_response.0).unwrap_or(usize::MAX);
    if max_response < 1024 {
        problems.add("lambda.max_response", "must be at least 1KB");
    }
    LambdaSettings {
        max_response,
        response_mode: lambda.response_mode,
    }
}

/// More worker threads than this would only add context switches and memory.
const MAX_WORKERS: usize = 1024;

fn resolve_listen(listen: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = listen.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs;
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("not a HOST:PORT address: {listen:?}"))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Plan, problems_in as problems};

    #[test]
    fn workers_default_to_one_per_cpu_and_zero_is_refused() {
        let plan = Plan::new(&Config::default()).unwrap();
        assert_eq!(
            plan.server.workers(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        let found = problems("[server]\nworkers = 0\n");
        assert_eq!(found, ["server.workers: must be between 1 and 1024"]);
    }

    #[test]
    fn trust_boundary_keys_are_validated_with_their_key_paths() {
        let found = problems(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.internal\", \"10.0.0.0/40\"]\n\
             trusted_headers = [\"cf-connecting-ip\", \"x-user-id\"]\n",
        );
        assert_eq!(
            found,
            [
                r#"server.trusted_proxies[1]: not an IP address or CIDR network: "proxy.internal""#,
                r#"server.trusted_proxies[2]: not an IP address or CIDR network: "10.0.0.0/40""#,
            ]
            .into_iter()
            .chain([found[2].as_str()])
            .collect::<Vec<_>>()
        );
        assert!(
            found[2].starts_with(
                r#"server.trusted_headers[1]: "x-user-id" is not a client-address header"#
            ),
            "{found:?}"
        );
        assert_eq!(
            problems("[server]\ntrusted_proxies = []\n"),
            [
                "server.trusted_proxies: list at least one address or network, or use 0 to trust none"
            ]
        );
        let plan = Plan::new(
            &Config::from_toml("[server]\ntrusted_proxies = [\"192.168.1.5\", \"10.1.2.3/8\"]\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            plan.server.trusted_proxies,
            crate::trust::TrustedProxies::Networks(vec![
                "192.168.1.5/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ])
        );
    }
}
