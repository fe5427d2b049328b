//! A `file://` binary cache written by Nix 2.8's `nix copy`, consumed by our fetcher: the unpacked
//! trees must equal `nix-store --restore`, and every kind of tampering must be refused with a
//! clear error and nothing left behind.

mod nix_support;

use std::fs;
use std::path::{Path, PathBuf};

use image_builder::nix::{BinaryCache, Error, NixHash, TrustedKeys, parse_store_path};
use nix_support::{KEY_NAME, describe_tree, fixture, list_all};
use sha2::{Digest, Sha256};

fn keys() -> TrustedKeys {
    TrustedKeys::parse([fixture().public_key.as_str()]).expect("trusted key")
}

fn open(cache: &Path, cache_dir: &Path, keys: TrustedKeys) -> BinaryCache {
    BinaryCache::open(&format!("file://{}", cache.display()), keys, cache_dir).expect("open cache")
}

/// Copy a cache written by Nix so a test can tamper with its copy.
fn copy_cache(compression: &str, dest: &Path) -> PathBuf {
    let src = &fixture().caches[compression];
    let dest = dest.join(format!("cache-{compression}"));
    for entry in list_all(src).iter().rev() {
        let rel = entry.strip_prefix(src).expect("under cache");
        let to = dest.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&to).expect("mkdir");
        } else {
            fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            fs::copy(entry, &to).expect("copy");
        }
    }
    dest
}

fn narinfo_path(cache: &Path, store_path: &str) -> PathBuf {
    let base = store_path.trim_start_matches("/nix/store/");
    cache.join(format!("{}.narinfo", &base[..32]))
}

fn edit_narinfo(cache: &Path, store_path: &str, edit: impl Fn(&str) -> String) {
    let p = narinfo_path(cache, store_path);
    let text = fs::read_to_string(&p).expect("narinfo");
    let edited = edit(&text);
    assert_ne!(text, edited, "the edit must change the narinfo");
    fs::write(&p, edited).expect("write narinfo");
}

fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_owned()
}

fn assert_nothing_fetched(cache_dir: &Path) {
    for sub in ["nar", "tmp"] {
        let left = list_all(&cache_dir.join(sub));
        assert!(left.is_empty(), "left in {sub}: {left:?}");
    }
}

fn fetch_and_compare(compression: &str) {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let cache = open(
        &fx.caches[compression],
        &work.path().join("cache-dir"),
        keys(),
    );
    let inputs = cache
        .fetch_closure(std::slice::from_ref(&fx.main), 3)
        .expect("fetch closure");

    // The closure walked from the narinfos' References equals Nix's own closure.
    let got: Vec<_> = inputs.iter().map(|i| i.store_path.clone()).collect();
    assert_eq!(got, fx.closure());
    assert_eq!(got.len(), 6, "main, lib and four deps");

    let info = fx.path_info();
    let image = work.path().join("image");
    fs::create_dir(&image).expect("image dir");
    for input in &inputs {
        let path = input.store_path.to_string();
        let (nar_hash, nar_size, refs) = &info[&path];
        assert_eq!(&input.nar_hash_sri(), nar_hash, "{path}");
        assert_eq!(input.nar_size, *nar_size, "{path}");
        let mut want_refs: Vec<String> = refs.iter().filter(|r| **r != path).cloned().collect();
        want_refs.sort();
        let got_refs: Vec<String> = input
            .references
            .as_ref()
            .expect("narinfo references")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got_refs, want_refs, "{path}");

        let stats = input.unpack_into(&image).expect("unpack");
        assert_eq!(stats.nar_size, input.nar_size);
        let ours = image.join("nix/store").join(input.store_path.to_basename());
        let theirs = work
            .path()
            .join(format!("restored-{}", input.store_path.to_basename()));
        fx.restore_with_nix(&input.store_path, &theirs);
        assert_eq!(describe_tree(&ours), describe_tree(&theirs), "{path}");
    }

    // main has every node type the image needs: a regular file, an executable, relative and
    // absolute symlinks, nested and empty directories.
    let main = describe_tree(&image.join("nix/store").join(fx.main.to_basename()));
    let kinds = |prefix: &str| main.iter().filter(|(_, d)| d.starts_with(prefix)).count();
    assert!(kinds("regular exec=true") >= 1, "{main:?}");
    assert!(kinds("regular exec=false") >= 3, "{main:?}");
    assert!(kinds("symlink") >= 2, "{main:?}");
    assert!(
        main.iter()
            .any(|(p, d)| p == "share/empty" && d == "directory"),
        "{main:?}"
    );
    assert!(list_all(&work.path().join("cache-dir/tmp")).is_empty());
}

