use super::*;

fn nonces() -> Nonces {
    Nonces::new(NONCE_TTL).unwrap()
}

#[test]
fn nonces_are_single_use_and_expire() {
    let n = nonces();
    let a = n.issue().unwrap();
    n.consume(&a).unwrap();
    assert_eq!(n.consume(&a), Err(AuthError::UnknownNonce));
    let now = Instant::now();
    let b = n.issue_at(now).unwrap();
    let late = now + NONCE_TTL + Duration::from_secs(1);
    assert_eq!(n.consume_at(&b, late), Err(AuthError::ExpiredNonce));
    assert_eq!(n.consume("made-up"), Err(AuthError::UnknownNonce));
}

#[test]
fn issuing_stores_nothing_so_a_flood_evicts_nobody() {
    let n = nonces();
    let admins = n.issue().unwrap();
    for _ in 0..100_000 {
        n.issue().unwrap();
    }
    assert_eq!(n.remembered(), 0);
    n.consume(&admins).unwrap();
    assert_eq!(n.remembered(), 1);
}

#[test]
fn forged_or_foreign_nonces_are_refused() {
    let (n, other) = (nonces(), nonces());
    let theirs = other.issue().unwrap();
    assert_eq!(
        n.consume(&theirs),
        Err(AuthError::UnknownNonce),
        "another key's nonce"
    );
    let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.issue().unwrap())
        .unwrap();
    // Move the issue time forward by an hour: the tag no longer matches.
    raw[STAMP_LEN - 3] ^= 0x40;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
    assert_eq!(n.consume(&forged), Err(AuthError::UnknownNonce));
    let short = &n.issue().unwrap()[..20];
    assert_eq!(n.consume(short), Err(AuthError::UnknownNonce));
}

#[test]
fn remembered_nonces_are_forgotten_once_they_would_have_expired() {
    let n = nonces();
    let start = Instant::now();
    for _ in 0..MAX_REMEMBERED {
        let x = n.issue_at(start).unwrap();
        n.consume_at(&x, start).unwrap();
    }
    let y = n.issue_at(start).unwrap();
    assert_eq!(n.consume_at(&y, start), Err(AuthError::Busy));
    // A minute later the old ones are past their TTL and make room.
    let later = start + NONCE_TTL + Duration::from_millis(1);
    let z = n.issue_at(later).unwrap();
    n.consume_at(&z, later).unwrap();
    assert_eq!(n.remembered(), 1);
}
