//! SSHSIG armor: the `.sig` files that carry config signatures (and, with
//! the armor lines stripped, the API's signature header).
//!
//! Input: a signature file. The seeds are `ssh-keygen -Y sign` output over
//! [`MESSAGE`] (ed25519, which verifies, and RSA/ECDSA, which are refused).
//!
//! Properties:
//! - parsing never panics;
//! - every parsed block re-encodes ([`SshSig::to_armor`]) to one block that
//!   parses to the same signature: key, namespace, hash and signature bytes,
//!   and so the same verdict over [`MESSAGE`];
//! - a signature that verifies over [`MESSAGE`] verifies over no other
//!   message (a flipped byte, or the message cut short).
#![no_main]

use basalt_api::sshsig::{self, SshSig};
use libfuzzer_sys::fuzz_target;

/// What `fuzz/make-seeds` signs with ssh-keygen.
const MESSAGE: &[u8] = b"basalt fuzz seed message\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sigs) = sshsig::parse_blocks(text) else {
        return;
    };
    for sig in &sigs {
        let armor = sig.to_armor();
        let again: Vec<SshSig> = sshsig::parse_blocks(&armor).expect("re-encoded block parses");
        assert_eq!(again.len(), 1);
        let again = &again[0];
        assert_eq!(again.to_armor(), armor, "the same signature");
        assert_eq!(again.key, sig.key);
        assert_eq!(again.namespace, sig.namespace);
        let verdict = sig.verify(MESSAGE).is_ok();
        assert_eq!(again.verify(MESSAGE).is_ok(), verdict);
        if verdict {
            let mut other = MESSAGE.to_vec();
            other[0] ^= 1;
            assert!(sig.verify(&other).is_err(), "verified a changed message");
            assert!(sig.verify(&MESSAGE[..MESSAGE.len() - 1]).is_err());
        }
    }
});
