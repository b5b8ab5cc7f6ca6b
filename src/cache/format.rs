//! An entry as bytes, the same on disk and in the bucket: `SFC1`, the length of its metadata
//! (u32, little-endian), the metadata (JSON) and the body.

use std::io::{self, Read};

use bytes::Bytes;

const MAGIC: &[u8; 4] = b"SFC1";
/// Largest metadata block read back (a page's Open Graph fields included).
pub const MAX_META: u32 = 1 << 20;

/// Bytes of the head before the metadata.
pub const HEAD: usize = 8;

/// The head of an entry whose metadata is `meta_len` bytes.
pub fn head(meta_len: u32) -> [u8; HEAD] {
    let mut h = [0u8; HEAD];
    h[..4].copy_from_slice(MAGIC);
    h[4..].copy_from_slice(&meta_len.to_le_bytes());
    h
}

/// The whole entry, as one buffer.
pub fn encode(meta: &[u8], body: &[u8]) -> io::Result<Vec<u8>> {
    let meta_len = meta_len(meta)?;
    let mut out = Vec::with_capacity(HEAD + meta.len() + body.len());
    out.extend_from_slice(&head(meta_len));
    out.extend_from_slice(meta);
    out.extend_from_slice(body);
    Ok(out)
}

/// The metadata's length, if it may be stored.
pub fn meta_len(meta: &[u8]) -> io::Result<u32> {
    u32::try_from(meta.len())
        .ok()
        .filter(|n| *n <= MAX_META)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "metadata too large"))
}

/// Reads an entry: its metadata and body.
pub fn decode(mut r: impl Read) -> io::Result<(Vec<u8>, Bytes)> {
    let mut head = [0u8; HEAD];
    r.read_exact(&mut head)?;
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
    if &head[..4] != MAGIC {
        return Err(bad("not a cache entry"));
    }
    let meta_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if meta_len > MAX_META {
        return Err(bad("metadata too large"));
    }
    let mut meta = vec![0u8; meta_len as usize];
    r.read_exact(&mut meta)?;
    let mut body = Vec::new();
    r.read_to_end(&mut body)?;
    Ok((meta, Bytes::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_an_entry() {
        let bytes = encode(b"{\"a\":1}", b"image").expect("encode");
        let (meta, body) = decode(bytes.as_slice()).expect("decode");
        assert_eq!(
            (meta.as_slice(), body.as_ref()),
            (&b"{\"a\":1}"[..], &b"image"[..])
        );
        assert!(decode(&b"PNG\x00\x00\x00\x00\x00"[..]).is_err());
        assert!(decode(&bytes[..10]).is_err(), "a torn entry");
        let mut huge = head(MAX_META + 1).to_vec();
        huge.extend_from_slice(b"x");
        assert!(decode(huge.as_slice()).is_err());
    }
}
