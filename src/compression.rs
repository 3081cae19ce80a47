//! `[compression]`: response compression negotiated with the client's `Accept-Encoding`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, Problems};

/// `[compression]`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Compress responses the upstream sent uncompressed, when the client accepts it.
    pub enabled: bool,
    /// `br` and/or `gzip`; with both, the client's preference (q-values) decides.
    pub algorithms: Vec<String>,
    /// Bodies smaller than this are sent as they are: compressing them saves nothing.
    pub min_size: ByteSize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            algorithms: vec!["br".into(), "gzip".into()],
            min_size: ByteSize(1 << 10),
        }
    }
}

/// The validated `[compression]`; `None` in the plan when turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionSettings {
    pub gzip: bool,
    pub br: bool,
    pub min_size: u64,
}

/// Validates `[compression]`; `None` when responses are never compressed.
pub fn settings(
    compression: &CompressionConfig,
    problems: &mut Problems,
) -> Option<CompressionSettings> {
    let mut settings = CompressionSettings {
        gzip: false,
        br: false,
        min_size: compression.min_size.0,
    };
    for (i, algorithm) in compression.algorithms.iter().enumerate() {
        match algorithm.to_ascii_lowercase().as_str() {
            "gzip" => settings.gzip = true,
            "br" => settings.br = true,
            _ => problems.add(
                format!("compression.algorithms[{i}]"),
                format!("unknown algorithm {algorithm:?} (known: br, gzip)"),
            ),
        }
    }
    if compression.enabled && compression.algorithms.is_empty() {
        problems.add(
            "compression.algorithms",
            "list at least one algorithm, or set `enabled = false`",
        );
    }
    compression.enabled.then_some(settings)
}

/// Response compression (tower-http), outside the request id layer so that problem bodies,
/// rendered there, are compressed too. Bodies the upstream already encoded, images, gRPC and
/// event streams pass as they are.
pub fn layer(
    settings: CompressionSettings,
) -> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::{
        CompressionLayer, Predicate,
        predicate::{NotForContentType, SizeAbove},
    };
    CompressionLayer::new()
        .gzip(settings.gzip)
        .br(settings.br)
        .compress_when(
            SizeAbove::new(settings.min_size)
                .and(NotForContentType::GRPC)
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::SSE),
        )
}