#[test]
fn xz_cache_unpacks_like_nix_store_restore() {
    fetch_and_compare("xz");
}

#[test]
fn zstd_cache_unpacks_like_nix_store_restore() {
    fetch_and_compare("zstd");
}

#[test]
fn uncompressed_cache_unpacks_like_nix_store_restore() {
    fetch_and_compare("none");
}

#[test]
fn fetch_without_closure_takes_only_the_named_paths() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let cache = open(&fx.caches["xz"], work.path(), keys());
    let inputs = cache
        .fetch(std::slice::from_ref(&fx.main), 2)
        .expect("fetch");
    assert_eq!(inputs.len(), 1);
    assert_eq!(inputs[0].store_path, fx.main);
    assert_eq!(inputs[0].references.as_ref().map(|r| r.len()), Some(5));
}

#[test]
fn refuses_a_cache_signed_by_an_untrusted_key() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    // Another valid key, under another name.
    let other = "someone-else-1:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=";
    let cache = open(
        &fx.caches["xz"],
        work.path(),
        TrustedKeys::parse([other]).expect("k"),
    );
    let e = cache
        .fetch_closure(std::slice::from_ref(&fx.main), 2)
        .expect_err("untrusted");
    let msg = e.to_string();
    assert!(matches!(e, Error::Untrusted { .. }), "{msg}");
    assert!(msg.contains(&fx.main.to_string()), "{msg}");
    assert!(msg.contains("trusted keys: [someone-else-1]"), "{msg}");
    assert!(
        msg.contains(&format!("signatures present by: [{KEY_NAME}]")),
        "{msg}"
    );

    // The right name with the wrong key material.
    let same_name = format!("{KEY_NAME}:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=");
    let cache = open(
        &fx.caches["xz"],
        work.path(),
        TrustedKeys::parse([same_name]).expect("k"),
    );
    let e = cache
        .fetch(std::slice::from_ref(&fx.main), 2)
        .expect_err("wrong key");
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert_nothing_fetched(work.path());
}

type NarInfoEdit = dyn Fn(&str) -> String;

#[test]
fn refuses_a_narinfo_whose_signed_fields_were_edited() {
    let fx = fixture();
    let main = fx.main.to_string();
    let edits: [(&str, &NarInfoEdit); 3] = [
        ("NarHash", &|t: &str| {
            let h = field(t, "NarHash");
            let mut forged = h.clone();
            forged.pop();
            forged.push(if h.ends_with('0') { '1' } else { '0' });
            t.replace(&h, &forged)
        }),
        ("NarSize", &|t: &str| {
            let s = field(t, "NarSize");
            t.replace(
                &format!("NarSize: {s}"),
                &format!("NarSize: {}", s.len() + 1000),
            )
        }),
        ("References", &|t: &str| {
            let r = field(t, "References");
            let fewer: Vec<&str> = r.split(' ').skip(1).collect();
            t.replace(
                &format!("References: {r}"),
                &format!("References: {}", fewer.join(" ")),
            )
        }),
    ];
    for (what, edit) in edits {
        let work = tempfile::tempdir().expect("tempdir");
        let cache_copy = copy_cache("xz", work.path());
        edit_narinfo(&cache_copy, &main, edit);
        let cache = open(&cache_copy, &work.path().join("cache-dir"), keys());
        let e = cache
            .fetch_closure(std::slice::from_ref(&fx.main), 2)
            .expect_err(what);
        let msg = e.to_string();
        assert!(matches!(e, Error::Untrusted { .. }), "{what}: {msg}");
        assert!(
            msg.contains(&main) && msg.contains("does not verify"),
            "{what}: {msg}"
        );
        assert_nothing_fetched(&work.path().join("cache-dir"));
    }
}

