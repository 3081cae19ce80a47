//! Reloading the configuration without a restart (server mode), as nginx and Envoy do.
//!
//! A reload is asked for by SIGHUP, by `POST /reload` on the admin listener (what `proxyfn
//! reload` sends), or with `server.watch` by the file changing. The file is read and
//! validated again; a valid configuration becomes a new [`App`] built from the current one
//! ([`App::reload`] keeps the connection pools, breakers, rate-limit and cache state of what
//! did not change) and is swapped in at once: each connection picks the new router for its
//! next request, and requests in flight finish on the old one. An invalid configuration is
//! refused with every problem logged, and the current one keeps serving. `[server]` changes
//! need a restart (listeners, workers and connection limits are the process's).
//!
//! In Lambda the configuration is fixed per execution environment: a new one is a new
//! deployment.

use std::{
    sync::{
        OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::Router;
use tokio::sync::{mpsc, oneshot};

use crate::{
    App, Runtime,
    config::{ConfigSource, load},
};

/// The router new requests get, and its generation; swapped by a reload.
pub struct Current {
    generation: AtomicU64,
    router: RwLock<Router>,
}

impl Current {
    pub fn new(router: Router, generation: u64) -> Self {
        Self {
            generation: AtomicU64::new(generation),
            router: RwLock::new(router),
        }
    }

    /// The generation serving now: one atomic load, so connections can check it per request
    /// and take the lock only when it changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn router(&self) -> Router {
        self.router
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn swap(&self, router: Router, generation: u64) {
        *self
            .router
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = router;
        self.generation.store(generation, Ordering::Release);
    }
}

/// What a reload came to: the new generation, or every problem of the refused file.
pub type Outcome = Result<u64, String>;

/// Reload requests from the admin listener, each answered when done.
static REQUESTS: OnceLock<mpsc::UnboundedSender<oneshot::Sender<Outcome>>> = OnceLock::new();

/// Asks the running reloader for a reload and waits for its outcome; `None` when nothing
/// reloads in this process (Lambda, or a router served without [`Reloader`]).
pub async fn request() -> Option<Outcome> {
    let (done, outcome) = oneshot::channel();
    REQUESTS.get()?.send(done).ok()?;
    outcome.await.ok()
}

/// Re-reads the configuration when asked and hands each valid new app to the servers.
pub struct Reloader {
    source: ConfigSource,
    app: App,
    /// The public server's.
    public: mpsc::UnboundedSender<App>,
    /// The admin listener's, when there is one; it gets [`super::admin_app`] of each app.
    admin: Option<mpsc::UnboundedSender<App>>,
    watch: bool,
}

impl Reloader {
    pub fn new(
        source: ConfigSource,
        app: App,
        public: mpsc::UnboundedSender<App>,
        admin: Option<mpsc::UnboundedSender<App>>,
    ) -> Self {
        let watch = app.plan.server.watch;
        Self {
            source,
            app,
            public,
            admin,
            watch,
        }
    }

    /// Runs until the process ends.
    pub async fn run(mut self) {
        let (requests, mut asked) = mpsc::unbounded_channel();
        if REQUESTS.set(requests).is_err() {
            tracing::warn!("a reloader is already running; this one answers SIGHUP only");
        }
        let mut hangups = hangups();
        let mut changed = FileChanges::new(&self.source, self.watch);
        loop {
            let reply = tokio::select! {
                Some(reply) = asked.recv() => Some(reply),
                () = next_hangup(&mut hangups) => None,
                () = changed.next() => None,
            };
            let outcome = self.reload().await;
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    async fn reload(&mut self) -> Outcome {
        let built = match load(self.source.path()) {
            Ok((config, _)) => self.app.reload(&config, Runtime::Server).await,
            Err(error) => Err(error),
        };
        match built {
            Ok(app) => {
                let generation = app.generation;
                if let (Some(admin), Some(admin_app)) = (&self.admin, super::admin_app(&app)) {
                    let _ = admin.send(admin_app);
                }
                let _ = self.public.send(app.clone());
                self.app = app;
                crate::observability::metrics::record_reload(true);
                tracing::info!(config = %self.source, generation, "configuration reloaded");
                Ok(generation)
            }
            Err(error) => {
                let error = error.locate(&self.source);
                crate::observability::metrics::record_reload(false);
                tracing::error!(
                    config = %self.source,
                    generation = self.app.generation,
                    problems = %error,
                    "configuration refused; the current one keeps serving"
                );
                Err(error.to_string())
            }
        }
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(signal) = hangups
        && signal.recv().await.is_some()
    {
        return;
    }
    let _ = hangups;
    std::future::pending().await
}

/// `server.watch`: the file's changes, found by looking every quarter second and reported
/// once the file has stayed the same for one more look (an editor writes in several steps).
struct FileChanges {
    path: Option<std::path::PathBuf>,
    seen: Option<(SystemTime, u64)>,
}

const WATCH_INTERVAL: Duration = Duration::from_millis(250);

impl FileChanges {
    fn new(source: &ConfigSource, watch: bool) -> Self {
        let path = watch
            .then(|| source.path().map(std::path::Path::to_path_buf))
            .flatten();
        let seen = path.as_deref().and_then(stamp);
        Self { path, seen }
    }

    async fn next(&mut self) {
        let Some(path) = self.path.clone() else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let now = stamp(&path);
            if now == self.seen {
                continue;
            }
            tokio::time::sleep(WATCH_INTERVAL).await;
            if stamp(&path) == now {
                self.seen = now;
                return;
            }
        }
    }
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}
