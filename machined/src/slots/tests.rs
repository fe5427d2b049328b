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
