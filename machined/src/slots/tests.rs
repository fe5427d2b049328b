use super::*;
use crate::host::esp::EspError;
use std::path::Path;
use std::sync::Mutex;

#[derive(Default)]
struct FakeEsp(Mutex<Vec<String>>);

impl FakeEsp {
    fn with(names: &[&str]) -> FakeEsp {
        FakeEsp(Mutex::new(names.iter().map(|s| s.to_string()).collect()))
    }
    fn names(&self) -> Vec<String> {
        let mut n = self.0.lock().unwrap().clone();
        n.sort();
        n
    }
}

impl BootEntries for FakeEsp {
    fn list(&self) -> Result<Vec<String>, EspError> {
        Ok(self.names())
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), EspError> {
        let mut n = self.0.lock().unwrap();
        let i = n.iter().position(|x| x == from).ok_or_else(|| EspError {
            op: "rename",
            path: from.into(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        n[i] = to.into();
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<(), EspError> {
        self.0.lock().unwrap().retain(|x| x != name);
        Ok(())
    }
    fn write(&self, name: &str, _: &Path, _: u64, _: u64) -> Result<(), EspError> {
        self.0.lock().unwrap().push(name.into());
        Ok(())
    }
}

#[test]
fn the_running_entry_comes_from_systemd_boots_variables() {
    let trial = BootEntry::from_vars(
        Some("basalt-0.2.0+1.efi"),
        Some("\\EFI\\Linux\\basalt-0.2.0+0-1.efi"),
    );
    assert_eq!(trial.version(), Some("0.2.0"));
    assert_eq!(trial.file_name().as_deref(), Some("basalt-0.2.0+0-1.efi"));
    let blessed = BootEntry::from_vars(Some("basalt-0.1.0.efi"), None);
    assert_eq!(
        (blessed.counted.clone(), blessed.file_name().as_deref()),
        (None, Some("basalt-0.1.0.efi"))
    );
    assert_eq!(BootEntry::from_vars(None, None).version(), None);
}

#[test]
fn a_good_trial_is_blessed_and_a_bad_one_sorts_last() {
    let esp = FakeEsp::with(&["basalt-0.1.0.efi", "basalt-0.2.0+2-1.efi"]);
    let counted = UkiName::parse("basalt-0.2.0+2-1.efi").unwrap();
    assert_eq!(
        bless(&esp, &counted).unwrap().file_name(),
        "basalt-0.2.0.efi"
    );
    assert_eq!(esp.names(), ["basalt-0.1.0.efi", "basalt-0.2.0.efi"]);

    let esp = FakeEsp::with(&["basalt-0.1.0.efi", "basalt-0.2.0+2-1.efi"]);
    assert_eq!(
        mark_bad(&esp, &counted).unwrap().file_name(),
        "basalt-0.2.0+0-1.efi"
    );
    let names = esp.names();
    assert_eq!(
        rolled_back(&names, "0.1.0").as_deref(),
        Some(
            "upgrade to 0.2.0 failed (1 boot tried, entry basalt-0.2.0+0-1.efi); rolled back to 0.1.0"
        )
    );
    assert_eq!(
        rolled_back(&names, "0.2.0"),
        None,
        "not newer than the running one"
    );
    assert_eq!(
        previous_entry(&names, "0.1.0"),
        None,
        "the bad entry is no way back"
    );
    assert_eq!(
        previous_entry(
            &["basalt-0.1.0.efi".into(), "basalt-0.2.0.efi".into()],
            "0.2.0"
        )
        .map(|n| n.file_name()),
        Some("basalt-0.1.0.efi".into())
    );
    assert_eq!(trial_name("0.3.0").file_name(), "basalt-0.3.0+3.efi");
}

/// The cases systemd's own test-string-util.c checks for strverscmp_improved
/// that apply to Basalt's version characters.
#[test]
fn versions_sort_as_systemd_boot_sorts_them() {
    use Ordering::*;
    for (a, b, want) in [
        ("0.1.0", "0.2.0", Less),
        ("0.10.0", "0.9.0", Greater),
        ("1.0", "1.0.0", Less),
        ("1.0~rc1", "1.0", Less),
        ("1.0^1", "1.0", Greater),
        ("1.0^1", "1.0.1", Less),
        ("1.007", "1.7", Equal),
        ("1.0a", "1.0b", Less),
        ("1.0a", "1.01", Less),
        ("122", "123", Less),
        ("1_2", "1.2", Equal),
    ] {
        assert_eq!(version_cmp(a, b), want, "{a} vs {b}");
        assert_eq!(version_cmp(b, a), want.reverse(), "{b} vs {a}");
    }
}

mod writing {
    use super::*;
    use crate::bootdisk::{self, Slot};
    use crate::host::disk::Disks;
    use crate::host::disk::fake::FakeDisks;
    use basalt_api::disk_layout::{MIB, new_disk_size, new_table, root_slot_guid};
    use sha2::Digest;
    use std::time::Duration;

    const OLD_ROOT: [u8; 32] = [5; 32];

    struct Rig {
        disks: FakeDisks,
        esp: FakeEsp,
        bd: bootdisk::BootDisk,
        running: BootEntry,
        spool: tempfile::NamedTempFile,
        uki: (u64, u64),
        root: (u64, u64),
        root_sha256: [u8; 32],
    }

    fn rig(root_len: usize) -> Rig {
        let disks = FakeDisks::default();
        let t = new_table(&OLD_ROOT, 4 * MIB, b"seed");
        disks.plug("vda", Some(&t), new_disk_size(&t));
        let bd = bootdisk::find(&disks, root_slot_guid(&OLD_ROOT), Duration::ZERO).unwrap();
        let mut spool = tempfile::NamedTempFile::new().unwrap();
        let uki = vec![0x4d; 1000];
        let root: Vec<u8> = (0..root_len).map(|i| (i % 251) as u8).collect();
        use std::io::Write;
        spool.write_all(b"header").unwrap();
        spool.write_all(&uki).unwrap();
        spool.write_all(&root).unwrap();
        Rig {
            disks,
            esp: FakeEsp::with(&[
                "basalt-0.1.0.efi",
                "basalt-0.0.9.efi",
                "basalt-0.0.8+0-3.efi",
            ]),
            bd,
            running: BootEntry::from_vars(Some("basalt-0.1.0.efi"), None),
            spool,
            uki: (6, 1000),
            root: (1006, root_len as u64),
            root_sha256: sha2::Sha256::digest(&root).into(),
        }
    }

    fn payload<'a>(r: &'a Rig, version: &'a str) -> Payload<'a> {
        Payload {
            spool: r.spool.path(),
            version,
            uki: r.uki,
            root: r.root,
            root_sha256: r.root_sha256,
        }
    }

    #[test]
    fn an_upgrade_writes_the_other_slot_then_a_counted_entry_and_keeps_only_the_running_one() {
        let r = rig(3 * 4096);
        let mut bd = r.bd.clone();
        let p = payload(&r, "0.2.0");
        let done = install(&r.disks, &r.esp, &mut bd, &r.running, false, &p).unwrap();
        assert_eq!(
            done,
            Installed {
                slot: Slot::B,
                root_written: true,
                entry: "basalt-0.2.0+3.efi".into()
            }
        );
        assert_eq!(r.esp.names(), ["basalt-0.1.0.efi", "basalt-0.2.0+3.efi"]);
        // Slot B now answers to the new root's GUID, on disk (both tables),
        // and holds its bytes.
        let b = bootdisk::find(&r.disks, root_slot_guid(&r.root_sha256), Duration::ZERO).unwrap();
        assert_eq!(b.slot, Slot::B);
        let a = bootdisk::find(&r.disks, root_slot_guid(&OLD_ROOT), Duration::ZERO).unwrap();
        assert_eq!(a.slot, Slot::A, "the running slot is untouched");
        assert_eq!(
            r.disks.sha256("/dev/vda3", r.root.1).unwrap(),
            r.root_sha256
        );
        let log = r.disks.log();
        assert_eq!(
            log,
            [
                "write_table vda",
                "copy_in /dev/vda3+0 12288",
                "write_table vda"
            ]
        );
    }

    #[test]
    fn refusals_come_before_any_write() {
        let r = rig(4096);
        let mut bd = r.bd.clone();
        let before = r.esp.names();
        for (version, trial, running, why) in [
            (
                "0.1.0",
                false,
                BootEntry::from_vars(Some("basalt-0.1.0.efi"), None),
                "does not sort after the running 0.1.0",
            ),
            (
                "0.0.9",
                false,
                BootEntry::from_vars(Some("basalt-0.1.0.efi"), None),
                "does not sort after",
            ),
            (
                "0.2.0",
                true,
                BootEntry::from_vars(Some("basalt-0.1.0+2.efi"), Some("basalt-0.1.0+1-1.efi")),
                "still on trial",
            ),
            (
                "0.2.0",
                false,
                BootEntry::from_vars(None, None),
                "not started by systemd-boot",
            ),
        ] {
            let p = payload(&r, version);
            let running = running.clone();
            let err = install(&r.disks, &r.esp, &mut bd, &running, trial, &p).unwrap_err();
            assert!(
                matches!(err, SlotError::Refused(_)) && err.to_string().contains(why),
                "{err}"
            );
        }
        let mut big = rig(0);
        big.root.1 = 4 * MIB + 1;
        let mut bd = big.bd.clone();
        let p = payload(&big, "0.2.0");
        let err = install(&big.disks, &big.esp, &mut bd, &big.running, false, &p).unwrap_err();
        assert!(err.to_string().contains("slot B holds 4194304"), "{err}");
        assert!(r.disks.log().is_empty() && big.disks.log().is_empty());
        assert_eq!(r.esp.names(), before);
    }

    #[test]
    fn the_same_root_image_is_not_written_again() {
        let mut r = rig(4096);
        r.root_sha256 = OLD_ROOT;
        let mut bd = r.bd.clone();
        let p = payload(&r, "0.1.1");
        let done = install(&r.disks, &r.esp, &mut bd, &r.running, false, &p).unwrap();
        assert!(!done.root_written);
        assert!(r.disks.log().is_empty(), "{:?}", r.disks.log());
    }

    #[test]
    fn rollback_marks_the_running_entry_bad_and_names_the_previous() {
        let esp = FakeEsp::with(&["basalt-0.1.0.efi", "basalt-0.2.0.efi"]);
        let running = BootEntry::from_vars(Some("basalt-0.2.0+3.efi"), None);
        // Blessed since: the file is basalt-0.2.0.efi now; the selected id
        // is the pre-rename name, so the running file is looked up by version.
        let running = BootEntry {
            selected: UkiName::parse("basalt-0.2.0.efi"),
            ..running
        };
        assert_eq!(
            rollback(&esp, &running).unwrap().file_name(),
            "basalt-0.1.0.efi"
        );
        assert_eq!(esp.names(), ["basalt-0.1.0.efi", "basalt-0.2.0+0.efi"]);
        assert_eq!(
            rolled_back(&esp.names(), "0.1.0").as_deref(),
            Some("rolled back from 0.2.0 by request (entry basalt-0.2.0+0.efi); running 0.1.0")
        );
        let alone = FakeEsp::with(&["basalt-0.1.0.efi"]);
        let err = rollback(
            &alone,
            &BootEntry::from_vars(Some("basalt-0.1.0.efi"), None),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no previous boot entry"), "{err}");
    }
}
