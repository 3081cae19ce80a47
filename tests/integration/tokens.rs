//! A real JWKS endpoint for the tests, serving keys of [`Signer`]s.

#![allow(dead_code)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use axum::{Router, response::IntoResponse, routing::get};
use serde_json::{Value, json};

use crate::helpers::Upstream;
pub use crate::signer::{ISSUER, Signer, claims, now};

/// A JWKS endpoint that counts fetches and can rotate keys or go down.
pub struct JwksServer {
    pub server: Upstream,
    keys: Arc<Mutex<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl JwksServer {
    pub async fn start(signers: &[&Signer], max_age: u32) -> Self {
        let keys = Arc::new(Mutex::new(
            signers.iter().map(|s| s.jwk()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (k, f, d) = (keys.clone(), fetches.clone(), down.clone());
        let router = Router::new().route(
            "/jwks.json",
            get(move || {
                let (keys, fetches, down) = (k.clone(), f.clone(), d.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
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

    pub fn fetch_count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
