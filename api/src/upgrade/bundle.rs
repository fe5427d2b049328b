//! The bundle file: an uncompressed POSIX ustar archive of exactly four
//! regular files, in this order: `manifest.toml`, `manifest.toml.sig`,
//! `uki.efi`, `root.squashfs`, then the two zero blocks that end an archive.
//!
//! The reader is strict and streaming (`std::io::Read`, one pass, nothing
//! buffered but the two small head members): anything else, in any other
//! order, a bad header checksum, truncated data or trailing bytes that are
//! not tar's zero padding is an error naming the member and byte offset.
//! Mode, owner and mtime of the members are not checked: nothing is
//! extracted with them; the manifest's signature covers what matters.

use super::manifest::{MAX_MANIFEST_BYTES, Manifest, Payload, Sha256Digest};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

pub const MANIFEST_MEMBER: &str = "manifest.toml";
pub const SIGNATURE_MEMBER: &str = "manifest.toml.sig";
pub const UKI_MEMBER: &str = "uki.efi";
pub const ROOT_MEMBER: &str = "root.squashfs";
/// The largest `manifest.toml.sig` a reader looks at.
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;
/// The largest member ustar can describe (11 octal digits of size).
pub const MAX_MEMBER_BYTES: u64 = 0o777_7777_7777;
/// Where the archive's end is reported.
const END: &str = "end of archive";

const BLOCK: u64 = 512;
const MEMBERS: [&str; 4] = [MANIFEST_MEMBER, SIGNATURE_MEMBER, UKI_MEMBER, ROOT_MEMBER];

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle: {member} (header at byte {offset}): {reason}")]
    Malformed {
        member: &'static str,
        offset: u64,
        reason: String,
    },
    #[error(
        "bundle: {member}: the file ends at byte {offset}, inside this member (truncated upload or copy?)"
    )]
    Truncated { member: &'static str, offset: u64 },
    #[error(
        "bundle: {member} is {got} bytes but the signed manifest says {want}: not the payload that was signed"
    )]
    SizeMismatch {
        member: &'static str,
        got: u64,
        want: u64,
    },
    #[error(
        "bundle: {member} has sha256 {got} but the signed manifest says {want}: not the payload that was signed (corrupted or tampered)"
    )]
    HashMismatch {
        member: &'static str,
        got: Sha256Digest,
        want: Sha256Digest,
    },
    #[error("bundle: writing {member}: {reason}")]
    Write {
        member: &'static str,
        reason: String,
    },
    #[error("bundle: reading at byte {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

/// Where one member's data lies in the bundle file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset of the first data byte (after its header).
    pub offset: u64,
    pub size: u64,
}

/// The two payloads' places in the bundle, checked against the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payloads {
    pub uki: Extent,
    pub root: Extent,
}

/// The two small members a bundle starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `manifest.toml`'s exact bytes (what the signatures cover).
    pub manifest: Vec<u8>,
    /// `manifest.toml.sig`: armored SSHSIG blocks, empty when unsigned.
    pub signatures: Vec<u8>,
    /// The manifest member's mtime, kept when a bundle is rewritten.
    pub mtime: u64,
}

/// A bundle read front to back.
pub struct BundleReader<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> BundleReader<R> {
    /// Read the manifest and signature members; the reader is then at the
    /// first payload's header.
    pub fn open(inner: R) -> Result<(Self, Head), BundleError> {
        let mut r = Self { inner, offset: 0 };
        let (size, mtime) = r.header(MANIFEST_MEMBER, 0)?;
        let manifest = r.small(MANIFEST_MEMBER, size, MAX_MANIFEST_BYTES)?;
        let (size, _) = r.header(SIGNATURE_MEMBER, 1)?;
        let signatures = r.small(SIGNATURE_MEMBER, size, MAX_SIGNATURE_BYTES)?;
        Ok((
            r,
            Head {
                manifest,
                signatures,
                mtime,
            },
        ))
    }

    /// Stream both payloads, checking each one's size and sha256 against
    /// `manifest`, then the end of the archive.
    pub fn check_payloads(mut self, manifest: &Manifest) -> Result<Payloads, BundleError> {
        let uki = self.payload(UKI_MEMBER, 2, &manifest.uki)?;
        let root = self.payload(ROOT_MEMBER, 3, &manifest.root)?;
        self.end()?;
        Ok(Payloads { uki, root })
    }

