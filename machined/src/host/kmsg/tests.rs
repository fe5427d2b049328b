use super::*;

#[test]
fn records_become_dmesg_lines() {
    assert_eq!(
        parse_record(b"6,1234,5123456,-;machined: API listening\n SUBSYSTEM=x\n"),
        Record {
            facility: 0,
            line: "[    5.123456] machined: API listening\n".into()
        }
    );
    // machined's captured service output: LOG_LOCAL0 (16 << 3 | 6).
    assert_eq!(parse_record(b"134,7,1,-;machined: x").facility, 16);
    assert_eq!(parse_record(b"14,7,1,-;machined: x").facility, 1);
    // No header: the whole record is the message.
    assert_eq!(parse_record(b"garbage").line, "[    0.000000] garbage\n");
}
