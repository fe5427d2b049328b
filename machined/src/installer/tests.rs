use super::*;
use crate::host::disk::fake::FakeDisks;
use crate::host::recording::RecordingKernel;
use basalt_api::disk_layout::{new_disk_size, new_table};
use sha2::Digest;

const ROOT_LEN: usize = 3 * 4096 + 17;

struct Rig {
    _dir: tempfile::TempDir,
    installer: DiskInstaller,
    disks: Arc<FakeDisks>,
    root: Vec<u8>,
    table: Table,
}

/// An ISO's initramfs in a temp root: the head (GPT + an "ESP") and the root
/// image; a RAM STATE with a TLS identity; disks `vda` (target) and `sr0`.
fn rig(target_size: u64, target_data: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::dev(dir.path());
    let root: Vec<u8> = (0..ROOT_LEN).map(|i| (i * 7 % 256) as u8).collect();
    let sha: [u8; 32] = sha2::Sha256::digest(&root).into();
    let table = new_table(&sha, 4 * MIB, b"seed");
    let size = new_disk_size(&table);
    let enc = table.encode(size).unwrap();
    let slot_a = table.partitions[&disk_layout::SLOT_A_NUMBER].offset();
    let mut head = vec![0u8; slot_a as usize];
    head[..enc.primary.len()].copy_from_slice(&enc.primary);
    head[2 * MIB as usize..2 * MIB as usize + 3].copy_from_slice(b"ESP");
    host.create_dir_all(&media_path("/basalt/install")).unwrap();
    std::fs::write(
        host.path(media_path(INSTALL_DISK_HEAD)),
        zstd::encode_all(&head[..], 3).unwrap(),
    )
    .unwrap();
    std::fs::write(host.path(media_path(ROOT_IMAGE)), &root).unwrap();
    host.create_dir_all("/run/basalt/state/tls").unwrap();
    std::fs::write(host.path("/run/basalt/state/tls/key.pem"), b"KEY").unwrap();
    host.create_dir_all("/run/basalt/install-state").unwrap();
    let disks = Arc::new(FakeDisks::default());
    disks.plug("vda", None, target_size);
    if target_data {
        disks
            .write_at("/dev/vda", target_size - 10, b"old")
            .unwrap();
    }
    let installer = DiskInstaller::from_payload(
        &host,
        disks.clone(),
        Arc::new(RecordingKernel::new("iso")),
        "/run/basalt/state",
    )
    .unwrap();
    Rig {
        _dir: dir,
        installer,
        disks,
        root,
        table,
    }
}

fn install_to(disk: &str, wipe: bool) -> Install {
    Install {
        disk: Some(disk.into()),
        selector: None,
        wipe,
    }
}

fn install_selected(selector: &str, wipe: bool) -> Install {
    Install {
        disk: None,
        selector: Some(toml::from_str(selector).unwrap()),
        wipe,
    }
}

fn doc() -> SignedDoc {
    SignedDoc {
        config: b"generation = 4\n".to_vec(),
        signatures: b"SIG".to_vec(),
    }
}

#[test]
fn a_blank_disk_is_partitioned_written_and_given_the_config_and_identity() {
    let r = rig(400 * MIB, false);
    assert_eq!(
        r.installer.check(&install_to("/dev/vda", false)).unwrap(),
        "/dev/vda"
    );
    let said = r
        .installer
        .install(&install_to("/dev/vda", false), 4, &doc())
        .unwrap();
    assert!(
        said.starts_with("installed to /dev/vda: slot A, "),
        "{said}"
    );
    // The table reads back (primary and, at this disk's end, backup).
    let disk = Disk {
        name: "vda".into(),
        size: 400 * MIB,
        ..Disk::default()
    };
    assert_eq!(r.disks.read_table(&disk).unwrap(), r.table);
    let enc = r.table.encode(400 * MIB).unwrap();
    assert_eq!(
        r.disks
            .read_at("/dev/vda", enc.backup_offset, enc.backup.len())
            .unwrap(),
        enc.backup
    );
    // The ESP bytes of the head and the root image in slot A.
    assert_eq!(r.disks.read_at("/dev/vda", 2 * MIB, 3).unwrap(), b"ESP");
    let a = r.table.partitions[&disk_layout::SLOT_A_NUMBER].offset();
    assert_eq!(r.disks.read_at("/dev/vda", a, ROOT_LEN).unwrap(), r.root);
    // STATE was made and holds the config and the TLS identity.
    assert!(
        r.disks.log().contains(&"mkfs /dev/vda4 STATE".to_string()),
        "{:?}",
        r.disks.log()
    );
    let state = r.installer.host.path("/run/basalt/install-state");
    let store = StateStore::open(&state, false).unwrap();
    assert_eq!(
        store.load(crate::state::Slot::Current).unwrap(),
        Some(doc())
    );
    assert_eq!(std::fs::read(state.join("tls/key.pem")).unwrap(), b"KEY");
}

