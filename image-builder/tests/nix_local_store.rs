//! Local store paths and closure files, checked against what Nix 2.8 itself reports.

mod nix_support;

use std::collections::BTreeSet;
use std::fs;

use image_builder::nix::{
    ClosureFormat, LocalStore, StorePath, nar_hash_of_path, read_closure_file,
};
use nix_support::{describe_tree, fixture};

#[test]
fn nar_hash_of_local_paths_matches_nix() {
    let fx = fixture();
    let store = LocalStore::new(fx.store_root.join("nix/store"));
    let closure = fx.closure();
    let info = fx.path_info();
    let inputs = store.inputs(&closure, 2).expect("hash local paths");
    assert_eq!(inputs.len(), closure.len());
    for input in &inputs {
        let path = input.store_path.to_string();
        let nix_hash = fx.nix_store(&["-q", "--hash", &path]);
        assert_eq!(
            input.nar_hash_nix32(),
            nix_hash.trim(),
            "nix-store -q --hash {path}"
        );
        let (sri, size, _) = &info[&path];
        assert_eq!(&input.nar_hash_sri(), sri, "nix path-info {path}");
        assert_eq!(input.nar_size, *size, "{path}");
        assert!(
            input.references.is_none(),
            "a bare local path has unknown references"
        );
    }
    // And for any tree, the same as hashing `nix-store --dump`.
    let main = fx.physical(&fx.main);
    let (hash, size) = nar_hash_of_path(&main).expect("hash");
    let mut dump = fx.cmd("nix-store");
    dump.arg("--dump").arg(&main);
    let nar = nix_support::run_bytes(dump);
    assert_eq!(size, nar.len() as u64);
    assert_eq!(
        hash.to_nix_nixbase32_string(),
        fx.nix_store(&["-q", "--hash", &fx.main.to_string()]).trim()
    );
}

#[test]
fn local_inputs_unpack_like_nix_store_restore() {
    let fx = fixture();
    let store = LocalStore::new(fx.store_root.join("nix/store"));
    let work = tempfile::tempdir().expect("tempdir");
    let image = work.path().join("image");
    fs::create_dir(&image).expect("image");
    for input in store.inputs(&fx.closure(), 2).expect("inputs") {
        input.unpack_into(&image).expect("unpack");
        let ours = image.join("nix/store").join(input.store_path.to_basename());
        let theirs = work.path().join(input.store_path.to_basename());
        fx.restore_with_nix(&input.store_path, &theirs);
        assert_eq!(describe_tree(&ours), describe_tree(&theirs));
    }
}

#[test]
fn export_references_graph_closure_file() {
    let fx = fixture();
    let closure = read_closure_file(&fx.graph_file).expect("closure file");
    assert_eq!(closure.format, ClosureFormat::ReferencesGraph);
    assert_eq!(closure.paths, fx.closure());

    let store = LocalStore::new(fx.store_root.join("nix/store"));
    let inputs = store.closure_inputs(&closure, 2).expect("inputs");
    let info = fx.path_info();
    for input in inputs {
        let path = input.store_path.to_string();
        let want: BTreeSet<String> = info[&path]
            .2
            .iter()
            .filter(|r| **r != path)
            .cloned()
            .collect();
        let got: BTreeSet<String> = input
            .references
            .as_ref()
            .expect("graph gives references")
            .iter()
            .map(StorePath::to_string)
            .collect();
        assert_eq!(got, want, "{path}");
        assert_eq!(input.nar_hash_sri(), info[&path].0, "{path}");
    }
}

#[test]
fn store_paths_closure_file_and_dump_db_registration() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");

    // `nix-store -qR` prints the same one-path-per-line format as closureInfo's store-paths.
    let list = work.path().join("store-paths");
    fs::write(&list, fx.nix_store(&["-qR", &fx.main.to_string()])).expect("write");
    let closure = read_closure_file(&list).expect("store-paths");
    assert_eq!(closure.format, ClosureFormat::StorePaths);
    assert_eq!(closure.paths, fx.closure());
    assert!(closure.references.is_none());

    // closureInfo's `registration` is `nix-store --dump-db` output (with NAR hashes and sizes).
    let reg = work.path().join("registration");
    let mut args = vec!["--dump-db".to_owned()];
    args.extend(fx.closure().iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fs::write(&reg, fx.nix_store(&args)).expect("write");
    let closure = read_closure_file(&reg).expect("registration");
    assert_eq!(closure.format, ClosureFormat::ReferencesGraph);
    assert_eq!(closure.paths, fx.closure());

    // A closure that misses a referenced path is refused, naming both paths and the file.
    let text = fs::read_to_string(&list).expect("list");
    let lib = fx
        .closure()
        .into_iter()
        .find(|p| p.name() == "basalt-lib")
        .expect("lib in closure");
    let graph = fs::read_to_string(&fx.graph_file).expect("graph");
    let mut records: Vec<&str> = graph.split_inclusive('\n').collect();
    // lib's own record (path, empty deriver, no references), not a mention as a reference.
    let at = records
        .windows(3)
        .position(|w| w[0].trim_end() == lib.to_string() && w[1] == "\n" && w[2] == "0\n")
        .expect("lib record");
    records.drain(at..at + 3); // path, deriver, "0"
    let broken = work.path().join("broken");
    fs::write(&broken, records.concat()).expect("write");
    let e = read_closure_file(&broken).expect_err("incomplete");
    let msg = e.to_string();
    assert!(
        msg.contains("broken") && msg.contains(&lib.to_string()),
        "{msg}"
    );
    assert!(text.contains(&lib.to_string()));
}
