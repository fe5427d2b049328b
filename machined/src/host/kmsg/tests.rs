use super::*;

#[test]
fn records_become_dmesg_lines() {
    assert_eq!(
        format_record(b"6,1234,5123456,-;machined: API listening\n SUBSYSTEM=x\n"),
        "[    5.123456] machined: API listening\n"
    );
    // No header: the whole record is the message.
    assert_eq!(format_record(b"garbage"), "[    0.000000] garbage\n");
}
