//! `manifest.toml`: what an upgrade bundle carries (version, counter,
//! architecture, size and sha256 of each payload). Parsed strictly, only
//! after its signatures verified; every error names the TOML key and the
//! line it is on, as a config's do.

use crate::config::ConfigError;
use crate::config::locate::{at_path, p, serde_error, syntax_error};
use crate::text_position::line_col;
use serde::Deserialize;
use std::fmt;
use std::io::{self, Read};

/// The `format` every manifest of this layout carries.
pub const FORMAT: &str = "basalt-upgrade/1";
/// The largest `manifest.toml` a reader looks at.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// The architecture a bundle is for when `basaltctl upgrade create` is not told.
pub const DEFAULT_ARCH: &str = "x86_64";

/// A parsed, valid manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: Format,
    /// The image version the UKI's `.osrel` carries.
    pub version: Version,
    /// Monotonic: a node refuses a counter at or below its installed one.
    pub counter: u64,
    pub arch: Arch,
    pub uki: Payload,
    pub root: Payload,
}

/// The size and digest of one payload member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// `format = "basalt-upgrade/1"`, the only layout there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Format;

impl TryFrom<String> for Format {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == FORMAT {
            Ok(Format)
        } else {
            Err(format!(
                "`{s}` is not a bundle format this node reads; expected `{FORMAT}`"
            ))
        }
    }
}

/// An image version: what systemd-boot sorts entries by, so only the
/// characters of a version there: `[0-9A-Za-z._~^-]`, 1 to 64 of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Version(String);

impl TryFrom<String> for Version {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!(
                "version must be 1 to 64 characters, got {}",
                s.chars().count()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._~^-".contains(*c)))
        {
            return Err(format!(
                "version `{s}` contains {c:?}; use only 0-9 A-Z a-z . _ ~ ^ -"
            ));
        }
        Ok(Version(s))
    }
}

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A CPU architecture as Rust names it (`x86_64`, `aarch64`): `[a-z0-9_]`,
/// 1 to 32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Arch(String);

impl TryFrom<String> for Arch {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = (1..=32).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(Arch(s))
        } else {
            Err(format!(
                "arch `{s}` is not an architecture name such as `x86_64` or `aarch64`"
            ))
        }
    }
}

impl Arch {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256Digest(pub [u8; 32]);

impl TryFrom<String> for Sha256Digest {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let hex_digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = s.as_bytes();
        let mut out = [0u8; 32];
        if bytes.len() != 64 {
            return Err(format!(
                "sha256 must be 64 lowercase hex digits, got {} characters",
                s.chars().count()
            ));
        }
        for (i, pair) in bytes.chunks(2).enumerate() {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(h), Some(l)) => out[i] = h << 4 | l,
                _ => {
                    return Err("sha256 must be 64 lowercase hex digits (0-9, a-f)".to_string());
                }
            }
        }
        Ok(Sha256Digest(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl Sha256Digest {
    /// The digest and length of everything `r` yields, read in chunks.
    pub fn of_reader(mut r: impl Read) -> io::Result<(Sha256Digest, u64)> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.update(&buf[..n]);
            len += n as u64;
        }
        Ok((Sha256Digest(h.finalize().into()), len))
    }
}

/// One problem in a manifest, with the key path and the line:column it
/// points at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest.toml:{0}")]
pub struct ManifestError(pub ConfigError);

