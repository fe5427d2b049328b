//! The node's whole path from untrusted bytes to an applied config:
//! signature verification, then parsing and validation.
//!
//! Input: `DOCUMENT [SEPARATOR SIGNATURES]`. Without a separator the document is
//! signed here by the trusted admin key, so mutations of valid configs reach the
//! parser and validator; with one, the fuzzer controls the signature file too.
//!
//! Properties:
//! - signed here: the document verifies exactly when it parses and its
//!   generation is newer than the node's (0), and then verification returns
//!   the parser's config; every other outcome is the parser's own error or
//!   the replay refusal, never a signature failure (except an oversized
//!   document, which both refuse);
//! - fuzzer-signed: whatever verifies also parses, to the same config, with a
//!   valid generation;
//! - rendering parse errors never panics and every error is located.
#![no_main]

use basalt_api::config::MachineConfig;
use basalt_api::signed::{SignedConfigError, verify_and_parse};
use basalt_api::sshkey::PrivateKey;
use basalt_api::trust::{TrustRoots, VerifyError};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: &[u8] = b"\n\0SIG\0\n";
/// The node's current generation in this target: a fresh node.
const CURRENT: u64 = 0;

fuzz_target!(|data: &[u8]| {
    let admin = PrivateKey::from_seed(&[1; 32], "fuzz-admin");
    let reader = PrivateKey::from_seed(&[3; 32], "fuzz-reader");
    let roots = TrustRoots::new(vec![admin.public()], vec![reader.public()], 1)
        .expect("one admin, one reader, threshold 1");

    let (doc, sigs, signed_here) = match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR)
    {
        Some(at) => (&data[..at], data[at + SEPARATOR.len()..].to_vec(), false),
        None => (
            data,
            sshsig::sign(&admin, CONFIG_NAMESPACE, data).into_bytes(),
            true,
        ),
    };
    let verified = verify_and_parse(doc, &sigs, &roots, CURRENT);
    let parsed = MachineConfig::parse(doc);

    if let Ok(v) = &verified {
        let config = parsed.as_ref().expect("a verified config parses");
        assert_eq!(&v.config, config, "verification returns the parsed config");
        assert!(
            config.generation > CURRENT,
            "a verified generation is newer"
        );
    }
    if signed_here {
        match (&verified, &parsed) {
            (Ok(_), Ok(_)) => {}
            (Err(SignedConfigError::Replay { generation, .. }), Ok(c)) => {
                assert_eq!(*generation, c.generation);
                assert!(c.generation <= CURRENT, "refused a newer generation");
            }
            (Err(SignedConfigError::Invalid(errors)), Err(parse_errors)) => {
                assert_eq!(errors, parse_errors, "the same parse errors");
            }
            (Err(SignedConfigError::Signature(VerifyError::DocumentTooLarge(_))), Err(_)) => {}
            (v, p) => panic!("signed by the trusted admin: verify {v:?} vs parse {p:?}"),
        }
    }
    if let Err(errs) = &parsed {
        // Rendering must not panic, and every error is located.
        let _ = errs.render("fuzz.toml");
        assert!(!errs.0.is_empty());
    }
});
