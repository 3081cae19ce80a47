//! Reading whole bodies where the gateway must look inside them (validation, transforms,
//! aggregation, caching), within bounds that keep that safe.

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderValue;
use http_body::Body as _;
use http_body_util::BodyExt;
use std::io::Read;

use crate::error::Error;

/// The content coding of a body (RFC 9110 §8.4.1), as far as the gateway can decode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Brotli,
}

impl Coding {
    /// `None`: a coding the gateway cannot decode (or several stacked).
    pub fn of(content_encoding: Option<&HeaderValue>) -> Option<Coding> {
        let Some(value) = content_encoding else {
            return Some(Coding::Identity);
        };
        let value = value.to_str().ok()?.trim();
        if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Some(Coding::Identity)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else if value.eq_ignore_ascii_case("br") {
            Some(Coding::Brotli)
        } else {
            None
        }
    }
}

/// Decodes a body, refusing one that would expand beyond `limit` bytes (for requests the body
/// limit applies to what the gateway must hold, so a small compressed bomb is 413, not an OOM).
pub fn decode(
    content_encoding: Option<&HeaderValue>,
    bytes: Bytes,
    limit: u64,
) -> Result<Bytes, Error> {
    let coding = Coding::of(content_encoding).ok_or(Error::UnsupportedContentEncoding)?;
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Identity => return Ok(bytes),
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&bytes[..])),
        Coding::Brotli => Box::new(brotli_decompressor::Decompressor::new(&bytes[..], 8192)),
    };
    let mut decoded = Vec::with_capacity(bytes.len() * 4);
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|e| Error::BadRequestBody(Box::new(e)))?;
    if decoded.len() as u64 > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    Ok(Bytes::from(decoded))
}

/// What [`read_up_to`] found.
pub enum Buffered {
    /// The whole body, at most the cap.
    Whole(Bytes),
    /// A larger body, given back intact (what was read first included) to be streamed on.
    TooLarge(Body),
}

/// Reads `body` whole when it is at most `cap` bytes. A body announcing a larger size is
/// handed back unread; one that grows past the cap while read is handed back reassembled.
/// Trailers are dropped either way; a body that fails is an incomplete upstream response.
pub async fn read_up_to(body: Body, cap: usize) -> Result<Buffered, Error> {
    if body.size_hint().lower() > cap as u64 {
        return Ok(Buffered::TooLarge(body));
    }
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Error::IncompleteResponse)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        chunks.push(data);
        if total > cap {
            let read = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, axum::Error>));
            let rest = body.into_data_stream();
            return Ok(Buffered::TooLarge(Body::from_stream(read.chain(rest))));
        }
    }
    Ok(Buffered::Whole(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = bytes::BytesMut::with_capacity(total);
            for chunk in chunks {
                joined.extend_from_slice(&chunk);
            }
            joined.freeze()
        }
    }))
}

/// `application/json` or any `+json` structured syntax suffix (RFC 6839).
pub fn is_json(content_type: Option<&http::HeaderValue>) -> bool {
    let Some(essence) = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn json_media_types_include_structured_suffixes() {
        let json = |v: &'static str| is_json(Some(&HeaderValue::from_static(v)));
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(json("application/merge-patch+json"));
        assert!(!json("text/plain"));
        assert!(!is_json(None));
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    #[test]
    fn gzip_bodies_are_decoded_and_bombs_refused() {
        let gz = HeaderValue::from_static("gzip");
        let decoded = decode(Some(&gz), gzip(b"{\"a\":1}"), 100).unwrap();
        assert_eq!(&decoded[..], b"{\"a\":1}");
        let bomb = gzip(&vec![b'0'; 1 << 20]);
        assert!(bomb.len() < 10_000);
        assert!(matches!(
            decode(Some(&gz), bomb, 1000),
            Err(Error::PayloadTooLarge { limit: 1000 })
        ));
    }

    #[test]
    fn unknown_codings_are_refused_and_garbage_is_a_bad_body() {
        let zstd = HeaderValue::from_static("zstd");
        assert!(matches!(
            decode(Some(&zstd), Bytes::from_static(b"x"), 10),
            Err(Error::UnsupportedContentEncoding)
        ));
        let gz = HeaderValue::from_static("gzip");
        assert!(matches!(
            decode(Some(&gz), Bytes::from_static(b"not gzip"), 10),
            Err(Error::BadRequestBody(_))
        ));
        assert_eq!(
            Coding::of(Some(&HeaderValue::from_static("gzip, br"))),
            None,
            "stacked codings are not decoded"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_cap_comes_back_whole() {
        let chunks = ["ab", "cd", "ef"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let Buffered::TooLarge(body) = read_up_to(body, 3).await.unwrap() else {
            panic!("6 bytes are over a cap of 3");
        };
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcdef");
        let Buffered::Whole(bytes) = read_up_to(Body::from("abc"), 3).await.unwrap() else {
            panic!("3 bytes fit a cap of 3");
        };
        assert_eq!(&bytes[..], b"abc");
    }
}
