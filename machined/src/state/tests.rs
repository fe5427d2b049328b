use super::*;

fn doc(n: u8) -> SignedDoc {
    SignedDoc {
        config: vec![n; 3],
        signatures: vec![n + 100; 2],
    }
}

#[test]
fn commit_stage_promote_rollback() {
    let t = tempfile::tempdir().unwrap();
    let s = StateStore::open(t.path(), false).unwrap();
    assert_eq!(s.load(Slot::Current).unwrap(), None);
    s.commit(1, &doc(1)).unwrap();
    s.commit(2, &doc(2)).unwrap();
    assert_eq!(s.load(Slot::Current).unwrap(), Some(doc(2)));
    assert_eq!(s.load(Slot::Previous).unwrap(), Some(doc(1)));
    s.commit(3, &doc(3)).unwrap();
    assert!(
        !t.path().join("gen-00000001").exists(),
        "unreferenced generations are pruned"
    );

    assert!(s.rollback().unwrap());
    assert_eq!(s.generation(Slot::Current), Some(2));
    assert!(!t.path().join("gen-00000003").exists());

    s.stage(4, &doc(4)).unwrap();
    assert_eq!(s.generation(Slot::Current), Some(2));
    assert!(s.promote_staged().unwrap());
    assert_eq!(s.generation(Slot::Current), Some(4));
    assert_eq!(s.generation(Slot::Previous), Some(2));
    assert_eq!(s.load(Slot::Staged).unwrap(), None);
}
