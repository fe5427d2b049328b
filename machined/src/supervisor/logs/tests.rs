use super::*;

#[test]
fn ring_drops_oldest() {
    let b = LogBuffer::new("t", 3, KnownSecrets::new());
    for i in 0..5 {
        b.push(Stream::Stdout, format!("l{i}\r").as_bytes());
    }
    let got = b.snapshot();
    assert_eq!(
        got.iter()
            .map(|l| (l.seq, l.line.as_str()))
            .collect::<Vec<_>>(),
        [(2, "l2"), (3, "l3"), (4, "l4")]
    );
    let zero = LogBuffer::new("z", 0, KnownSecrets::new());
    zero.push(Stream::Stderr, b"x");
    assert!(zero.snapshot().is_empty());
}

#[tokio::test]
async fn capture_splits_lines_and_long_lines() {
    let (rx, tx) = std::io::pipe().unwrap();
    let b = Arc::new(LogBuffer::new("t", 100, KnownSecrets::new()));
    let mut follow = b.subscribe();
    capture(b.clone(), Stream::Stderr, OwnedFd::from(rx));
    let long = vec![b'a'; MAX_LINE + 10];
    std::thread::spawn(move || {
        use std::io::Write;
        let mut tx = tx;
        tx.write_all(b"one\ntwo\n").unwrap();
        tx.write_all(&long).unwrap();
        tx.write_all(b"\ntail").unwrap();
    });
    let mut lens = Vec::new();
    for _ in 0..5 {
        let l = follow.recv().await.unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        lens.push(l.line.len());
    }
    assert_eq!(lens, [3, 3, MAX_LINE, 10, 4]);
    assert_eq!(b.snapshot().first().unwrap().line, "one");
}

#[test]
fn known_secrets_never_reach_the_ring() {
    let secrets = KnownSecrets::new();
    secrets.learn(["abcdef.0123456789abcdef".to_string()]);
    let b = LogBuffer::new("t", 3, Arc::clone(&secrets));
    let mut follow = b.subscribe();
    b.push(Stream::Stdout, b"joining with abcdef.0123456789abcdef");
    assert_eq!(b.snapshot()[0].line, "joining with <redacted>");
    assert_eq!(follow.try_recv().unwrap().line, "joining with <redacted>");
}
