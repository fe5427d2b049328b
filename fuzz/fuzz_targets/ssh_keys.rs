//! OpenSSH keys as basaltctl and image-builder read them: `authorized_keys`
//! style lists of public keys and unencrypted `openssh-key-v1` private keys.
//!
//! Input: any text (bytes that are not UTF-8 are not text, and are skipped).
//!
//! Properties:
//! - parsing never panics;
//! - a parsed key list re-renders (`to_openssh`, one a line) to text that
//!   parses to the same keys, comments included, and every key's blob
//!   parses back to the same key with the same fingerprint;
//! - a parsed private key re-encodes to a file that parses to the same key
//!   and comment, and a signature it makes verifies under its public half.
#![no_main]

use basalt_api::sshkey::{PrivateKey, PublicKey, parse_key_list};
use basalt_api::sshsig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(keys) = parse_key_list(text) {
        let rendered: Vec<String> = keys.iter().map(PublicKey::to_openssh).collect();
        let again = parse_key_list(&rendered.join("\n")).expect("rendered keys parse");
        assert_eq!(again, keys, "a key list survives rendering");
        for key in &keys {
            let back = PublicKey::from_blob(&key.blob()).expect("a key's blob parses");
            assert!(back.same_key(key));
            assert_eq!(back.fingerprint(), key.fingerprint());
        }
    }
    if let Ok(key) = PrivateKey::from_openssh(text) {
        let file = key.to_openssh().expect("encoding a parsed key");
        let back = PrivateKey::from_openssh(&file).expect("re-encoded private key parses");
        assert_eq!(back.signing_key().to_bytes(), key.signing_key().to_bytes());
        assert_eq!(back.public().comment(), key.public().comment());
        assert!(back.public().same_key(&key.public()));
        let armored = sshsig::sign(&key, "fuzz", b"message");
        let sigs = sshsig::parse_blocks(&armored).expect("our own signature parses");
        sigs[0]
            .verify(b"message")
            .expect("signed by the parsed key");
        assert!(sigs[0].key.same_key(&key.public()));
    }
});
