use super::*;

#[test]
fn parses_ours_ignores_kernels() {
    let a = parse("console=ttyS0 basalt.log=debug quiet basalt.state=DATA basalt.nope=1");
    assert_eq!(a.log, "debug");
    assert_eq!(a.state_label, "DATA");
    assert_eq!(a.root, RootArg::Image("/basalt/root.squashfs".into()));
    assert_eq!(a.unknown, vec!["basalt.nope".to_string()]);
}

#[test]
fn a_uki_names_its_root_slot_by_guid() {
    let a = parse("console=ttyS0 basalt.root=PARTUUID=0f2e1d3c-4b5a-4978-8695-a4b3c2d1e0f9");
    assert_eq!(
        a.root,
        RootArg::Slot("0F2E1D3C-4B5A-4978-8695-A4B3C2D1E0F9".parse().unwrap())
    );
    let bad = parse("basalt.root=PARTUUID=nope");
    assert_eq!(bad.root, RootArg::Image("/basalt/root.squashfs".into()));
    assert_eq!(
        bad.unknown,
        ["basalt.root: `nope` is not a GUID (expected 8-4-4-4-12 hex digits)"]
    );
}
