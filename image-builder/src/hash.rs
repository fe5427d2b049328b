//! sha256 of files and buffers, as lowercase hex.
//!
//! `ring` rather than `sha2`: its SHA-256 is assembly, as fast in a debug
//! build as in a release one, and a build hashes every file of both images
//! (hundreds of MB), which unoptimised `sha2` makes the slowest step by far.

use crate::error::{Error, Result};
use ring::digest::{Context, SHA256, digest};
use std::io::Read;
use std::path::Path;

/// (hex sha256, size in bytes) of the file at `path`, streamed.
pub fn file(path: &Path) -> Result<(String, u64)> {
    let f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    reader(f).map_err(Error::io("reading", path))
}

/// (hex sha256, byte count) of everything `r` yields.
pub fn reader(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(ctx.finish()), size))
}

pub fn bytes(data: &[u8]) -> String {
    hex::encode(digest(&SHA256, data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(
            super::bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (hex, n) = super::reader(&b"abc"[..]).unwrap();
        assert_eq!(
            (hex.as_str(), n),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                3
            )
        );
    }
}
