use super::*;

#[test]
fn apply_errors_join() {
    let e = ApplyErrors(vec![
        NetworkError::NoSuchLink("eth9".into()),
        NetworkError::DuplicateMatch("eth0".into()),
    ]);
    assert_eq!(
        e.to_string(),
        "no link matches eth9; link eth0 is matched by more than one [[machine.network.interfaces]] entry"
    );
}
