use super::bundle::{PayloadSource, write_bundle};
use super::manifest::{Arch, Format, Payload};
use super::*;
use crate::CONFIG_NAMESPACE;
use crate::sshkey::PrivateKey;
use crate::sshsig;

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&[n; 32], &format!("admin{n}"))
}

fn roots(admins: &[u8], readers: &[u8], threshold: usize) -> TrustRoots {
    TrustRoots::new(
        admins.iter().map(|&n| key(n).public()).collect(),
        readers.iter().map(|&n| key(n).public()).collect(),
        threshold,
    )
    .unwrap()
}

fn manifest_for(uki: &[u8], root: &[u8], counter: u64) -> Manifest {
    let digest = |b: &[u8]| Sha256Digest::of_reader(b).unwrap().0;
    Manifest {
        format: Format,
        version: Version::try_from("0.3.0".to_string()).unwrap(),
        counter,
        arch: Arch::try_from("x86_64".to_string()).unwrap(),
        uki: Payload {
            size: uki.len() as u64,
            sha256: digest(uki),
        },
        root: Payload {
            size: root.len() as u64,
            sha256: digest(root),
        },
    }
}

fn bundle(manifest: &[u8], sigs: &[u8], uki: &[u8], root: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut u, mut r) = (uki, root);
    write_bundle(
        &mut out,
        manifest,
        sigs,
        PayloadSource {
            reader: &mut u,
            size: uki.len() as u64,
        },
        PayloadSource {
            reader: &mut r,
            size: root.len() as u64,
        },
        1_700_000_000,
    )
    .unwrap();
    out
}

const UKI: &[u8] = b"MZ fake uki, not a real image";

fn root_bytes() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A signed bundle by key 1 and its manifest.
fn signed() -> (Vec<u8>, Manifest) {
    let root = root_bytes();
    let m = manifest_for(UKI, &root, 42);
    let text = m.to_toml();
    let sig = sshsig::sign(&key(1), UPGRADE_NAMESPACE, text.as_bytes());
    (bundle(text.as_bytes(), sig.as_bytes(), UKI, &root), m)
}

fn read(b: &[u8]) -> Result<(Head, Payloads), BundleError> {
    let (r, head) = BundleReader::open(b)?;
    let m = Manifest::parse(&head.manifest).unwrap();
    Ok((head.clone(), r.check_payloads(&m)?))
}

#[test]
fn a_written_bundle_reads_back_with_its_payload_offsets() {
    let (b, m) = signed();
    let (head, p) = read(&b).unwrap();
    assert_eq!(head.manifest, m.to_toml().as_bytes());
    assert_eq!(head.mtime, 1_700_000_000);
    let root = root_bytes();
    assert_eq!(&b[p.uki.offset as usize..][..p.uki.size as usize], UKI);
    assert_eq!(
        &b[p.root.offset as usize..][..p.root.size as usize],
        &root[..]
    );
    assert_eq!(b.len() % 512, 0);
    // The same inputs, the same bytes.
    assert_eq!(signed().0, b);
}

/// Recompute a changed header's checksum, so the reader looks further.
fn reseal(h: &mut [u8]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

#[test]
fn the_reader_is_strict_and_names_member_and_offset() {
    let (b, m) = signed();
    let text = m.to_toml();
    let sig = sshsig::sign(&key(1), UPGRADE_NAMESPACE, text.as_bytes());
    let root = root_bytes();
    let (_, p) = read(&b).unwrap();
    let uki_header = (p.uki.offset - 512) as usize;
    let root_header = (p.root.offset - 512) as usize;

    let mut bad_sum = b.clone();
    bad_sum[uki_header] = b'X';
    let mut renamed = b.clone();
    renamed[root_header..root_header + 13].copy_from_slice(b"root.squashfX");
    reseal(&mut renamed[root_header..root_header + 512]);
    let mut gnu = b.clone();
    gnu[257..265].copy_from_slice(b"ustar  \0");
    reseal(&mut gnu[..512]);
    let mut symlink = b.clone();
    symlink[uki_header + 156] = b'2';
    reseal(&mut symlink[uki_header..uki_header + 512]);
    let mut tampered = b.clone();
    tampered[p.root.offset as usize + 10] ^= 1;
    let mut trailing = b.clone();
    trailing.extend_from_slice(b"garbage");
    let mut extra = b[..b.len() - 1024].to_vec();
    extra.extend_from_slice(&b[uki_header..p.uki.offset as usize + 512]);
    extra.extend_from_slice(&[0; 1024]);
    // Members swapped: root before the UKI.
    let swapped = bundle(text.as_bytes(), sig.as_bytes(), &root, UKI);

    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "truncated",
            b[..p.root.offset as usize + 100].to_vec(),
            format!(
                "root.squashfs: the file ends at byte {}",
                p.root.offset + 100
            ),
        ),
        (
            "checksum",
            bad_sum,
            format!("uki.efi (header at byte {uki_header}): header checksum"),
        ),
        (
            "name",
            renamed,
            "found member `root.squashfX` where member 4 must be `root.squashfs`".into(),
        ),
        (
            "gnu",
            gnu,
            "manifest.toml (header at byte 0): not a POSIX ustar header".into(),
        ),
        ("type", symlink, "not a regular file".into()),
        ("hash", tampered, "root.squashfs has sha256".into()),
        (
            "trailing",
            trailing,
            format!("end of archive (header at byte {}): trailing data", b.len()),
        ),
        ("extra member", extra, "expected the two zero blocks".into()),
        (
            "swapped",
            swapped,
            "uki.efi is 3000 bytes but the signed manifest says 29".into(),
        ),
        (
            "empty",
            Vec::new(),
            "manifest.toml: the file ends at byte 0".into(),
        ),
        (
            "two members",
            b[..uki_header].iter().copied().chain([0; 1024]).collect(),
            "uki.efi (header at byte".into(),
        ),
    ];
    for (what, data, want) in cases {
        let e = read(&data).unwrap_err().to_string();
        assert!(e.contains(&want), "{what}: {e}\n  should contain: {want}");
    }
    // tar pads archives to whole records with zero blocks: accepted.
    let mut padded = b.clone();
    padded.extend_from_slice(&[0; 512 * 15]);
    read(&padded).unwrap();
    let mut odd = b.clone();
    odd.extend_from_slice(&[0; 100]);
    assert!(
        read(&odd)
            .unwrap_err()
            .to_string()
            .contains("not whole 512-byte blocks")
    );
}