    /// Fill `buf`, or say where the file ended inside `member`.
    fn fill(&mut self, member: &'static str, buf: &mut [u8]) -> Result<(), BundleError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(BundleError::Truncated {
                        member,
                        offset: self.offset + done as u64,
                    });
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(BundleError::Io {
                        offset: self.offset + done as u64,
                        source,
                    });
                }
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The header of member number `index`, which must be `want`: its size
    /// and mtime.
    fn header(&mut self, want: &'static str, index: usize) -> Result<(u64, u64), BundleError> {
        let at = self.offset;
        let mut h = [0u8; BLOCK as usize];
        self.fill(want, &mut h)?;
        let bad = |reason: String| BundleError::Malformed {
            member: want,
            offset: at,
            reason,
        };
        if h.iter().all(|&b| b == 0) {
            return Err(bad(format!(
                "the archive ends after {index} member(s); a bundle holds {} in this order",
                MEMBERS.join(", ")
            )));
        }
        let stored =
            octal(&h[148..156]).ok_or_else(|| bad("header checksum field is not octal".into()))?;
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(bad(format!(
                "header checksum is {stored:o} but the header sums to {sum:o} (corrupted?)"
            )));
        }
        if &h[257..263] != b"ustar\0" || &h[263..265] != b"00" {
            return Err(bad(
                "not a POSIX ustar header (write bundles with `basaltctl upgrade create` or `tar --format=ustar`)".into(),
            ));
        }
        let name = cstr(&h[0..100]);
        let prefix = cstr(&h[345..500]);
        if name != want.as_bytes() || !prefix.is_empty() {
            let mut found = String::from_utf8_lossy(prefix).into_owned();
            if !found.is_empty() {
                found.push('/');
            }
            found.push_str(&String::from_utf8_lossy(name));
            return Err(bad(format!(
                "found member `{found}` where member {} must be `{want}` (a bundle holds {} in this order)",
                index + 1,
                MEMBERS.join(", ")
            )));
        }
        if !matches!(h[156], b'0' | 0) {
            return Err(bad(format!(
                "not a regular file (tar type {:?})",
                char::from(h[156])
            )));
        }
        let size = octal(&h[124..136]).ok_or_else(|| bad("size field is not octal".into()))?;
        let mtime = octal(&h[136..148]).ok_or_else(|| bad("mtime field is not octal".into()))?;
        Ok((size, mtime))
    }

    /// A head member's data, at most `max` bytes, and its padding.
    fn small(&mut self, member: &'static str, size: u64, max: u64) -> Result<Vec<u8>, BundleError> {
        if size > max {
            return Err(BundleError::Malformed {
                member,
                offset: self.offset - BLOCK,
                reason: format!("{size} bytes; the limit is {max}"),
            });
        }
        let mut data = vec![0u8; size as usize];
        self.fill(member, &mut data)?;
        self.padding(member, size)?;
        Ok(data)
    }

    /// The zeros that round a member's data up to whole blocks.
    fn padding(&mut self, member: &'static str, size: u64) -> Result<(), BundleError> {
        let mut pad = vec![0u8; ((BLOCK - size % BLOCK) % BLOCK) as usize];
        let at = self.offset;
        self.fill(member, &mut pad)?;
        if let Some(i) = pad.iter().position(|&b| b != 0) {
            return Err(BundleError::Malformed {
                member,
                offset: at + i as u64,
                reason: "non-zero bytes in the padding after the member's data".into(),
            });
        }
        Ok(())
    }

    fn payload(
        &mut self,
        member: &'static str,
        index: usize,
        want: &Payload,
    ) -> Result<Extent, BundleError> {
        let (size, _) = self.header(member, index)?;
        if size != want.size {
            return Err(BundleError::SizeMismatch {
                member,
                got: size,
                want: want.size,
            });
        }
        let offset = self.offset;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            self.fill(member, &mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        let got = Sha256Digest(h.finalize().into());
        if got != want.sha256 {
            return Err(BundleError::HashMismatch {
                member,
                got,
                want: want.sha256,
            });
        }
        self.padding(member, size)?;
        Ok(Extent { offset, size })
    }

    /// Two zero blocks, then nothing but zero blocks (tar pads archives to
    /// whole records) until the end of the file.
    fn end(&mut self) -> Result<(), BundleError> {
        let at = self.offset;
        let mut two = [0u8; 2 * BLOCK as usize];
        self.fill(END, &mut two)?;
        if two.iter().any(|&b| b != 0) {
            return Err(BundleError::Malformed {
                member: END,
                offset: at,
                reason: format!(
                    "expected the two zero blocks that end the archive after {ROOT_MEMBER}; a bundle holds exactly four members"
                ),
            });
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut trailing = 0u64;
        loop {
            let n = match self.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(BundleError::Io {
                        offset: self.offset,
                        source,
                    });
                }
            };
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(BundleError::Malformed {
                    member: END,
                    offset: self.offset + i as u64,
                    reason: "trailing data after the end of the archive".into(),
                });
            }
            self.offset += n as u64;
            trailing += n as u64;
        }
        if !trailing.is_multiple_of(BLOCK) {
            return Err(BundleError::Malformed {
                member: END,
                offset: self.offset,
                reason: format!(
                    "{trailing} bytes of padding after the end of the archive, not whole 512-byte blocks"
                ),
            });
        }
        Ok(())
    }
}

