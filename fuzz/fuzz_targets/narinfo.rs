//! `.narinfo` files from a binary cache, checked by image-builder
//! (`image_builder::nix::verify_narinfo`) against a trusted key.
//!
//! Input: a narinfo. Seeds are written by Nix 2.8 (`nix copy --to
//! file://…?secret-key=…`) with the fuzz-only key [`TRUSTED`], so mutations
//! start from genuinely signed narinfos.
//!
//! Properties:
//! - parsing and checking never panic;
//! - a narinfo is accepted only with a `Sig:` line by the trusted key whose
//!   ed25519 signature verifies (checked here with `ed25519-dalek`, apart
//!   from the parser) over the fingerprint Nix signs, built here from what
//!   the check returned: `1;<path>;<NarHash>;<NarSize>;<references>`. So
//!   what the builder goes on to fetch and unpack (path, NAR hash and size,
//!   references) is exactly what the key signed;
//! - the accepted narinfo describes the path that was asked for, with a
//!   sha256 NAR hash and without itself among the references to fetch.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use image_builder::nix::{
    NixHash, StorePath, TrustedKeys, parse_store_path, store_path_string, verify_narinfo,
};
use libfuzzer_sys::fuzz_target;

/// The public half of the key `fuzz/make-seeds` signs with.
const TRUSTED: &str = "basalt-fuzz-1:V3GsDXQNWOkLNtU3uD5y1xxhTiqLHg5kD3/qeIVro1g=";
/// Asked for when the input names no parsable store path.
const FALLBACK: &str = "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test";

/// The path the narinfo says it describes, as a fetcher would have asked.
fn requested(text: &str) -> StorePath {
    text.lines()
        .find_map(|l| l.strip_prefix("StorePath:"))
        .and_then(|p| parse_store_path(p.trim()).ok())
        .unwrap_or_else(|| parse_store_path(FALLBACK).expect("a valid store path"))
}

/// Nix's signed fingerprint; references as full paths, sorted as strings.
fn fingerprint(path: &StorePath, hash: &NixHash, size: u64, refs: &[&StorePath]) -> String {
    let mut refs: Vec<String> = refs.iter().map(|r| store_path_string(r)).collect();
    refs.sort();
    format!(
        "1;{};{};{size};{}",
        store_path_string(path),
        hash.to_nix_nixbase32_string(),
        refs.join(",")
    )
}

/// Whether some `Sig:` line of `text` by the trusted key verifies over `message`.
fn signed(text: &str, key: &VerifyingKey, message: &str) -> bool {
    let (name, _) = TRUSTED.split_once(':').expect("name:key");
    text.lines()
        .filter_map(|l| l.strip_prefix("Sig:"))
        .filter_map(|s| s.trim().split_once(':'))
        .filter(|(n, _)| *n == name)
        .filter_map(|(_, b64)| STANDARD.decode(b64.trim()).ok())
        .filter_map(|raw| Signature::from_slice(&raw).ok())
        .any(|sig| key.verify_strict(message.as_bytes(), &sig).is_ok())
}

fuzz_target!(|data: &[u8]| {
    let keys = TrustedKeys::parse([TRUSTED]).expect("the fuzz key parses");
    let text = String::from_utf8_lossy(data);
    let expected = requested(&text);
    let Ok(info) = verify_narinfo(data, "fuzz.narinfo", &expected, &keys) else {
        return;
    };
    assert_eq!(info.store_path, expected);
    assert!(matches!(info.nar_hash, NixHash::Sha256(_)));
    assert!(
        !info.references.contains(&expected),
        "itself among the references"
    );
    assert_eq!(info.signed_by, "basalt-fuzz-1");

    let raw = STANDARD
        .decode(TRUSTED.split_once(':').expect("name:key").1)
        .expect("base64");
    let key = VerifyingKey::from_bytes(&raw.try_into().expect("32 bytes")).expect("a point");
    // The references as signed: the path itself included when it refers to
    // itself (which the check leaves out of the fetch list).
    let others: Vec<&StorePath> = info.references.iter().collect();
    let mut with_self = others.clone();
    with_self.push(&expected);
    let accepted_as_signed = [others, with_self].iter().any(|refs| {
        let fp = fingerprint(&expected, &info.nar_hash, info.nar_size, refs);
        signed(&text, &key, &fp)
    });
    assert!(
        accepted_as_signed,
        "accepted a narinfo the key did not sign: {info:?}"
    );
});