#[test]
fn signatures_count_only_in_the_upgrade_namespace_and_the_reverse() {
    let m = manifest_for(UKI, &root_bytes(), 42).to_toml();
    let m = m.as_bytes();
    let policy = roots(&[1, 2], &[3], 1);
    let verified = policy
        .verify_upgrade(m, sshsig::sign(&key(1), UPGRADE_NAMESPACE, m).as_bytes())
        .unwrap();
    assert_eq!(verified.manifest().counter, 42);
    assert_eq!(verified.signers()[0].comment, "admin1");

    // A config signature is no upgrade signature…
    let config_sig = sshsig::sign(&key(1), CONFIG_NAMESPACE, m);
    let e = policy.verify_upgrade(m, config_sig.as_bytes()).unwrap_err();
    assert!(
        e.to_string().contains(
            "0 of 1 required signature(s) from distinct trusted admin keys in namespace `basalt-upgrade`; block 1: namespace `basalt-config` is not `basalt-upgrade`"
        ),
        "{e}"
    );
    // …and an upgrade signature no config signature.
    let upgrade_sig = sshsig::sign(&key(1), UPGRADE_NAMESPACE, m);
    let e = policy
        .verify_document(m, upgrade_sig.as_bytes())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("block 1: namespace `basalt-upgrade` is not `basalt-config`"),
        "{e}"
    );

    for (what, sigs, want) in [
        ("unsigned", String::new(), "the bundle is not signed"),
        (
            "stranger",
            sshsig::sign(&key(9), UPGRADE_NAMESPACE, m),
            "is not a trusted admin key",
        ),
        (
            "reader",
            sshsig::sign(&key(3), UPGRADE_NAMESPACE, m),
            "readers cannot sign",
        ),
        (
            "other bytes",
            sshsig::sign(&key(1), UPGRADE_NAMESPACE, b"counter = 43"),
            "does not match these bytes",
        ),
    ] {
        let e = policy.verify_upgrade(m, sigs.as_bytes()).unwrap_err();
        assert!(e.to_string().contains(want), "{what}: {e}");
    }

    // k of n: two distinct admins for a threshold of 2, the same one twice is one.
    let two = roots(&[1, 2], &[], 2);
    let one = sshsig::sign(&key(1), UPGRADE_NAMESPACE, m);
    let e = two
        .verify_upgrade(m, (one.clone() + &one).as_bytes())
        .unwrap_err();
    assert!(e.to_string().contains("1 of 2 required"), "{e}");
    let both = one + &sshsig::sign(&key(2), UPGRADE_NAMESPACE, m);
    assert_eq!(
        two.verify_upgrade(m, both.as_bytes())
            .unwrap()
            .signers()
            .len(),
        2
    );

    // Signed but invalid: refused after the signatures, with the key path.
    let bad = String::from_utf8_lossy(m).replace("counter = 42", "counter = \"42\"");
    let e = policy
        .verify_upgrade(
            bad.as_bytes(),
            sshsig::sign(&key(1), UPGRADE_NAMESPACE, bad.as_bytes()).as_bytes(),
        )
        .unwrap_err();
    assert!(matches!(e, UpgradeVerifyError::Manifest(_)), "{e}");
    assert!(e.to_string().contains("manifest.toml:3:"), "{e}");
}

#[test]
fn install_needs_a_newer_counter_and_this_architecture() {
    let m = manifest_for(UKI, &root_bytes(), 42).to_toml();
    let v = roots(&[1], &[], 1)
        .verify_upgrade(
            m.as_bytes(),
            sshsig::sign(&key(1), UPGRADE_NAMESPACE, m.as_bytes()).as_bytes(),
        )
        .unwrap();
    check_install(&v, 41, "x86_64").unwrap();
    check_install(&v, 0, "x86_64").unwrap();
    for installed in [42, 43] {
        assert_eq!(
            check_install(&v, installed, "x86_64"),
            Err(Refusal::NotNewer {
                counter: 42,
                installed
            })
        );
    }
    let e = check_install(&v, 0, "aarch64").unwrap_err();
    assert_eq!(
        e.to_string(),
        "bundle is for x86_64 but this node is aarch64; build one with --arch aarch64"
    );
}
