//! How an operator pins a node's TLS certificate (like SSH `known_hosts`):
//! machined prints this fingerprint on its console, basaltctl compares it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

/// `SHA256:<base64, unpadded>` of a certificate's DER, the same form
/// `ssh-keygen -l` uses for keys.
pub fn fingerprint(cert_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        STANDARD_NO_PAD.encode(Sha256::digest(cert_der))
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_unpadded_sha256_base64() {
        // sha256("") = e3b0c442…; its base64 without padding.
        assert_eq!(
            super::fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }
}
