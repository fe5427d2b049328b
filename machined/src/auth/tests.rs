use super::*;

#[test]
fn nonces_are_single_use_and_expire() {
    let n = Nonces::default();
    let a = n.issue().unwrap();
    n.consume(&a).unwrap();
    assert_eq!(n.consume(&a), Err(AuthError::UnknownNonce));
    let b = n.issue().unwrap();
    n.backdate(&b, NONCE_TTL + Duration::from_secs(1));
    assert_eq!(n.consume(&b), Err(AuthError::ExpiredNonce));
    assert_eq!(n.consume("made-up"), Err(AuthError::UnknownNonce));
}
