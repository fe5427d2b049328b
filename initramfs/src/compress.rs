//! Compression settings and writing complete initramfs files (early + compressed main archive).

use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroU32;

use crate::error::{Error, Result};
use crate::writer::{Archive, WriteSummary};

/// zstd level used by [`Compression::default`]. Level 3 keeps image assembly at least as fast
/// as `cpio | zstd -3`; choose 19 for the smallest images at roughly 10× the CPU time.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// gzip level used by [`Compression::gzip_default`].
pub const DEFAULT_GZIP_LEVEL: u32 = 9;

/// How the main archive is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// gzip with a fixed header: mtime 0, no file name, OS byte 255, so output is reproducible.
    Gzip {
        level: u32,
    },
    /// A single zstd frame with a content checksum, always compressed by zstd's multithreaded
    /// engine. Its output depends on the level but not on the worker count (see the
    /// `zstd_output_independent_of_workers` test), so `workers` only changes speed.
    /// `None` means one worker per available core.
    Zstd {
        level: i32,
        workers: Option<NonZeroU32>,
    },
}

impl Default for Compression {
    /// zstd at [`DEFAULT_ZSTD_LEVEL`] with one worker per core.
    fn default() -> Self {
        Self::zstd(DEFAULT_ZSTD_LEVEL)
    }
}

impl Compression {
    /// zstd at `level` with one worker per core.
    pub fn zstd(level: i32) -> Self {
        Self::Zstd {
            level,
            workers: None,
        }
    }

    /// gzip at [`DEFAULT_GZIP_LEVEL`].
    pub fn gzip_default() -> Self {
        Self::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Self::None => Codec::None,
            Self::Gzip { .. } => Codec::Gzip,
            Self::Zstd { .. } => Codec::Zstd,
        }
    }

    /// Writes `archive` compressed to `out`; returns the uncompressed summary.
    pub fn write_archive<W: Write>(&self, archive: &Archive, out: W) -> Result<WriteSummary> {
        match *self {
            Self::None => archive.write_to(out),
            Self::Gzip { level } => {
                if level > 9 {
                    return Err(Error::InvalidCompression(format!(
                        "gzip level {level} is not in 0..=9"
                    )));
                }
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, flate2::Compression::new(level));
                let summary = archive.write_to(&mut enc)?;
                enc.finish().map_err(|source| Error::Compress {
                    codec: "gzip",
                    source,
                })?;
                Ok(summary)
            }
            Self::Zstd { level, workers } => {
                let range = zstd::compression_level_range();
                if !range.contains(&level) {
                    return Err(Error::InvalidCompression(format!(
                        "zstd level {level} is not in {}..={}",
                        range.start(),
                        range.end()
                    )));
                }
                let workers = workers.map_or_else(default_workers, NonZeroU32::get);
                let zstd_err = |source| Error::Compress {
                    codec: "zstd",
                    source,
                };
                let mut enc = zstd::stream::write::Encoder::new(out, level).map_err(zstd_err)?;
                enc.include_checksum(true).map_err(zstd_err)?;
                // Never 0: zstd's single-threaded mode frames its output differently from
                // the multithreaded one, which would make bytes depend on configuration.
                enc.multithread(workers).map_err(zstd_err)?;
                let summary = archive.write_to(&mut enc)?;
                enc.finish().map_err(zstd_err)?;
                Ok(summary)
            }
        }
    }
}

/// One zstd worker per available core (at least 1).
pub fn default_workers() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

/// What [`write_initramfs`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitramfsSummary {
    pub early: Option<WriteSummary>,
    pub main: WriteSummary,
    /// Bytes written to the output file.
    pub output_bytes: u64,
}

/// Writes an initramfs: the optional `early` archive uncompressed (the kernel only finds early
/// microcode there), then `main` compressed with `compression`.
///
/// The kernel unpacks such concatenations in order; [`crate::Reader`] reads them back.
pub fn write_initramfs<W: Write>(
    out: W,
    early: Option<&Archive>,
    main: &Archive,
    compression: Compression,
) -> Result<InitramfsSummary> {
    let mut out = Counting {
        inner: out,
        written: 0,
    };
    let early = early.map(|a| a.write_to(&mut out)).transpose()?;
    let main = compression.write_archive(main, &mut out)?;
    out.flush().map_err(|source| Error::Compress {
        codec: compression.codec().name(),
        source,
    })?;
    Ok(InitramfsSummary {
        early,
        main,
        output_bytes: out.written,
    })
}

/// A compression format as found in an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    None,
    Gzip,
    Zstd,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the bytes at a segment boundary announce.
pub(crate) enum Magic {
    Cpio,
    Codec(Codec),
    /// A compressor the kernel may know but this crate does not read.
    Unsupported(&'static str),
    Unknown,
}

/// Needs up to 6 bytes; fewer only at the end of input.
pub(crate) fn detect(buf: &[u8]) -> Magic {
    const KNOWN: &[(&[u8], Magic)] = &[
        (b"07070", Magic::Cpio),
        (&[0x28, 0xb5, 0x2f, 0xfd], Magic::Codec(Codec::Zstd)),
        (&[0x1f, 0x8b], Magic::Codec(Codec::Gzip)),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], Magic::Unsupported("xz")),
        (&[0x5d, 0, 0], Magic::Unsupported("lzma")),
        (b"BZh", Magic::Unsupported("bzip2")),
        (&[0x89, b'L', b'Z', b'O'], Magic::Unsupported("lzo")),
        (&[0x02, 0x21, 0x4c, 0x18], Magic::Unsupported("lz4")),
    ];
    for (magic, kind) in KNOWN {
        if buf.starts_with(magic) {
            return match kind {
                Magic::Cpio => Magic::Cpio,
                Magic::Codec(c) => Magic::Codec(*c),
                Magic::Unsupported(name) => Magic::Unsupported(name),
                Magic::Unknown => Magic::Unknown,
            };
        }
    }
    Magic::Unknown
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
