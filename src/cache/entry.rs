//! A cached answer and its byte encoding for Redis.

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub stored_at_ms: u64,
    pub expires_at_ms: u64,
}

/// The encoding's first bytes; a different one (an older gateway's) is a miss.
const MAGIC: &[u8; 4] = b"PFC1";

impl Entry {
    /// Bytes held in memory, for the store's bound: body, headers, and a fixed overhead.
    pub fn size(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        (self.body.len() + headers + 128) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() as usize);
        out.put_slice(MAGIC);
        out.put_u16(self.status.as_u16());
        out.put_u64(self.stored_at_ms);
        out.put_u64(self.expires_at_ms);
        out.put_u32(self.headers.len() as u32);
        for (name, value) in &self.headers {
            out.put_u16(name.as_str().len() as u16);
            out.put_slice(name.as_str().as_bytes());
            out.put_u32(value.len() as u32);
            out.put_slice(value.as_bytes());
        }
        out.put_slice(&self.body);
        out
    }

    /// `None` for anything that is not a well-formed entry.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        if input.len() < MAGIC.len() + 22 || &input[..4] != MAGIC {
            return None;
        }
        input.advance(4);
        let status = StatusCode::from_u16(input.get_u16()).ok()?;
        let stored_at_ms = input.get_u64();
        let expires_at_ms = input.get_u64();
        let count = input.get_u32();
        let mut headers = HeaderMap::new();
        for _ in 0..count {
            let name = take(&mut input, 2)?;
            let name = HeaderName::from_bytes(name).ok()?;
            let value = take(&mut input, 4)?;
            headers.append(name, HeaderValue::from_bytes(value).ok()?);
        }
        Some(Self {
            status,
            headers,
            body: Bytes::copy_from_slice(input),
            stored_at_ms,
            expires_at_ms,
        })
    }
}

/// A length-prefixed field (the length in `width` bytes).
fn take<'a>(input: &mut &'a [u8], width: usize) -> Option<&'a [u8]> {
    if input.len() < width {
        return None;
    }
    let length = match width {
        2 => input.get_u16() as usize,
        _ => input.get_u32() as usize,
    };
    if input.len() < length {
        return None;
    }
    let (field, rest) = input.split_at(length);
    *input = rest;
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_encoding_and_garbage_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let entry = Entry {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(b"{\"a\":1}"),
            stored_at_ms: 1,
            expires_at_ms: 2,
        };
        let decoded = Entry::decode(&entry.encode()).unwrap();
        assert_eq!(decoded.status, 404);
        assert_eq!(decoded.headers, entry.headers);
        assert_eq!(decoded.body, entry.body);
        assert_eq!((decoded.stored_at_ms, decoded.expires_at_ms), (1, 2));
        let encoded = entry.encode();
        assert!(
            Entry::decode(&encoded[..30]).is_none(),
            "cut inside a header"
        );
        assert!(Entry::decode(b"not an entry at all, really").is_none());
    }
}