/// A NUL-terminated header field.
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// An octal header field: optional leading spaces, digits, then NULs or
/// spaces. Base-256 (GNU's large-number extension) is not ustar.
fn octal(field: &[u8]) -> Option<u64> {
    let s = field.iter().position(|&b| b != b' ')?;
    let digits = &field[s..];
    let end = digits
        .iter()
        .position(|&b| b == 0 || b == b' ')
        .unwrap_or(digits.len());
    if end == 0 || digits[end..].iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    digits[..end].iter().try_fold(0u64, |acc, &b| {
        if (b'0'..=b'7').contains(&b) {
            acc.checked_mul(8)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A payload to write: `size` bytes from `reader`.
pub struct PayloadSource<'a> {
    pub reader: &'a mut dyn Read,
    pub size: u64,
}

/// One ustar header: a regular file, mode 0644, owner 0:0, no user names.
fn header_block(name: &str, size: u64, mtime: u64) -> [u8; BLOCK as usize] {
    let mut h = [0u8; BLOCK as usize];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(format!("{:011o}\0", mtime.min(MAX_MEMBER_BYTES)).as_bytes());
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Write a bundle: the same inputs give the same bytes.
pub fn write_bundle<'a>(
    out: &mut dyn Write,
    manifest: &[u8],
    signatures: &[u8],
    uki: PayloadSource<'a>,
    root: PayloadSource<'a>,
    mtime: u64,
) -> Result<(), BundleError> {
    let io = |member: &'static str| {
        move |e: io::Error| BundleError::Write {
            member,
            reason: e.to_string(),
        }
    };
    let limit = |member: &'static str, size: u64, max: u64| {
        if size > max {
            Err(BundleError::Write {
                member,
                reason: format!("{size} bytes; the limit is {max}"),
            })
        } else {
            Ok(())
        }
    };
    limit(MANIFEST_MEMBER, manifest.len() as u64, MAX_MANIFEST_BYTES)?;
    limit(
        SIGNATURE_MEMBER,
        signatures.len() as u64,
        MAX_SIGNATURE_BYTES,
    )?;
    limit(UKI_MEMBER, uki.size, MAX_MEMBER_BYTES)?;
    limit(ROOT_MEMBER, root.size, MAX_MEMBER_BYTES)?;
    let pad = |size: u64| vec![0u8; ((BLOCK - size % BLOCK) % BLOCK) as usize];
    for (member, data) in [(MANIFEST_MEMBER, manifest), (SIGNATURE_MEMBER, signatures)] {
        out.write_all(&header_block(member, data.len() as u64, mtime))
            .map_err(io(member))?;
        out.write_all(data).map_err(io(member))?;
        out.write_all(&pad(data.len() as u64)).map_err(io(member))?;
    }
    for (member, src) in [(UKI_MEMBER, uki), (ROOT_MEMBER, root)] {
        out.write_all(&header_block(member, src.size, mtime))
            .map_err(io(member))?;
        let copied =
            io::copy(&mut (&mut *src.reader).take(src.size), &mut *out).map_err(io(member))?;
        let mut probe = [0u8; 1];
        let more = src.reader.read(&mut probe).map_err(io(member))?;
        if copied != src.size || more != 0 {
            return Err(BundleError::Write {
                member,
                reason: format!(
                    "expected {} bytes, the source {} (did the file change while it was read?)",
                    src.size,
                    if more != 0 {
                        "has more".to_string()
                    } else {
                        format!("gave {copied}")
                    }
                ),
            });
        }
        out.write_all(&pad(src.size)).map_err(io(member))?;
    }
    out.write_all(&[0u8; 2 * BLOCK as usize]).map_err(io(END))?;
    Ok(())
}
