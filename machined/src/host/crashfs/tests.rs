use super::*;
use crate::host::durable;

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn read(fs: &CrashFs, path: &str) -> Option<String> {
    fs.read(p(path)).ok().map(|d| String::from_utf8(d).unwrap())
}

#[test]
fn only_synced_data_and_entries_survive_a_power_cut() {
    let fs = CrashFs::new();
    fs.create_dir(p("/d")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    fs.write_file(p("/d/synced"), b"kept", 0o600).unwrap();
    fs.sync_file(p("/d/synced")).unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs.write_file(p("/d/unsynced"), b"lost", 0o600).unwrap();
    fs.write_file(p("/d/synced"), b"overwritten", 0o600)
        .unwrap();

    let synced = fs.after_power_cut(Survives::Synced);
    assert_eq!(read(&synced, "/d/synced").as_deref(), Some("kept"));
    assert!(!synced.exists(p("/d/unsynced")), "{:?}", synced.tree());

    let all = fs.after_power_cut(Survives::Everything);
    assert_eq!(read(&all, "/d/synced").as_deref(), Some("overwritten"));
    assert_eq!(read(&all, "/d/unsynced").as_deref(), Some("lost"));

    let entries = fs.after_power_cut(Survives::EntriesNotData);
    assert_eq!(read(&entries, "/d/synced").as_deref(), Some("kept"));
    assert_eq!(read(&entries, "/d/unsynced").as_deref(), Some(""));
}

/// The model catches the classic bug: rename a file written but never
/// synced over the old one, and a crash can leave it empty.
#[test]
fn a_rename_without_fsync_can_leave_an_empty_file() {
    let fs = CrashFs::new();
    durable::write_atomic(&fs, p("/conf"), b"old", 0o600).unwrap();
    fs.write_file(p("/.conf.tmp"), b"new", 0o600).unwrap();
    fs.rename(p("/.conf.tmp"), p("/conf")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    let after = fs.after_power_cut(Survives::Synced);
    assert_eq!(read(&after, "/conf").as_deref(), Some(""));

    // write_atomic syncs the data before the rename: old or new, never empty.
    let fs = CrashFs::new();
    durable::write_atomic(&fs, p("/conf"), b"old", 0o600).unwrap();
    let before = fs.steps();
    durable::write_atomic(&fs, p("/conf"), b"new", 0o600).unwrap();
    let steps = fs.steps() - before;
    assert_eq!(steps, 4, "write, fsync, rename, fsync dir: {:?}", fs.log());
    for n in 0..=steps {
        for survives in [
            Survives::Synced,
            Survives::Everything,
            Survives::EntriesNotData,
        ] {
            let fs = CrashFs::new();
            durable::write_atomic(&fs, p("/conf"), b"old", 0o600).unwrap();
            fs.cut_power_after(n);
            let _ = durable::write_atomic(&fs, p("/conf"), b"new", 0o600);
            let got = read(&fs.after_power_cut(survives), "/conf");
            assert!(
                matches!(got.as_deref(), Some("old" | "new")),
                "cut after {n} ({survives:?}): {got:?}"
            );
        }
    }
}

#[test]
fn after_the_cut_nothing_changes() {
    let fs = CrashFs::new();
    fs.cut_power_after(1);
    fs.create_dir(p("/a")).unwrap();
    let e = fs.create_dir(p("/b")).unwrap_err();
    assert!(e.to_string().contains("power lost"), "{e}");
    assert!(!fs.exists(p("/b")));
    assert_eq!(fs.steps(), 1);
}

#[test]
fn symlinks_resolve_like_the_kernels() {
    let fs = CrashFs::new();
    durable::create_dir_all(&fs, p("/s/gen-1")).unwrap();
    fs.write_file(p("/s/gen-1/c"), b"one", 0o600).unwrap();
    fs.symlink("gen-1", p("/s/current")).unwrap();
    assert_eq!(read(&fs, "/s/current/c").as_deref(), Some("one"));
    assert_eq!(
        fs.read_link(p("/s/current")).unwrap(),
        PathBuf::from("gen-1")
    );
    assert_eq!(fs.kind(p("/s/current")), Some(EntryKind::Symlink));
    assert!(fs.read_link(p("/s/gen-1")).is_err());
    fs.symlink("/s/current/c", p("/abs")).unwrap();
    assert_eq!(read(&fs, "/abs").as_deref(), Some("one"));
    fs.symlink("loop", p("/loop")).unwrap();
    assert_eq!(fs.read(p("/loop")).unwrap_err().raw_os_error(), Some(ELOOP));
}

#[test]
fn a_full_disk_refuses_writes_with_enospc() {
    let fs = CrashFs::new().with_capacity(10);
    fs.write_file(p("/a"), b"12345678", 0o600).unwrap();
    let e = fs.write_file(p("/b"), b"123", 0o600).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    assert_eq!(fs.used(), 8);
    // Replacing a file counts its old size as freed.
    fs.write_file(p("/a"), b"1234567890", 0o600).unwrap();
    let e = durable::write_atomic(&fs, p("/c"), b"x", 0o600).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    assert!(
        !fs.tree().keys().any(|k| k.contains(".tmp")),
        "write_atomic leaves no temp file behind: {:?}",
        fs.tree()
    );
}