impl Manifest {
    /// Parse and validate a manifest's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError(ConfigError::document(format!(
                "manifest is {} bytes; the limit is {MAX_MANIFEST_BYTES} bytes",
                bytes.len()
            ))));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = e.valid_up_to();
            let (line, col) = line_col(&String::from_utf8_lossy(&bytes[..at]), at);
            ManifestError(ConfigError {
                path: "(document)".into(),
                line,
                col,
                message: "not valid UTF-8; a manifest is UTF-8 text".into(),
            })
        })?;
        let tree =
            toml::de::DeTable::parse(text).map_err(|e| ManifestError(syntax_error(text, &e)))?;
        let de = toml::Deserializer::from(tree.clone());
        let manifest: Manifest = serde_path_to_error::deserialize(de)
            .map_err(|e| ManifestError(serde_error(text, e)))?;
        if manifest.counter == 0 {
            return Err(ManifestError(at_path(
                text,
                &tree,
                p(&["counter"]),
                "counter must be at least 1 (every node has installed counter 0 or more, and refuses one that is not newer)".into(),
            )));
        }
        Ok(manifest)
    }

    /// The manifest as `basaltctl upgrade create` writes it: fixed key
    /// order and layout, so a bundle is byte-reproducible. Every value is
    /// validated to need no TOML escaping.
    pub fn to_toml(&self) -> String {
        format!(
            "format = \"{FORMAT}\"\nversion = \"{}\"\ncounter = {}\narch = \"{}\"\n\n[uki]\nsize = {}\nsha256 = \"{}\"\n\n[root]\nsize = {}\nsha256 = \"{}\"\n",
            self.version,
            self.counter,
            self.arch,
            self.uki.size,
            self.uki.sha256,
            self.root.size,
            self.root.sha256
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: Format,
            version: Version::try_from("0.3.0".to_string()).unwrap(),
            counter: 42,
            arch: Arch::try_from("x86_64".to_string()).unwrap(),
            uki: Payload {
                size: 12345,
                sha256: Sha256Digest([0xab; 32]),
            },
            root: Payload {
                size: 67890,
                sha256: Sha256Digest([0x01; 32]),
            },
        }
    }

    #[test]
    fn written_manifests_parse_back() {
        let m = sample();
        let text = m.to_toml();
        assert!(text.contains(&format!("sha256 = \"{}\"", "ab".repeat(32))));
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
    }

    /// Each error names the key and the line it is on.
    #[test]
    fn errors_carry_key_path_and_line() {
        let good = sample().to_toml();
        let cases = [
            (
                good.replace("counter = 42", "counter = 42\nextra = 1"),
                "4:1: extra: unknown key",
            ),
            (
                good.replace("basalt-upgrade/1", "basalt-upgrade/2"),
                "1:10: format: `basalt-upgrade/2` is not a bundle format",
            ),
            (
                good.replace("0.3.0", "0.3 0"),
                "2:11: version: version `0.3 0` contains ' '",
            ),
            (
                good.replace(&"ab".repeat(32), &"AB".repeat(32)),
                "8:10: uki.sha256: sha256 must be 64 lowercase hex digits",
            ),
            (
                good.replace("size = 67890\n", ""),
                "root.size: required key is missing",
            ),
            (
                good.replace("counter = 42", "counter = 0"),
                "3:11: counter: counter must be at least 1",
            ),
            (
                good.replace("counter = 42", "counter = -1"),
                "3:11: counter: invalid value",
            ),
            (good.replace("x86_64", "x86-64"), "4:8: arch: arch `x86-64`"),
            (good.replace("[root]", "[root"), "(syntax): invalid TOML"),
        ];
        for (text, want) in cases {
            let e = Manifest::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{e}\n  should contain: {want}");
            assert!(e.starts_with("manifest.toml:"), "{e}");
        }
        let big = vec![b'#'; MAX_MANIFEST_BYTES as usize + 1];
        assert!(
            Manifest::parse(&big)
                .unwrap_err()
                .to_string()
                .contains("the limit is 65536 bytes")
        );
    }

    #[test]
    fn versions_are_what_systemd_boot_sorts() {
        for ok in [
            "0.3.0",
            "1",
            "2025.01~rc1",
            "1.0-2^git.abc",
            &"9".repeat(64),
        ] {
            assert!(Version::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in ["", "1/2", "1 2", "é", &"9".repeat(65), "a\"b"] {
            assert!(Version::try_from(bad.to_string()).is_err(), "{bad:?}");
        }
    }
}
