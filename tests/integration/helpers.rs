//! Test helpers: real upstream servers on 127.0.0.1:0, the gateway served through the real
//! server runtime, and a raw HTTP/1.1 client for request targets that URL libraries would
//! normalize before sending.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::Request, response::Response};
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

/// A request as an upstream received it.
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: String,
    /// The request target exactly as sent on the wire (path and query).
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A real HTTP server standing in for a backend service.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Captured>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Serves `router` on a free port.
    pub async fn serve(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            addr,
            seen: Arc::default(),
            task,
        }
    }

    /// Records every request, then answers with `respond(&captured)`.
    pub async fn recording(
        respond: impl Fn(&Captured) -> Response + Clone + Send + Sync + 'static,
    ) -> Self {
        let (router, seen) = recording_router(respond);
        let mut upstream = Self::serve(router).await;
        upstream.seen = seen;
        upstream
    }

    /// [`Upstream::echo`] over TLS (HTTP/1.1), with a certificate for 127.0.0.1 that `ca`
    /// signed.
    pub async fn echo_tls(ca: &TestCa) -> Self {
        let (router, seen) = recording_router(echo_response);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    /// Answers 200 with the request body echoed back and `x-upstream: yes`.
    pub async fn echo() -> Self {
        Self::recording(echo_response).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Captured {
        self.requests()
            .pop()
            .expect("the upstream received a request")
    }
}

fn echo_response(captured: &Captured) -> Response {
    Response::builder()
        .header("x-upstream", "yes")
        .body(axum::body::Body::from(captured.body.clone()))
        .unwrap()
}

/// A router that records every request, then answers with `respond(&captured)`.
fn recording_router(
    respond: impl Fn(&Captured) -> Response + Clone + Send + Sync + 'static,
) -> (Router, Arc<Mutex<Vec<Captured>>>) {
    let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
    let store = seen.clone();
    let router = Router::new().fallback(move |request: Request| {
        let store = store.clone();
        let respond = respond.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let captured = Captured {
                method: parts.method.to_string(),
                target: parts
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str().to_owned())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
            };
            let response = respond(&captured);
            store.lock().unwrap().push(captured);
            response
        }
    });
    (router, seen)
}

