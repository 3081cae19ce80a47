//! A real JWKS endpoint for the tests, serving keys of [`Signer`]s.

#![allow(dead_code)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use axum::{Router, response::IntoResponse, routing::get};
use serde_json::{Value, json};

use crate::helpers::Upstream;
pub use crate::signer::{ISSUER, Signer, claims, now};

/// A JWKS endpoint that counts fetches and can rotate keys, go down, hang or be slow.
pub struct JwksServer {
    pub server: Upstream,
    keys: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// Fetches never answer while set, as an identity provider that hangs.
    hang: Arc<AtomicBool>,
    /// Milliseconds each answer takes.
    delay_ms: Arc<AtomicU64>,
}

impl JwksServer {
    pub async fn start(signers: &[&Signer], max_age: u32) -> Self {
        let keys = Arc::new(Mutex::new(
            signers.iter().map(|s| s.jwk()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let hang = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (k, f, d, h, ms) = (
            keys.clone(),
            fetches.clone(),
            down.clone(),
            hang.clone(),
            delay_ms.clone(),
        );
        let router = Router::new().route(
            "/jwks.json",
            get(move || {
                let (keys, fetches, down, hang, delay_ms) =
                    (k.clone(), f.clone(), d.clone(), h.clone(), ms.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    if hang.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let delay = delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    }
                    if down.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                            .into_response();
                    }
                    let body = json!({ "keys": *keys.lock().unwrap() }).to_string();
                    (
                        [
                            ("content-type", "application/json".to_owned()),
                            ("cache-control", format!("public, max-age={max_age}")),
                        ],
                        body,
                    )
                        .into_response()
                }
            }),
        );
        Self {
            server: Upstream::serve(router).await,
            keys,
            fetches,
            down,
            hang,
            delay_ms,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/jwks.json", self.server.url())
    }

    pub fn serve_keys(&self, signers: &[&Signer]) {
        *self.keys.lock().unwrap() = signers.iter().map(|s| s.jwk()).collect();
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Fetches from now on never answer (`true`), or answer again.
    pub fn set_hanging(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
