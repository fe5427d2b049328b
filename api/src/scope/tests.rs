use super::*;
use std::process::Command;

fn datetime(s: &str) -> toml::value::Datetime {
    s.parse().unwrap()
}

/// GNU `date` is the peer: it converts both ways for every instant here.
#[test]
fn instants_agree_with_gnu_date() {
    for s in [
        "1970-01-01T00:00:00Z",
        "2000-02-29T12:34:56Z",
        "2026-12-01T05:52:17Z",
        "2027-03-01T00:00:00+01:00",
        "2038-01-19T03:14:08-05:30",
        "2100-03-01T00:00:00Z",
        "2400-02-29T23:59:59.999Z",
    ] {
        let ours = unix_seconds(&datetime(s)).unwrap();
        let out = Command::new("date")
            .env("TZ", "UTC")
            .args(["-u", "-d", s, "+%s"])
            .output()
            .expect("GNU date");
        assert!(out.status.success(), "date -d {s}");
        let peer: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(ours, peer, "{s}");
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{ours}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        assert_eq!(
            rfc3339(ours),
            String::from_utf8_lossy(&out.stdout).trim(),
            "{s}"
        );
    }
}

#[test]
fn not_after_must_be_a_whole_instant() {
    for (s, want) in [
        ("2027-03-01", "is not an instant"),
        ("2027-03-01T00:00:00", "is not an instant"),
        ("00:00:00", "is not an instant"),
        ("1969-12-31T23:59:59Z", "before 1970"),
    ] {
        let e = unix_seconds(&datetime(s)).unwrap_err();
        assert!(e.contains(want), "{s}: {e}");
    }
}

#[test]
fn selector_matches_any_listed_identifier() {
    let node = NodeIdentity::from_firmware(
        Some("4C4C4544-0042-3510-8052-B4C04F4E4232\n"),
        Some("CZ1234ABCD\n"),
        vec!["52:54:00:12:34:56".parse().unwrap()],
    );
    assert_eq!(
        node.system_uuid.as_deref(),
        Some("4c4c4544-0042-3510-8052-b4c04f4e4232")
    );
    assert!(Scope::default().selects(&node), "no selector: every node");
    let by_uuid = Scope {
        system_uuids: vec!["4c4c4544-0042-3510-8052-B4C04F4E4232".into()],
        ..Scope::default()
    };
    assert!(by_uuid.selects(&node));
    let by_mac = Scope {
        macs: vec!["52:54:00:12:34:56".parse().unwrap()],
        serials: vec!["OTHER".into()],
        ..Scope::default()
    };
    assert!(by_mac.selects(&node));
    let other = Scope {
        serials: vec!["CZ1234ABCE".into()],
        macs: vec!["52:54:00:12:34:57".parse().unwrap()],
        ..Scope::default()
    };
    assert!(!other.selects(&node));
    // A node without firmware ids matches only by MAC.
    let bare = NodeIdentity::default();
    assert!(!by_uuid.selects(&bare));
}

#[test]
fn firmware_placeholders_are_no_identity() {
    let node = NodeIdentity::from_firmware(
        Some("00000000-0000-0000-0000-000000000000"),
        Some("To Be Filled By O.E.M."),
        Vec::new(),
    );
    assert_eq!(node, NodeIdentity::default());
    let scope = Scope {
        system_uuids: vec![
            "ffffffff-ffff-ffff-ffff-ffffffffffff".into(),
            "not-a-uuid".into(),
        ],
        serials: vec![
            "Default string".into(),
            " padded".into(),
            "tab\there".into(),
        ],
        ..Scope::default()
    };
    let problems = validate(&scope);
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(problems[0].2.contains("placeholder"));
    assert!(problems[1].2.contains("not a UUID"));
}

#[test]
fn trusted_time_takes_the_clock_only_when_synchronized() {
    let built = 1_764_547_200; // 2025-12-01
    let t = TrustedTime::new(built, built + 1000, false);
    assert_eq!((t.at_least, t.source), (built, TimeSource::ImageBuild));
    let t = TrustedTime::new(built, built + 1000, true);
    assert_eq!(
        (t.at_least, t.source),
        (built + 1000, TimeSource::SynchronizedClock)
    );
    // A synchronized clock behind the image is wrong: the image wins.
    let t = TrustedTime::new(built, built - 1000, true);
    assert_eq!((t.at_least, t.source), (built, TimeSource::ImageBuild));
}

#[test]
fn image_policy_round_trips_and_is_strict() {
    let p = ImagePolicy {
        min_generation: 7,
        built_at: 1_764_547_200,
    };
    assert_eq!(ImagePolicy::from_toml(&p.to_toml()).unwrap(), p);
    let e = ImagePolicy::from_toml("min_generation = 1\nbuilt_at = 0\nextra = 1\n").unwrap_err();
    assert!(e.contains("extra"), "{e}");
}
