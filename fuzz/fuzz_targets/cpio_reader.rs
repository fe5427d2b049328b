//! initramfs files read by `initramfs::Reader` (image-builder's `inspect`
//! and `verify` read whatever file they are pointed at): newc archives,
//! plain, zstd or gzip, concatenated.
//!
//! Input: an initramfs file. Seeds are GNU `cpio -o -H newc` (and `-H crc`)
//! archives, also compressed and concatenated.
//!
//! Properties:
//! - reading never panics, and stops at the first error;
//! - every member's contents (located by its header offset in its segment,
//!   decompressed here independently of the reader) hash to the SHA-256 the
//!   reader reports, and a symlink's contents are its target;
//! - our writer re-writes what was read: every member it accepts (valid,
//!   unique paths; no sockets) reads back from the new archive with the same
//!   type, permissions (symlinks: 0777), mtime, size, contents and device
//!   numbers, and
//!   everything else read back is a parent directory the writer synthesized.
#![no_main]

use initramfs::{
    Archive, Codec, Entry, FileType, ReadEntry, Reader, SYNTHESIZED_DIR_PERMISSIONS, SegmentInfo,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Decompressed bytes this target keeps per segment; past it the round
/// trip is skipped (the reader itself streams and has no such limit).
const MAX_SEGMENT: u64 = 16 << 20;
const HEADER_LEN: usize = 110;

/// The decompressed stream of `segment`, or `None` past [`MAX_SEGMENT`].
fn segment_bytes(data: &[u8], segment: &SegmentInfo) -> Option<Vec<u8>> {
    let from = usize::try_from(segment.file_offset).ok()?;
    let mut out = Vec::new();
    let input = data.get(from..)?;
    let read = match segment.codec {
        Codec::None => return Some(data.to_vec()),
        Codec::Zstd => zstd::stream::read::Decoder::new(input)
            .ok()?
            .single_frame()
            .take(MAX_SEGMENT + 1)
            .read_to_end(&mut out),
        Codec::Gzip => flate2::read::GzDecoder::new(input)
            .take(MAX_SEGMENT + 1)
            .read_to_end(&mut out),
    };
    read.expect("the reader read this segment");
    (out.len() as u64 <= MAX_SEGMENT).then_some(out)
}

/// A member's contents, from the stream its header is in.
fn contents<'a>(stream: &'a [u8], e: &ReadEntry) -> &'a [u8] {
    let name_end = HEADER_LEN + e.path.as_os_str().len() + 1;
    let start = e.offset as usize + name_end.next_multiple_of(4);
    &stream[start..start + e.size as usize]
}

fn writer_entry(e: &ReadEntry, data: Vec<u8>) -> Option<Entry> {
    let p = e.permissions();
    let entry = match e.file_type {
        FileType::Regular => Entry::bytes(data, p),
        FileType::Directory => Entry::directory(p),
        FileType::Symlink => Entry::symlink(e.symlink_target.clone()?),
        FileType::CharDevice => Entry::char_device(e.rdev_major, e.rdev_minor, p),
        FileType::BlockDevice => Entry::block_device(e.rdev_major, e.rdev_minor, p),
        FileType::Fifo => Entry::fifo(p),
        FileType::Socket => return None,
    };
    Some(entry.with_mtime(i64::from(e.mtime)))
}

/// What a re-read member must keep. Symlinks are written `0o777`, as
/// Linux creates them, whatever the archive said.
fn kept(e: &ReadEntry) -> impl PartialEq + std::fmt::Debug {
    let devices = matches!(e.file_type, FileType::CharDevice | FileType::BlockDevice);
    let symlink = e.file_type == FileType::Symlink;
    (
        e.file_type,
        (!symlink).then_some(e.permissions()),
        e.mtime,
        e.size,
        e.sha256,
        e.symlink_target.clone(),
        devices.then_some((e.rdev_major, e.rdev_minor)),
    )
}

fn key(p: &Path) -> PathBuf {
    let raw = p.as_os_str().as_bytes();
    PathBuf::from(std::ffi::OsStr::from_bytes(
        raw.strip_prefix(b"/").unwrap_or(raw),
    ))
}

fuzz_target!(|data: &[u8]| {
    let mut entries = Vec::new();
    for item in Reader::new(data) {
        match item {
            Ok(e) => entries.push(e),
            Err(_) => return,
        }
    }
    let mut streams: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut archive = Archive::new(u32::MAX);
    let mut accepted: BTreeMap<PathBuf, ReadEntry> = BTreeMap::new();
    for e in &entries {
        if !streams.contains_key(&e.segment.index) {
            let Some(bytes) = segment_bytes(data, &e.segment) else {
                return;
            };
            streams.insert(e.segment.index, bytes);
        }
        let body = contents(&streams[&e.segment.index], e);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(body)), e.sha256, "{e:?}");
        if let Some(target) = &e.symlink_target {
            assert_eq!(target.as_os_str().as_bytes(), body);
        }
        let Some(entry) = writer_entry(e, body.to_vec()) else {
            continue;
        };
        if archive.insert(&e.path, entry).is_ok() {
            accepted.insert(key(&e.path), e.clone());
        }
    }
    let mut out = Vec::new();
    archive.write_to(&mut out).expect("writing to memory");
    let mut seen = 0;
    for item in Reader::new(out.as_slice()) {
        let back = item.expect("our own archive reads back");
        match accepted.get(&back.path) {
            Some(orig) => {
                assert_eq!(kept(&back), kept(orig), "{:?}", back.path);
                seen += 1;
            }
            None => {
                assert_eq!(back.file_type, FileType::Directory, "{back:?}");
                assert_eq!(back.permissions(), SYNTHESIZED_DIR_PERMISSIONS);
                assert!(
                    accepted.keys().any(|k| k.starts_with(&back.path)),
                    "{back:?}"
                );
            }
        }
    }
    assert_eq!(seen, accepted.len(), "every accepted member read back once");
});
