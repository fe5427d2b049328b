//! `.narinfo` parsing and signature checking against trusted keys.
//!
//! Parsing and the signed fingerprint (`1;<store path>;<sha256:nix32 NAR hash>;<NAR size>;<refs as
//! full paths, comma-separated, sorted>`) come from `nix-narinfo`; the tests below pin both against
//! a narinfo and key that Nix 2.8 produced. What this module adds is the trust policy: a narinfo
//! must describe the path that was asked for, carry a sha256 NAR hash, and have at least one
//! signature that verifies under a trusted key, otherwise the error says which keys were trusted
//! and which were present.

use std::collections::BTreeSet;

use nix_derivation::{NixHash, StoreDir, StorePath};
use nix_narinfo::{NarInfo, TrustedPublicKey};

use super::Error;

/// Public keys a binary cache's narinfos must be signed with, as Nix writes them (`name:base64`).
#[derive(Clone, Debug)]
pub struct TrustedKeys {
    keys: Vec<TrustedPublicKey>,
}

impl TrustedKeys {
    /// Parse keys in Nix's `trusted-public-keys` form, e.g. `cache.nixos.org-1:6NCH…=`.
    pub fn parse<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let keys = keys
            .into_iter()
            .map(|k| {
                let k = k.as_ref().trim();
                TrustedPublicKey::parse(k).map_err(|e| Error::InvalidTrustedKey {
                    key: k.to_owned(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Names of the trusted keys, for error messages and logs.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.name.clone()).collect()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A narinfo whose signature verified under a trusted key and which describes the requested path.
#[derive(Clone, Debug)]
pub struct VerifiedNarInfo {
    pub store_path: StorePath,
    /// Where the NAR file is, relative to the cache root unless it is an absolute URL.
    pub url: String,
    /// `none`, `xz`, `zstd`, … as written in the narinfo.
    pub compression: String,
    pub file_hash: Option<NixHash>,
    pub file_size: Option<u64>,
    /// Always sha256: the fingerprint Nix signs is only defined for sha256.
    pub nar_hash: NixHash,
    pub nar_size: u64,
    /// References other than the path itself (a self-reference needs no fetching).
    pub references: BTreeSet<StorePath>,
    /// Name of the key whose signature verified.
    pub signed_by: String,
}

/// Parse `text` (fetched from `url` for `expected`) and check it against `keys`.
pub fn verify_narinfo(
    text: &[u8],
    url: &str,
    expected: &StorePath,
    keys: &TrustedKeys,
) -> Result<VerifiedNarInfo, Error> {
    let store_path = expected.to_string();
    let invalid = |reason: String| Error::InvalidNarInfo {
        store_path: store_path.clone(),
        url: url.to_owned(),
        reason,
    };
    let store_dir = StoreDir::default();
    let info = NarInfo::parse_in(&store_dir, text).map_err(|e| invalid(e.to_string()))?;
    // The signature covers the path it names, so a cache could otherwise answer a request for one
    // path with a validly signed narinfo of another.
    if info.store_path() != expected {
        return Err(invalid(format!("describes {}", info.store_path())));
    }
    if !matches!(info.nar_hash(), NixHash::Sha256(_)) {
        return Err(invalid(format!(
            "NarHash {} is not sha256",
            info.nar_hash().to_nix_nixbase32_string()
        )));
    }

    let fingerprint = info.fingerprint(&store_dir);
    let present: Vec<String> = info
        .signatures()
        .iter()
        .map(|s| s.key_name.clone())
        .collect();
    let trusted_names = keys.names();
    let mut rejected = Vec::new();
    let mut signed_by = None;
    for sig in info.signatures() {
        if !trusted_names.contains(&sig.key_name) {
            continue;
        }
        match sig.verify(fingerprint.as_bytes(), &keys.keys) {
            Ok(true) => {
                signed_by = Some(sig.key_name.clone());
                break;
            }
            Ok(false) => rejected.push(format!("{} (signature does not verify)", sig.key_name)),
            Err(e) => rejected.push(format!("{} ({e})", sig.key_name)),
        }
    }
    let Some(signed_by) = signed_by else {
        let detail = if present.is_empty() {
            "it has no Sig: line".to_owned()
        } else if rejected.is_empty() {
            "no signature is by a trusted key name".to_owned()
        } else {
            format!(
                "rejected {}; the narinfo was altered or the key is wrong",
                rejected.join(", ")
            )
        };
        return Err(Error::Untrusted {
            store_path,
            url: url.to_owned(),
            detail,
            trusted: trusted_names,
            present,
        });
    };

    let references = info
        .references()
        .iter()
        .filter(|r| *r != expected)
        .cloned()
        .collect();
    Ok(VerifiedNarInfo {
        store_path: expected.clone(),
        url: info.url().to_owned(),
        compression: info.compression().as_str().to_owned(),
        file_hash: info.file_hash().cloned(),
        file_size: info.file_size(),
        nar_hash: info.nar_hash().clone(),
        nar_size: info.nar_size(),
        references,
        signed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::parse_store_path;

    // Written by `nix copy --to file://…?secret-key=…` (Nix 2.8) with key `test-key-1`.
    const PUBLIC: &str = "test-key-1:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=";
    const NARINFO: &str = "StorePath: /nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test
URL: nar/11jai746vzqdka3s60hkygkjljpsrvhxg2nxdnac4z3ncnkd853h.nar.xz
Compression: xz
FileHash: sha256:11jai746vzqdka3s60hkygkjljpsrvhxg2nxdnac4z3ncnkd853h
FileSize: 316
NarHash: sha256:1ikvx5xy2issqq3ai01jns4yqif75rypkzllzj3fni8cjcr9yin7
NarSize: 1288
References: z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep
Deriver: pc2qwp80rdbxvv8zfgmcj2m9258dhmh8-basalt-test.drv
Sig: test-key-1:lPejFw+QF1hneYfWrSwRLnqDNuKKGn1CwcK+mNPRbwyYecv0hJkP3PqIAe4Y8P9qM8oBBYuPzP1h+W7h6zmjCA==
";
    const PATH: &str = "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test";

    fn keys(k: &[&str]) -> TrustedKeys {
        TrustedKeys::parse(k).expect("keys")
    }

    #[test]
    fn fingerprint_matches_nix() {
        let info: NarInfo = NARINFO.parse().expect("parse");
        assert_eq!(
            info.fingerprint(&StoreDir::default()),
            "1;/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test;\
             sha256:1ikvx5xy2issqq3ai01jns4yqif75rypkzllzj3fni8cjcr9yin7;1288;\
             /nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep"
        );
    }

    #[test]
    fn accepts_a_narinfo_signed_by_nix() {
        let p = parse_store_path(PATH).expect("path");
        let v = verify_narinfo(NARINFO.as_bytes(), "u", &p, &keys(&[PUBLIC])).expect("verify");
        assert_eq!(v.signed_by, "test-key-1");
        assert_eq!(v.nar_size, 1288);
        assert_eq!(v.compression, "xz");
        assert_eq!(v.references.len(), 1);
    }

    #[test]
    fn rejections_name_trusted_and_present_keys() {
        let p = parse_store_path(PATH).expect("path");
        let other = "other-key:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=";
        let e = verify_narinfo(NARINFO.as_bytes(), "u", &p, &keys(&[other])).expect_err("name");
        let msg = e.to_string();
        assert!(msg.contains("trusted keys: [other-key]"), "{msg}");
        assert!(msg.contains("signatures present by: [test-key-1]"), "{msg}");

        let tampered = NARINFO.replace("NarSize: 1288", "NarSize: 1289");
        let e = verify_narinfo(tampered.as_bytes(), "u", &p, &keys(&[PUBLIC])).expect_err("t");
        assert!(e.to_string().contains("does not verify"), "{e}");

        let unsigned: String = NARINFO
            .lines()
            .filter(|l| !l.starts_with("Sig:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = verify_narinfo(unsigned.as_bytes(), "u", &p, &keys(&[PUBLIC])).expect_err("u");
        assert!(e.to_string().contains("no Sig: line"), "{e}");

        let q = parse_store_path("/nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep").expect("q");
        let e = verify_narinfo(NARINFO.as_bytes(), "u", &q, &keys(&[PUBLIC])).expect_err("p");
        assert!(e.to_string().contains("describes"), "{e}");
    }

    #[test]
    fn refuses_malformed_keys() {
        for bad in ["nocolon", ":AAAA", "k:not base64!", "k:AAAA"] {
            let e = TrustedKeys::parse([bad]).expect_err(bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