#[test]
fn a_disk_with_data_is_refused_unless_wipe_and_nothing_is_written() {
    let r = rig(400 * MIB, true);
    let err = r
        .installer
        .check(&install_to("vda", false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/vda") || err.contains("vda is not empty"),
        "{err}"
    );
    assert!(err.contains("set machine.install.wipe = true"), "{err}");
    let err = r
        .installer
        .install(&install_to("vda", false), 4, &doc())
        .unwrap_err();
    assert!(matches!(err, InstallError::Refused { .. }), "{err}");
    assert!(r.disks.log().is_empty(), "{:?}", r.disks.log());
    r.installer.check(&install_to("vda", true)).unwrap();
    r.installer
        .install(&install_to("vda", true), 4, &doc())
        .unwrap();
    assert_eq!(
        r.disks.read_at("/dev/vda", 400 * MIB - 10, 3).unwrap(),
        [0, 0, 0],
        "old data wiped"
    );
}

#[test]
fn a_missing_or_small_disk_is_refused_with_what_there_is() {
    let r = rig(16 * MIB, false);
    let err = r
        .installer
        .check(&install_to("/dev/sdz", false))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "machine.install.disk: no disk /dev/sdz here (disks: /dev/vda)"
    );
    let err = r
        .installer
        .check(&install_to("/dev/vda", false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/dev/vda is 16 MiB; a Basalt disk needs at least"),
        "{err}"
    );
}

/// The rig's `vda` (serial `target`) and a decoy `vdb` of the same size
/// (serial `decoy`), holding a marker at both ends.
fn rig_with_decoy() -> Rig {
    let r = rig(400 * MIB, false);
    r.disks.plug("vdb", None, 400 * MIB);
    r.disks.write_at("/dev/vdb", 0, b"decoy").unwrap();
    r.disks
        .write_at("/dev/vdb", 400 * MIB - 5, b"decoy")
        .unwrap();
    for (name, serial) in [("vda", "target"), ("vdb", "decoy")] {
        r.disks.describe(
            name,
            Disk {
                serial: Some(serial.into()),
                rotational: Some(true),
                ..Disk::default()
            },
        );
    }
    r
}

#[test]
fn a_selector_installs_to_the_one_disk_it_matches_and_leaves_the_others() {
    let r = rig_with_decoy();
    let before = r
        .disks
        .read_at("/dev/vdb", 0, (400 * MIB) as usize)
        .unwrap();
    let selected = install_selected("serial = \"target\"\nsize = \">= 400MiB\"", false);
    assert_eq!(
        r.installer.check(&selected).unwrap(),
        "/dev/vda (matched by size >= 400MiB, serial = \"target\")",
        "what a dry run's plan names"
    );
    assert!(r.disks.log().is_empty(), "{:?}", r.disks.log());
    let said = r.installer.install(&selected, 4, &doc()).unwrap();
    assert!(
        said.starts_with(
            "installed to /dev/vda (matched by size >= 400MiB, serial = \"target\"): slot A, "
        ),
        "{said}"
    );
    let a = r.table.partitions[&disk_layout::SLOT_A_NUMBER].offset();
    assert_eq!(r.disks.read_at("/dev/vda", a, ROOT_LEN).unwrap(), r.root);
    assert_eq!(
        r.disks
            .read_at("/dev/vdb", 0, (400 * MIB) as usize)
            .unwrap(),
        before,
        "the decoy is as it was"
    );
    assert!(
        r.disks.log().iter().all(|l| !l.contains("vdb")),
        "{:?}",
        r.disks.log()
    );
}

#[test]
fn a_selector_matching_no_disk_or_several_is_refused_before_anything_is_written() {
    let r = rig_with_decoy();
    let err = r
        .installer
        .install(&install_selected("serial = \"nope\"", false), 4, &doc())
        .unwrap_err();
    assert!(matches!(err, InstallError::Refused { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "machine.install.selector: no disk matches (serial = \"nope\"); the disks here: \
         /dev/vda: 0.39 GiB (419430400 B), type virtio, model none, serial \"target\", wwid none; \
         /dev/vdb: 0.39 GiB (419430400 B), type virtio, model none, serial \"decoy\", wwid none"
    );
    let err = r
        .installer
        .check(&install_selected("type = \"virtio\"", true))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("machine.install.selector: 2 disks match (type = \"virtio\") and an install needs exactly one; add `serial` or `wwid` to say which: /dev/vda: "),
        "{err}"
    );
    // The decoy holds data: selected, it is refused unless wipe.
    let err = r
        .installer
        .check(&install_selected("serial = \"decoy\"", false))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("machine.install.selector: /dev/vdb is not empty"),
        "{err}"
    );
    assert!(r.disks.log().is_empty(), "{:?}", r.disks.log());
    assert_eq!(r.disks.read_at("/dev/vdb", 0, 5).unwrap(), b"decoy");
}
