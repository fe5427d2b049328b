//! The node's whole path from untrusted bytes to an applied config:
//! signature verification, then parsing and validation.
//!
//! Input: `DOCUMENT [SEPARATOR SIGNATURES]`. Without a separator the document is
//! signed here by the trusted key, so mutations of valid configs reach the
//! parser and validator; with one, the fuzzer controls the signature file too.
#![no_main]

use basalt_api::config::MachineConfig;
use basalt_api::signed::verify_and_parse;
use basalt_api::sshkey::PrivateKey;
use basalt_api::trust::TrustRoots;
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: &[u8] = b"\n\0SIG\0\n";

fuzz_target!(|data: &[u8]| {
    let admin = PrivateKey::from_seed(&[1; 32], "fuzz-admin");
    let reader = PrivateKey::from_seed(&[3; 32], "fuzz-reader");
    let policy = TrustRoots::new(vec![admin.public()], vec![reader.public()], 1)
        .expect("one admin, one reader, threshold 1");

    let (doc, sigs) = match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(at) => (&data[..at], data[at + SEPARATOR.len()..].to_vec()),
        None => (data, sshsig::sign(&admin, CONFIG_NAMESPACE, data).into_bytes()),
    };
    let verified = verify_and_parse(doc, &sigs, &policy, 0);
    let parsed = MachineConfig::parse(doc);
    // Whatever verification decided, it must agree with the parser on validity
    // whenever the signatures were good.
    if let Ok(v) = &verified {
        assert_eq!(parsed.as_ref().ok(), Some(&v.config));
    }
    if let Err(errs) = &parsed {
        // Rendering must not panic, and every error is located.
        let _ = errs.render("fuzz.toml");
        assert!(!errs.0.is_empty());
    }
});
