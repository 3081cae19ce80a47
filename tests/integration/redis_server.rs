//! A real `redis-server` on a free port, started for the test and stopped with it.
//! `scripts/test` installs redis-server when it is missing.

#![allow(dead_code)]

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::closed_port;

pub struct RedisServer {
    pub port: u16,
    child: tokio::process::Child,
}

impl RedisServer {
    pub async fn start() -> Self {
        Self::start_on_a_free_port(|_, _| Vec::new(), None).await
    }

    /// Starts `redis-server` on a free port, with `extra(port, spare)` arguments, `spare`
    /// being a second free port (a cluster node's bus). A port found free can be taken
    /// before redis-server binds it (as the source port of one of the tests' own
    /// connections, say): then it exits at once, and other ports are tried.
    async fn start_on_a_free_port(
        extra: impl Fn(u16, u16) -> Vec<String>,
        dir: Option<&std::path::Path>,
    ) -> Self {
        for _ in 0..5 {
            let (port, spare) = (closed_port().await, closed_port().await);
            if let Some(server) = Self::spawn(port, &extra(port, spare), dir).await {
                return server;
            }
        }
        panic!("redis-server could not listen on any of 5 free ports");
    }

    async fn start_on(port: u16) -> Self {
        Self::spawn(port, &[], None)
            .await
            .unwrap_or_else(|| panic!("redis-server could not listen on port {port} again"))
    }

    /// Starts `redis-server` on `port` with `extra` arguments, in `dir` when given, and
    /// waits until it answers PING; `None` when it exits first (the port was taken).
    async fn spawn(port: u16, extra: &[String], dir: Option<&std::path::Path>) -> Option<Self> {
        let mut command = tokio::process::Command::new("redis-server");
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let child = command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let mut server = Self { port, child };
        server.wait_for_ping().await.then_some(server)
    }

    /// Whether it answers PING, `false` if it exited first.
    async fn wait_for_ping(&mut self) -> bool {
        for _ in 0..200 {
            if self.ping().await {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts an empty server again on the same port (after `stop`).
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start_on(self.port).await;
    }

    /// Sends one command (inline protocol) and returns the raw reply.
    pub async fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream
            .write_all(format!("{command}\r\nQUIT\r\n").as_bytes())
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        reply
    }

    /// Holds every client's commands for `millis` (CLIENT PAUSE ... ALL); returns once the
    /// pause is in effect.
    pub async fn pause(&self, millis: u64) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        stream
            .write_all(format!("CLIENT PAUSE {millis} ALL\r\n").as_bytes())
            .await
            .unwrap();
        let mut ok = [0; 5];
        stream.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"+OK\r\n");
    }

    /// How many times `command` ran since the last `CONFIG RESETSTAT` (INFO commandstats).
    pub async fn calls(&self, command: &str) -> u64 {
        let info = self.command("INFO commandstats").await;
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

/// A three-node Redis Cluster (no replicas) on free ports, made with `redis-cli --cluster`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let cluster_args = |port: u16, bus_port: u16| {
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-port",
                    &bus_port.to_string(),
                ]
                .map(String::from)
                .to_vec()
            };
            let node = RedisServer::start_on_a_free_port(cluster_args, Some(dir.path())).await;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli is installed with redis-server");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self { nodes, _dir: dir };
        for _ in 0..200 {
            let mut ok = true;
            for node in &cluster.nodes {
                ok &= node
                    .command("CLUSTER INFO")
                    .await
                    .contains("cluster_state:ok");
            }
            if ok {
                return cluster;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cluster did not reach cluster_state:ok");
    }

    /// A node to give the gateway; it finds the others.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }
}
