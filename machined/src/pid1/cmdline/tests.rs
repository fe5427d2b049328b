use super::*;

#[test]
fn parses_ours_ignores_kernels() {
    let a = parse("console=ttyS0 basalt.log=debug quiet basalt.state=DATA basalt.nope=1");
    assert_eq!(a.log, "debug");
    assert_eq!(a.state_label, "DATA");
    assert_eq!(a.root_image, "/basalt/root.squashfs");
    assert_eq!(a.unknown, vec!["basalt.nope".to_string()]);
}