/// A certificate authority for TLS upstreams, made with openssl in a temporary directory,
/// and a certificate it signed for 127.0.0.1.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let output = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl runs (scripts/test installs it)");
            assert!(output.status.success(), "openssl {args:?}: {output:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca = [
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=proxyfn test CA",
            "-keyout",
            "ca.key",
        ];
        openssl(&[&["req"][..], &ec, &ca, &["-out", "ca.pem"]].concat());
        let leaf = [
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ];
        openssl(&[&["req"][..], &ec, &leaf].concat());
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "leaf.pem",
        ]);
        Self { dir }
    }

    /// The CA certificate (PEM), for `SSL_CERT_FILE`.
    pub fn cert_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_config(&self) -> rustls::ServerConfig {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let chain = CertificateDer::pem_file_iter(self.dir.path().join("leaf.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.dir.path().join("leaf.key")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The gateway, built by `proxyfn::build` and served by the real server runtime.
pub struct Gateway {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    pub async fn start(toml: &str) -> Self {
        let config = proxyfn::Config::from_toml(toml).expect("test config parses");
        let app = proxyfn::App::new(&config, proxyfn::Runtime::Server)
            .await
            .expect("test config is valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, on_shutdown) = oneshot::channel::<()>();
        let task = tokio::spawn(proxyfn::runtime::server::serve(listener, app, async move {
            let _ = on_shutdown.await;
        }));
        Self {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status of a GET to `path`.
    pub async fn status(&self, path: &str) -> u16 {
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The body of a GET to `path`, as text.
    pub async fn text(&self, path: &str) -> String {
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Starts graceful shutdown and returns the server task to await.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("not shut down yet")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` verbatim over
/// a fresh connection, and reads the whole response.
pub async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = head.replace('\n', "\r\n");
    request.push_str("\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 30s")
        .unwrap();
    parse_response(&bytes)
}

fn parse_response(bytes: &[u8]) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Asserts an RFC 9457 problem response with the given status and type suffix, and returns
/// its JSON body.
pub async fn expect_problem(
    response: reqwest::Response,
    status: u16,
    kind: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("a JSON problem body");
    assert_problem_body(&body, status, kind, &request_id);
    body
}

pub fn assert_problem_body(body: &serde_json::Value, status: u16, kind: &str, request_id: &str) {
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(
        body["type"],
        format!("urn:proxyfn:problem:{kind}"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(body["request_id"], request_id, "{body}");
    assert!(!request_id.is_empty());
}

/// Polls `probe` every 25 ms for up to 5 s, until it finds something (output another process
/// writes asynchronously: log lines, exports).
pub async fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..200 {
        if let Some(found) = probe() {
            return Some(found);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    None
}

/// A config with one upstream named `backend` at `url` and the given extra TOML.
pub fn config_with_upstream(url: &str, extra: &str) -> String {
    format!("[upstreams.backend]\nurl = \"{url}\"\n{extra}")
}

/// Lower-case hex SHA-256, as `[auth.api_keys]` entries store keys.
pub fn sha256_hex(text: &str) -> String {
    proxyfn::auth::hex(&proxyfn::auth::digest(text.as_bytes()))
}

/// A config file in a temporary directory of its own, and the real binary run against it.
pub struct ConfigFile {
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ConfigFile {
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxyfn.toml");
        std::fs::write(&path, toml).unwrap();
        Self { path, _dir: dir }
    }

    /// The directory of the config file (relative paths in it start here).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Runs `proxyfn ARGS --config PATH`.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_proxyfn"))
            .args(args)
            .arg("--config")
            .arg(&self.path)
            .output()
            .unwrap()
    }

    /// Runs `proxyfn ARGS --config PATH`, expects success and returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// Sends SIGTERM to a child process, as an orchestrator stopping it would.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Collects a child's stdout line by line, as it comes.
pub fn capture_lines(stdout: tokio::process::ChildStdout) -> Arc<Mutex<Vec<String>>> {
    use tokio::io::AsyncBufReadExt;
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let mut reader = tokio::io::BufReader::new(stdout).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// The real binary in server mode, its stdout captured line by line.
pub struct Process {
    pub port: u16,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Process {
    pub async fn start(config: &str) -> Self {
        Self::start_with(config, Some("info"), &[]).await
    }

    /// `rust_log`: the RUST_LOG to run with; `None` leaves the level to `[log] level`.
    pub async fn start_with(config: &str, rust_log: Option<&str>, envs: &[(&str, &str)]) -> Self {
        let port = closed_port().await;
        Self::spawn(
            &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{config}"),
            port,
            rust_log,
            envs,
        )
        .await
    }

    /// The binary serving `config` as it is (it may have a `[server]` table of its own),
    /// listening on a free port set through the environment.
    pub async fn start_unchanged(config: &str) -> Self {
        let port = closed_port().await;
        let listen = format!("127.0.0.1:{port}");
        Self::spawn(
            config,
            port,
            Some("info"),
            &[("PROXYFN_SERVER__LISTEN", listen.as_str())],
        )
        .await
    }

    async fn spawn(config: &str, port: u16, rust_log: Option<&str>, envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxyfn.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxyfn"))
            .arg("--config")
            .arg(&path)
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env_remove("PORT")
            .env_remove("RUST_LOG")
            .envs(rust_log.map(|level| ("RUST_LOG", level)))
            // Server mode buffers log lines by default; the tests read them within 10ms, not
            // the default second (`envs` may set another interval).
            .env("PROXYFN_LOG__FLUSH_INTERVAL", "10ms")
            .envs(envs.iter().copied())
            .env("OBS_JWT_SECRET", crate::observability::SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = capture_lines(child.stdout.take().unwrap());
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    port,
                    lines,
                    child,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not listen");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The file the process was started with.
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("proxyfn.toml")
    }

    /// Replaces the config file of a process started with [`Process::start_with`] (same
    /// listener).
    pub fn rewrite_config(&self, config: &str) {
        let text = format!("[server]\nlisten = \"127.0.0.1:{}\"\n{config}", self.port);
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Sends the process a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the access-log event of `request_id`.
    pub async fn access_event(&self, request_id: &str) -> Value {
        let found = eventually(|| {
            self.lines.lock().unwrap().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                (event["target"] == "proxyfn::access" && event["request_id"] == request_id)
                    .then_some(event)
            })
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no access event for {request_id}: {:#?}",
                self.lines.lock().unwrap()
            )
        })
    }

    /// Waits until `n` access events have been written.
    pub async fn access_event_count(&self, n: usize) {
        let written = eventually(|| {
            let lines = self.lines.lock().unwrap();
            let count = lines
                .iter()
                .filter(|line| line.contains("\"target\":\"proxyfn::access\""))
                .count();
            (count >= n).then_some(())
        })
        .await;
        assert!(
            written.is_some(),
            "fewer than {n} access events: {}",
            self.output()
        );
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(&mut self) {
        sigterm(&self.child);
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30s")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

impl Process {
    /// Lines printed so far that contain `needle`.
    pub fn lines_containing(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// The process's resident set size, from /proc (Linux).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    /// The process's peak resident set size so far.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }
}
