//! Signed A/B upgrade bundles as a node reads an upload
//! (`basalt_api::upgrade`: the ustar reader, the manifest's signatures
//! under trust roots, the manifest parser, the payload check).
//!
//! Input: a bundle file. With the first byte 0xff the rest is a bundle
//! whose manifest the target signs itself with the trusted key before
//! reading (so the fuzzer reaches the manifest parser and the payload
//! check, past a signature it cannot forge).
//!
//! Properties:
//! - reading never panics; an opened bundle's head members are the bytes
//!   at their place in the input;
//! - a bundle is accepted only if its manifest carries a signature by the
//!   trusted key in namespace `basalt-upgrade` that verifies (checked with
//!   ed25519-dalek's own parse of the SSHSIG blocks, apart from the trust
//!   code), the manifest parses to what was accepted, and the bytes at the
//!   reported payload extents have the manifest's sizes and sha256
//!   (hashed here, apart from the reader);
//! - a bundle the target signed is accepted exactly when its manifest
//!   parses and its payload members, re-read here, match it.
#![no_main]

use basalt_api::sshkey::PrivateKey;
use basalt_api::sshsig;
use basalt_api::trust::TrustRoots;
use basalt_api::upgrade::bundle::{PayloadSource, write_bundle};
use basalt_api::upgrade::{BundleReader, Extent, Manifest, UPGRADE_NAMESPACE};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// The fuzz-only signing key (a fixed seed; make-seeds signs with the same).
fn admin() -> PrivateKey {
    PrivateKey::from_seed(&[0x5e; 32], "fuzz admin")
}

fn roots() -> TrustRoots {
    // A second admin (never signing) and a reader, so neither counts.
    let other = PrivateKey::from_seed(&[0x11; 32], "other admin").public();
    let reader = PrivateKey::from_seed(&[0x22; 32], "reader").public();
    TrustRoots::new(vec![admin().public(), other], vec![reader], 1).expect("valid roots")
}

fn slice(data: &[u8], e: Extent) -> &[u8] {
    let start = usize::try_from(e.offset).expect("offset fits");
    &data[start..start + usize::try_from(e.size).expect("size fits")]
}

/// Whether an independent look at `sigs` finds a block by the trusted key,
/// in the upgrade namespace, that verifies over `manifest`.
fn trusted_signature(manifest: &[u8], sigs: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(sigs) else {
        return false;
    };
    let Ok(blocks) = sshsig::parse_blocks(text) else {
        return false;
    };
    let admin = admin().public();
    blocks.iter().any(|b| {
        b.namespace == UPGRADE_NAMESPACE && b.key.same_key(&admin) && b.verify(manifest).is_ok()
    })
}

/// Read `data` as a node would; `Some(manifest)` when it is accepted.
fn accept(data: &[u8]) -> Option<Manifest> {
    let (reader, head) = BundleReader::open(data).ok()?;
    // The head members are the bytes where a ustar archive keeps them.
    let m_len = head.manifest.len();
    assert_eq!(&data[512..512 + m_len], &head.manifest[..]);
    let verified = roots()
        .verify_upgrade(&head.manifest, &head.signatures)
        .ok()?;
    assert!(trusted_signature(&head.manifest, &head.signatures));
    let manifest = verified.manifest().clone();
    assert_eq!(Manifest::parse(&head.manifest).ok(), Some(manifest.clone()));
    let payloads = reader.check_payloads(&manifest).ok()?;
    for (e, want) in [(payloads.uki, manifest.uki), (payloads.root, manifest.root)] {
        let bytes = slice(data, e);
        assert_eq!(bytes.len() as u64, want.size);
        let got: [u8; 32] = Sha256::digest(bytes).into();
        assert_eq!(got, want.sha256.0);
    }
    assert!(payloads.uki.offset < payloads.root.offset);
    Some(manifest)
}

/// Re-sign the input's manifest with the trusted key and check that the
/// verdict is exactly "manifest parses and payloads match".
fn signed_here(data: &[u8]) {
    let Ok((_, head)) = BundleReader::open(data) else {
        return;
    };
    // The payload members as the input has them: header, then size bytes.
    let Some((uki, root)) = payload_members(data, &head) else {
        return;
    };
    let sig = sshsig::sign(&admin(), UPGRADE_NAMESPACE, &head.manifest);
    let mut bundle = Vec::new();
    let (mut u, mut r) = (uki, root);
    if write_bundle(
        &mut bundle,
        &head.manifest,
        sig.as_bytes(),
        PayloadSource {
            reader: &mut u,
            size: uki.len() as u64,
        },
        PayloadSource {
            reader: &mut r,
            size: root.len() as u64,
        },
        head.mtime,
    )
    .is_err()
    {
        return;
    }
    let expected = Manifest::parse(&head.manifest).ok().filter(|m| {
        let matches = |b: &[u8], p: basalt_api::upgrade::manifest::Payload| {
            b.len() as u64 == p.size && <[u8; 32]>::from(Sha256::digest(b)) == p.sha256.0
        };
        matches(uki, m.uki) && matches(root, m.root)
    });
    assert_eq!(accept(&bundle), expected);
}

/// The two members after the head, found by their ustar size fields
/// (parsed here, apart from the reader), if the input has them whole.
fn payload_members<'a>(
    data: &'a [u8],
    head: &basalt_api::upgrade::Head,
) -> Option<(&'a [u8], &'a [u8])> {
    let padded = |n: usize| n.div_ceil(512) * 512;
    let mut at = 512 + padded(head.manifest.len()) + 512 + padded(head.signatures.len());
    let mut member = || -> Option<&'a [u8]> {
        let h = data.get(at..at + 512)?;
        let size_field = std::str::from_utf8(&h[124..135]).ok()?;
        let size = usize::from_str_radix(size_field.trim_matches(|c| c == ' ' || c == '\0'), 8).ok()?;
        let body = data.get(at + 512..at + 512 + size)?;
        at += 512 + padded(size);
        Some(body)
    };
    let uki = member()?;
    let root = member()?;
    Some((uki, root))
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xff, rest)) => signed_here(rest),
        _ => {
            accept(data);
        }
    }
});
