//! The node's whole path from untrusted bytes to an applied config:
//! signature verification, then parsing and validation.
//!
//! Input: `DOCUMENT [SEPARATOR SIGNATURES]`. Without a separator the document is
//! signed here by the trusted admin key, so mutations of valid configs reach the
//! parser and validator; with one, the fuzzer controls the signature file too.
//!
//! Properties:
//! - signed here: the document verifies exactly when it parses, its
//!   generation is newer than the node's (0) and its `[scope]` admits this
//!   node at this time, and then verification returns the parser's config;
//!   every other outcome is the parser's own error or the replay or scope
//!   refusal that the parsed config explains, never a signature failure
//!   (except an oversized document, which both refuse);
//! - fuzzer-signed: whatever verifies also parses, to the same config, with a
//!   valid generation;
//! - rendering parse errors never panics and every error is located.
#![no_main]

use basalt_api::config::MachineConfig;
use basalt_api::scope::{ImagePolicy, NodeIdentity, TrustedTime};
use basalt_api::signed::{Admission, SignedConfigError, verify_and_parse};
use basalt_api::sshkey::PrivateKey;
use basalt_api::trust::{TrustRoots, VerifyError};
use basalt_api::{CONFIG_NAMESPACE, sshsig};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: &[u8] = b"\n\0SIG\0\n";
/// The node's current generation in this target: a fresh node.
const CURRENT: u64 = 0;
/// The node's trusted time: 2026-12-01T00:00:00Z.
const NOW: i64 = 1_796_083_200;

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
    let node = NodeIdentity::from_firmware(
        Some("4c4c4544-0042-3510-8052-b4c04f4e4232"),
        Some("CZ1234ABCD"),
        vec![basalt_api::config::MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])],
    );
    let now = TrustedTime::new(NOW, NOW, true);
    let admission = Admission {
        trust: &roots,
        current_generation: CURRENT,
        image: ImagePolicy {
            min_generation: 0,
            built_at: NOW,
        },
        node: Some((&node, now)),
    };
    let verified = verify_and_parse(doc, &sigs, &admission);
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
            (Ok(_), Ok(c)) => {
                assert!(c.scope.selects(&node), "accepted a config for other nodes");
                assert!(c.scope.not_after_unix().is_none_or(|t| t >= NOW), "accepted an expired config");
            }
            (Err(SignedConfigError::NotThisNode { .. }), Ok(c)) => {
                assert!(!c.scope.selects(&node), "refused a config that selects this node");
            }
            (Err(SignedConfigError::Expired { .. }), Ok(c)) => {
                assert!(c.scope.not_after_unix().is_some_and(|t| t < NOW), "refused a valid config");
            }
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
