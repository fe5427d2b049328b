//! Store path validation: `/nix/store/<32 nix-base32 chars>-<name>`.
//!
//! The parsing itself is `nix_derivation::StorePath` (its nix-base32 alphabet, digest length and name
//! rules match Nix's); this module only fixes the store directory and turns its errors into ours.

use nix_derivation::StorePath;

use super::Error;

/// The only store directory Basalt images use; binaries inside store paths hard-code it.
pub const NIX_STORE_DIR: &str = "/nix/store";

/// Length of the nix-base32 hash part of a store path basename.
pub(crate) const HASH_PART_LEN: usize = 32;

/// Parse an absolute store path such as `/nix/store/0c3b…-hello-2.12`.
///
/// Paths inside a store path (`/nix/store/…-hello/bin/hello`) are refused: Nix inputs are whole
/// store objects, so the image gets exactly what the NAR hash covers.
pub fn parse_store_path(path: &str) -> Result<StorePath, Error> {
    let invalid = |reason: String| Error::InvalidStorePath {
        path: path.to_owned(),
        reason,
    };
    let Some(basename) = path
        .strip_prefix(NIX_STORE_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(invalid(format!("not under {NIX_STORE_DIR}/")));
    };
    if basename.contains('/') {
        return Err(invalid(
            "names a path inside a store object, not a store object".to_owned(),
        ));
    }
    if basename.len() <= HASH_PART_LEN {
        return Err(invalid(format!(
            "expected {HASH_PART_LEN} nix-base32 characters, '-' and a name"
        )));
    }
    StorePath::from_basename(basename.as_bytes()).map_err(|e| invalid(e.to_string()))
}

/// `/nix/store/<hash>-<name>`, as Nix prints it.
#[must_use]
pub fn store_path_string(path: &StorePath) -> String {
    path.to_absolute_path()
}

/// The 32-character hash part, which names the `.narinfo` in a binary cache.
pub(crate) fn hash_part(path: &StorePath) -> String {
    let mut base = path.to_basename();
    base.truncate(HASH_PART_LEN);
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_store_path_and_round_trips() {
        let s = "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test";
        let p = parse_store_path(s).expect("valid");
        assert_eq!(store_path_string(&p), s);
        assert_eq!(hash_part(&p), "w90c5hksq93m592fj5k9sbvr10yjx783");
        assert_eq!(p.name(), "basalt-test");
    }

    #[test]
    fn refuses_malformed_paths() {
        for bad in [
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783",
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-",
            // 'e', 'o', 'u', 't' are not in the nix-base32 alphabet.
            "/nix/store/e90c5hksq93m592fj5k9sbvr10yjx783-x",
            "/nix/store/W90c5hksq93m592fj5k9sbvr10yjx783-x",
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx78-x",
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-x/bin/sh",
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-a b",
            "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-..",
            "/gnu/store/w90c5hksq93m592fj5k9sbvr10yjx783-x",
            "nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-x",
        ] {
            let err = parse_store_path(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
