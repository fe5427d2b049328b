//! The SSH wire encoding (RFC 4251 §5): big-endian `uint32` and
//! length-prefixed `string`s, shared by public keys, private keys and SSHSIG.

/// Why a wire buffer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("{0} trailing bytes after the last field")]
    Trailing(usize),
    #[error("field at offset {0} is not valid UTF-8")]
    NotUtf8(usize),
}

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let rest = self.buf.len() - self.pos;
        if n > rest {
            return Err(WireError::Truncated {
                offset: self.pos,
                needed: n - rest,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.raw(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn string(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.raw(len)
    }

    pub fn utf8(&mut self) -> Result<&'a str, WireError> {
        let at = self.pos;
        let s = self.string()?;
        std::str::from_utf8(s).map_err(|_| WireError::NotUtf8(at))
    }

    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn finish(&self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub fn string(&mut self, b: &[u8]) -> &mut Self {
        // Every caller writes fields far below 4 GiB (keys, hashes, names).
        self.u32(b.len() as u32).raw(b)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::new();
        w.string(b"ssh-ed25519").u32(7);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.utf8().unwrap(), "ssh-ed25519");
        assert_eq!(r.u32().unwrap(), 7);
        r.finish().unwrap();

        let mut r = Reader::new(&bytes[..5]);
        assert_eq!(
            r.string(),
            Err(WireError::Truncated {
                offset: 4,
                needed: 10
            })
        );
    }
}
