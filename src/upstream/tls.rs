//! TLS for the gateway's HTTP clients, built once per process.
//!
//! Left to itself, reqwest builds a certificate verifier for every client, and on Linux that
//! reads and parses the whole system trust store (every file under /etc/ssl/certs): a few
//! milliseconds per client, paid at every Lambda cold start. Here the store is loaded once and
//! shared by every client, and not at all when nothing can use it: a gateway whose upstreams
//! are all plain HTTP and which fetches no JWKS never reads it.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider};
use rustls_platform_verifier::BuilderVerifierExt;

use crate::{
    auth::config::JwtKeySource,
    config::{ConfigError, Plan},
};

/// Whether `url` (validated as http or https) is an HTTPS one.
pub fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// Whether anything in `plan` calls out over HTTPS: an upstream target or a JWKS endpoint.
pub fn needs_trust_store(plan: &Plan) -> bool {
    plan.upstreams
        .values()
        .flat_map(|upstream| &upstream.targets)
        .any(|target| is_https(target))
        || plan
            .auth
            .jwt
            .values()
            .any(|jwt| matches!(&jwt.keys, JwtKeySource::Jwks(url) if is_https(url)))
}

/// The client TLS configuration every client shares: the platform's verifier over the system
/// trust store when `trust_store`, otherwise an empty root store, so that an HTTPS connection
/// nobody configured fails verification instead of being trusted.
pub fn client_config(trust_store: bool) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let mut config = if trust_store {
        builder.with_platform_verifier().map_err(tls_error)?
    } else {
        builder.with_root_certificates(RootCertStore::empty())
    }
    .with_no_client_auth();
    // The clients speak HTTP/1.1 only (reqwest is built without HTTP/2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn tls_error(error: rustls::Error) -> ConfigError {
    ConfigError::single("upstreams", format!("cannot set up TLS: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plan(toml: &str) -> Plan {
        Plan::new(&Config::from_toml(toml).unwrap()).unwrap()
    }

    #[test]
    fn only_https_upstreams_or_jwks_need_the_trust_store() {
        let http = plan(
            "[upstreams.a]\nurl = \"http://10.0.0.1:8080\"\n[[routes]]\npath = \"/a\"\nupstream = \"a\"\n",
        );
        assert!(!needs_trust_store(&http));
        let https = plan(
            "[upstreams.a]\nurls = [\"http://10.0.0.1\", \"HTTPS://api.example.com\"]\n\
             [[routes]]\npath = \"/a\"\nupstream = \"a\"\n",
        );
        assert!(needs_trust_store(&https));
        let jwks = plan(
            "[auth.jwt.main]\njwks_url = \"https://idp.example.com/jwks.json\"\n\
             algorithms = [\"RS256\"]\n[[routes]]\npath = \"/a\"\nresponse = {}\n",
        );
        assert!(needs_trust_store(&jwks));
    }
}
