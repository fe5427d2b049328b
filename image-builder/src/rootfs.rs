//! The read-only root image: a [`Tree`] packed as squashfs with `backhand`.
//!
//! Why backhand and not `mksquashfs`: it is pure Rust (no tool on the build
//! host), and with every header fixed (mtime clamped, uid/gid 0, root 0755,
//! superblock time = `SOURCE_DATE_EPOCH`) and entries added in sorted order its
//! output is byte-identical across runs even with parallel compression;
//! `unsquashfs` and the kernel read it (both are tested). Why squashfs and not
//! erofs: the kernel module is in every distro kernel and backhand makes it
//! without external tools.

use crate::error::{Error, Result};
use crate::manifest::{FileKind, FileRecord};
use crate::profile::{RootfsCompression, RootfsSettings};
use crate::tree::{Content, Node, Tree};
use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemReader, FilesystemWriter, InnerNode, NodeHeader};
use std::io::{BufReader, BufWriter, Cursor, Write};
use std::path::Path;

/// Writes `tree` as a squashfs image to `out`.
pub fn write(tree: &Tree, settings: RootfsSettings, out: &Path) -> Result<()> {
    let fail = |e: backhand::BackhandError| Error::RootImage(format!("{}: {e}", out.display()));
    let mut fs = FilesystemWriter::default();
    fs.set_time(tree.epoch());
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    let compressor = match settings.compression {
        RootfsCompression::Zstd => Compressor::Zstd,
        RootfsCompression::Gzip => Compressor::Gzip,
    };
    fs.set_compressor(FilesystemCompressor::new(compressor, None).map_err(fail)?);
    for (path, entry) in tree.entries() {
        let rel = path.trim_start_matches('/');
        let header = |mode: u32| NodeHeader::new((mode & 0o7777) as u16, 0, 0, entry.mtime);
        match &entry.node {
            Node::Dir { mode } => fs.push_dir(rel, header(*mode)).map_err(fail)?,
            Node::File {
                content: Content::Host(src),
                mode,
            } => fs
                .push_file_from_path(src.clone(), rel, header(*mode))
                .map_err(fail)?,
            Node::File {
                content: Content::Bytes(data),
                mode,
            } => fs
                .push_file(Cursor::new(data.clone()), rel, header(*mode))
                .map_err(fail)?,
            Node::Symlink { target } => {
                fs.push_symlink(target, rel, header(0o777)).map_err(fail)?
            }
            Node::CharDevice { major, minor, mode } => fs
                .push_char_device(makedev(*major, *minor), rel, header(*mode))
                .map_err(fail)?,
        }
    }
    let file = std::fs::File::create(out).map_err(Error::io("creating", out))?;
    let mut w = BufWriter::new(file);
    fs.write(&mut w).map_err(fail)?;
    w.flush().map_err(Error::io("writing", out))?;
    Ok(())
}

/// Whether `bytes` start like a squashfs 4 image.
pub fn is_squashfs(bytes: &[u8]) -> bool {
    bytes.starts_with(b"hsqs")
}

/// Lists a squashfs image with each file's sha256, sorted by path.
pub fn list(image: &Path) -> Result<Vec<FileRecord>> {
    let f = std::fs::File::open(image).map_err(Error::io("opening", image))?;
    list_from(BufReader::new(f), image)
}

/// As [`list`], for an image held in memory (e.g. read out of an initramfs).
pub fn list_bytes(data: &[u8], name: &Path) -> Result<Vec<FileRecord>> {
    list_from(Cursor::new(data), name)
}

fn list_from<R: backhand::BufReadSeek>(r: R, name: &Path) -> Result<Vec<FileRecord>> {
    let fail = |e: String| Error::Inspect {
        path: name.to_path_buf(),
        reason: format!("not a readable squashfs image: {e}"),
    };
    let fs = FilesystemReader::from_reader(r).map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    for node in fs.files() {
        let path = node.fullpath.to_string_lossy().into_owned();
        if path == "/" {
            continue;
        }
        let mode = u32::from(node.header.permissions) & 0o7777;
        let record = match &node.inner {
            InnerNode::Dir(_) => FileRecord::dir(path, mode),
            InnerNode::Symlink(s) => {
                FileRecord::symlink(path, s.link.to_string_lossy().into_owned())
            }
            InnerNode::File(file) => {
                let (sha, size) = crate::hash::reader(fs.file(file).reader())
                    .map_err(|e| fail(format!("reading {path}: {e}")))?;
                FileRecord::file(path, mode, size, sha)
            }
            InnerNode::CharacterDevice(d) => {
                let (major, minor) = split_dev(d.device_number);
                FileRecord::char_device(path, mode, major, minor)
            }
            _ => FileRecord {
                path,
                kind: FileKind::Other,
                mode: FileRecord::mode_text(mode),
                size: None,
                sha256: None,
                target: None,
                rdev: None,
            },
        };
        out.push(record);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The kernel's `new_encode_dev`, which squashfs stores.
fn makedev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn split_dev(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}