#[test]
fn refuses_a_corrupted_nar_file() {
    let fx = fixture();
    for compression in ["xz", "none"] {
        let work = tempfile::tempdir().expect("tempdir");
        let cache_copy = copy_cache(compression, work.path());
        let text = fs::read_to_string(narinfo_path(&cache_copy, &fx.main.to_string())).expect("ni");
        let nar = cache_copy.join(field(&text, "URL"));
        let mut bytes = fs::read(&nar).expect("nar");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&nar, bytes).expect("write");

        let cache = open(&cache_copy, &work.path().join("cache-dir"), keys());
        let e = cache
            .fetch(std::slice::from_ref(&fx.main), 1)
            .expect_err("corrupt");
        let msg = e.to_string();
        assert!(msg.contains("FileHash mismatch"), "{compression}: {msg}");
        assert!(msg.contains(&fx.main.to_string()), "{msg}");
        assert!(
            msg.contains(&field(&text, "FileHash")),
            "expected hash named: {msg}"
        );
        assert_nothing_fetched(&work.path().join("cache-dir"));
    }
}

/// URL, FileHash and FileSize are outside the signed fingerprint, so a cache can keep a valid
/// signature while pointing at other content; only the NarHash check catches that.
#[test]
fn refuses_a_validly_signed_narinfo_pointing_at_other_content() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let cache_copy = copy_cache("none", work.path());
    let main = fx.main.to_string();
    let text = fs::read_to_string(narinfo_path(&cache_copy, &main)).expect("narinfo");
    let mut nar = fs::read(cache_copy.join(field(&text, "URL"))).expect("nar");
    // Same length, different content: "hello\n" becomes "jello\n".
    let at = nar
        .windows(6)
        .position(|w| w == b"hello\n")
        .expect("file contents in NAR");
    nar[at] = b'j';
    let digest: [u8; 32] = Sha256::digest(&nar).into();
    let file_hash = NixHash::Sha256(digest).to_nix_nixbase32_string();
    let name = format!("nar/{}.nar", file_hash.trim_start_matches("sha256:"));
    fs::write(cache_copy.join(&name), &nar).expect("write forged nar");
    edit_narinfo(&cache_copy, &main, |t| {
        t.replace(&field(t, "URL"), &name).replace(
            &format!("FileHash: {}", field(t, "FileHash")),
            &format!("FileHash: {file_hash}"),
        )
    });

    let cache = open(&cache_copy, &work.path().join("cache-dir"), keys());
    let e = cache
        .fetch(std::slice::from_ref(&fx.main), 1)
        .expect_err("forged content");
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            Error::HashMismatch {
                what: "NarHash",
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains(&main) && msg.contains(&field(&text, "NarHash")),
        "{msg}"
    );
    assert!(
        msg.contains(&file_hash[7..]),
        "the got-hash is named: {msg}"
    );
    assert_nothing_fetched(&work.path().join("cache-dir"));
}

/// A NAR corrupted in the local cache directory after download is caught when unpacking, and the
/// image is left without the path (and without the parents the unpack created).
#[test]
fn refuses_a_cached_nar_that_changed_on_disk() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let cache = open(&fx.caches["zstd"], &work.path().join("cache-dir"), keys());
    let inputs = cache
        .fetch(std::slice::from_ref(&fx.main), 1)
        .expect("fetch");
    let image_builder::nix::NarSource::NarFile(file) = &inputs[0].source else {
        panic!("a cache input comes from a NAR file");
    };
    let mut bytes = fs::read(file).expect("cached nar");
    let at = bytes
        .windows(6)
        .position(|w| w == b"hello\n")
        .expect("contents");
    bytes[at] = b'j';
    fs::write(file, bytes).expect("write");

    let image = work.path().join("image");
    fs::create_dir(&image).expect("image");
    let e = inputs[0].unpack_into(&image).expect_err("changed on disk");
    assert!(e.to_string().contains("NarHash mismatch"), "{e}");
    assert!(list_all(&image).is_empty(), "{:?}", list_all(&image));
}

#[test]
fn reports_paths_missing_from_the_cache() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let cache = open(&fx.caches["xz"], work.path(), keys());
    let absent = parse_store_path("/nix/store/00000000000000000000000000000000-absent").expect("p");
    let e = cache.fetch(&[absent], 1).expect_err("absent");
    assert!(matches!(e, Error::NotInCache { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("00000000000000000000000000000000-absent"),
        "{e}"
    );
}
