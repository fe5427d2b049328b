//! The initramfs: a [`Tree`] written as a compressed newc cpio with the
//! `initramfs` crate, and read back for `inspect` and `verify`.

use crate::error::{Error, Result};
use crate::manifest::FileRecord;
use crate::profile::Compression;
use crate::tree::{Content, Node, Tree};
use initramfs::{Archive, Codec, Entry, FileType};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The initramfs output's file name for a compression.
pub fn output_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Zstd => "initramfs.cpio.zst",
        Compression::Gzip => "initramfs.cpio.gz",
        Compression::None => "initramfs.cpio",
    }
}

fn codec_settings(compression: Compression) -> initramfs::Compression {
    match compression {
        Compression::Zstd => initramfs::Compression::default(),
        Compression::Gzip => initramfs::Compression::gzip_default(),
        Compression::None => initramfs::Compression::None,
    }
}

/// Writes `tree` as an initramfs to `out`.
pub fn write(tree: &Tree, compression: Compression, out: &Path) -> Result<()> {
    let fail = |e: initramfs::Error| Error::Initramfs(format!("{}: {e}", out.display()));
    let mut archive = Archive::new(tree.epoch());
    for (path, entry) in tree.entries() {
        let e = match &entry.node {
            Node::Dir { mode } => Entry::directory(*mode),
            Node::File {
                content: Content::Host(src),
                mode,
            } => Entry::file(src.clone(), *mode),
            Node::File {
                content: Content::Bytes(data),
                mode,
            } => Entry::bytes(data.clone(), *mode),
            Node::Symlink { target } => Entry::symlink(target.clone()),
            Node::CharDevice { major, minor, mode } => Entry::char_device(*major, *minor, *mode),
        };
        archive
            .insert(path, e.with_mtime(i64::from(entry.mtime)))
            .map_err(fail)?;
    }
    let file = std::fs::File::create(out).map_err(Error::io("creating", out))?;
    let mut w = BufWriter::new(file);
    initramfs::write_initramfs(&mut w, None, &archive, codec_settings(compression))
        .map_err(fail)?;
    w.flush().map_err(Error::io("writing", out))?;
    Ok(())
}

/// Whether `head` starts like something [`list`] can read.
pub fn looks_like_initramfs(head: &[u8]) -> bool {
    head.starts_with(b"070701")
        || head.starts_with(b"070702")
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(&[0x1f, 0x8b])
}

/// Lists an initramfs (any compression the kernel accepts that the reader
/// knows) with each file's sha256, in archive order, paths made absolute.
pub fn list(path: &Path) -> Result<Vec<FileRecord>> {
    let f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut out = Vec::new();
    for entry in initramfs::Reader::new(BufReader::new(f)) {
        let e = entry.map_err(|e| Error::Inspect {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let name = format!("/{}", e.path.to_string_lossy());
        let mode = e.permissions();
        out.push(match e.file_type {
            FileType::Directory => FileRecord::dir(name, mode),
            FileType::Regular => FileRecord::file(name, mode, u64::from(e.size), e.sha256_hex()),
            FileType::Symlink => FileRecord::symlink(
                name,
                e.symlink_target
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            FileType::CharDevice => FileRecord::char_device(name, mode, e.rdev_major, e.rdev_minor),
            _ => FileRecord {
                path: name,
                kind: crate::manifest::FileKind::Other,
                mode: FileRecord::mode_text(mode),
                size: None,
                sha256: None,
                target: None,
                rdev: None,
            },
        });
    }
    Ok(out)
}

/// The contents of regular file `inner` (absolute in-image path) of the
/// initramfs at `path`: located with the reader, then decompressed again up
/// to it, so only that file is held in memory.
pub fn read_file(path: &Path, inner: &str) -> Result<Vec<u8>> {
    let fail = |reason: String| Error::Inspect {
        path: path.to_path_buf(),
        reason,
    };
    let wanted = inner.trim_start_matches('/');
    let f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut found = None;
    for entry in initramfs::Reader::new(BufReader::new(f)) {
        let e = entry.map_err(|e| fail(e.to_string()))?;
        if e.path.as_os_str() == wanted && e.file_type == FileType::Regular {
            found = Some(e);
            break;
        }
    }
    let e = found.ok_or_else(|| fail(format!("no file {inner} in it")))?;
    let mut f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    f.seek(SeekFrom::Start(e.segment.file_offset))
        .map_err(Error::io("seeking in", path))?;
    let input = BufReader::new(f);
    let mut stream: Box<dyn Read> = match e.segment.codec {
        Codec::None => Box::new(input),
        Codec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(Error::io("decompressing", path))?,
        ),
        Codec::Gzip => Box::new(flate2::bufread::GzDecoder::new(input)),
    };
    // newc: 110-byte header, the name with its NUL, padding to 4 bytes.
    let name_len = e.path.as_os_str().len() as u64 + 1;
    let data_start = e.offset + (110 + name_len).div_ceil(4) * 4;
    std::io::copy(&mut (&mut stream).take(data_start), &mut std::io::sink())
        .map_err(Error::io("decompressing", path))?;
    let mut data = Vec::with_capacity(e.size as usize);
    (&mut stream)
        .take(u64::from(e.size))
        .read_to_end(&mut data)
        .map_err(Error::io("decompressing", path))?;
    if data.len() != e.size as usize {
        return Err(fail(format!("{inner}: truncated")));
    }
    if crate::hash::bytes(&data) != e.sha256_hex() {
        return Err(fail(format!(
            "{inner}: contents differ from what the reader saw"
        )));
    }
    Ok(data)
}
