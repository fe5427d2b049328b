//! Reading newc archives back — compressed or not, concatenated or not — for listing and
//! verification.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, BufRead, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::compress::{Codec, Magic, detect};
use crate::error::{Error, Result, lossy};
use crate::newc::{
    HEADER_LEN, Header, PATH_MAX, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG,
    S_IFSOCK, TRAILER, pad4,
};

const INPUT_BUF_LEN: usize = 128 << 10;

/// A run of the input with one compression: an uncompressed stretch (which may hold several
/// archives) or one compressed stream (one zstd frame or one gzip member).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// 0 for the first segment holding archive data, then 1, 2, …
    pub index: usize,
    pub codec: Codec,
    /// Where the segment starts in the (outer) input.
    pub file_offset: u64,
}

impl fmt::Display for SegmentInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} ({}, starting at input byte {})",
            self.index, self.codec, self.file_offset
        )
    }
}

/// The file type encoded in an entry's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileType {
    fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & S_IFMT {
            S_IFREG => Self::Regular,
            S_IFDIR => Self::Directory,
            S_IFLNK => Self::Symlink,
            S_IFCHR => Self::CharDevice,
            S_IFBLK => Self::BlockDevice,
            S_IFIFO => Self::Fifo,
            S_IFSOCK => Self::Socket,
            _ => return None,
        })
    }
}

/// One archive member as read back. Contents are not kept, only their SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    /// As stored (no leading `/` or `./` added or removed).
    pub path: PathBuf,
    pub file_type: FileType,
    /// Full `st_mode`: file type and permission bits.
    pub mode: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    /// Content size (the target's length for symlinks).
    pub size: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub symlink_target: Option<PathBuf>,
    /// SHA-256 of the contents (of the target for symlinks; of nothing otherwise).
    pub sha256: [u8; 32],
    pub segment: SegmentInfo,
    /// Offset of the header in the segment's decompressed stream (in the input, uncompressed).
    pub offset: u64,
}

impl ReadEntry {
    /// Permission bits, `mode & 0o7777`.
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Reads every entry of `input`; see [`Reader`].
pub fn read_entries<R: Read>(input: R) -> Result<Vec<ReadEntry>> {
    Reader::new(input).collect()
}

/// Streaming iterator over the entries of an initramfs file.
///
/// Accepts what the kernel accepts in practice: newc (`070701`, and `070702` whose regular
/// files' checksums are verified) archives, each ending in `TRAILER!!!`, uncompressed or inside zstd frames or
/// gzip members, concatenated with optional zero padding between them. Each compressed
/// stream must hold whole archives. Parsing is strict: bad magic or hex, truncation,
/// unterminated names, non-zero padding, contents on entries that cannot have any, and
/// trailing garbage are errors carrying a byte offset. After the first error the iterator ends.
pub struct Reader<R: Read> {
    source: Source<R>,
    state: State,
    /// The segment entries are currently read from, once one has started.
    segment: Option<SegmentInfo>,
    segments_seen: usize,
    archives_seen: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before an archive: zero padding, another archive, a compressed stream, or the end.
    Between,
    InArchive,
    Done,
}

enum Source<R: Read> {
    Plain(Input<R>),
    Zstd(Input<zstd::stream::read::Decoder<'static, Input<R>>>),
    /// Boxed: with some flate2 backends the decoder is hundreds of bytes, and `Source` is
    /// moved on every switch between segments.
    Gzip(Box<Input<flate2::bufread::GzDecoder<Input<R>>>>),
    /// Only while switching between the variants above, or after a failed switch.
    Switching(Exhausted),
}

impl<R: Read> Source<R> {
    fn stream(&mut self) -> &mut dyn Stream {
        match self {
            Source::Plain(s) => s,
            Source::Zstd(s) => s,
            Source::Gzip(s) => &mut **s,
            Source::Switching(s) => s,
        }
    }

    fn is_plain(&self) -> bool {
        matches!(self, Source::Plain(_))
    }
}

impl<R: Read> Reader<R> {
    pub fn new(input: R) -> Self {
        Self {
            source: Source::Plain(Input::new(input)),
            state: State::Between,
            segment: None,
            segments_seen: 0,
            archives_seen: 0,
        }
    }

    /// The segment errors at the current position belong to.
    fn current_segment(&mut self) -> SegmentInfo {
        match self.segment {
            Some(s) => s,
            None => SegmentInfo {
                index: self.segments_seen,
                codec: Codec::None,
                file_offset: self.source.stream().pos(),
            },
        }
    }

    fn start_segment(&mut self, codec: Codec) {
        let file_offset = self.source.stream().pos();
        self.segment = Some(SegmentInfo {
            index: self.segments_seen,
            codec,
            file_offset,
        });
        self.segments_seen += 1;
    }

    fn malformed(&mut self, offset: u64, reason: String) -> Error {
        Error::Malformed {
            offset,
            segment: self.current_segment(),
            reason,
        }
    }

    fn next_entry(&mut self) -> Result<Option<ReadEntry>> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::InArchive => match self.read_member()? {
                    Some(entry) => return Ok(Some(entry)),
                    None => {
                        self.archives_seen += 1;
                        self.state = State::Between;
                    }
                },
                State::Between => self.advance_between()?,
            }
        }
    }

    fn advance_between(&mut self) -> Result<()> {
        let segment = self.current_segment();
        let stream = self.source.stream();
        let read_err = |stream: &mut dyn Stream, source| Error::Read {
            offset: stream.pos(),
            segment,
            source,
        };
        loop {
            let buf = match stream.fill() {
                Ok(buf) => buf,
                Err(e) => return Err(read_err(stream, e)),
            };
            let zeros = buf.iter().take_while(|&&b| b == 0).count();
            if zeros == 0 {
                break;
            }
            stream.consume(zeros);
        }
        let offset = stream.pos();
        let head = match stream.peek(6) {
            Ok(head) => head.to_vec(),
            Err(e) => return Err(read_err(stream, e)),
        };
        if head.is_empty() {
            return self.end_of_stream();
        }
        match detect(&head) {
            Magic::Cpio => {
                let starts_plain_segment =
                    self.source.is_plain() && self.segment.is_none_or(|s| s.codec != Codec::None);
                if starts_plain_segment {
                    self.start_segment(Codec::None);
                }
                self.state = State::InArchive;
                Ok(())
            }
            Magic::Codec(codec) if self.source.is_plain() => {
                self.start_segment(codec);
                self.open_compressed(codec)
            }
            Magic::Codec(codec) => Err(self.malformed(
                offset,
                format!("{codec} data nested inside a compressed segment"),
            )),
            Magic::Unsupported(name) => {
                Err(self.malformed(offset, format!("{name}-compressed data is not supported")))
            }
            Magic::Unknown => Err(self.malformed(
                offset,
                format!(
                    "expected a cpio header, compressed data or zero padding, found {}",
                    hex(&head)
                ),
            )),
        }
    }

    fn end_of_stream(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.source, Source::Switching(Exhausted)) {
            Source::Plain(input) => {
                self.source = Source::Plain(input);
                self.state = State::Done;
                if self.archives_seen == 0 {
                    let offset = self.source.stream().pos();
                    return Err(self.malformed(offset, "no cpio archive in input".into()));
                }
            }
            Source::Zstd(input) => {
                self.source = Source::Plain(input.into_inner().finish());
                self.segment = None;
            }
            Source::Gzip(input) => {
                self.source = Source::Plain((*input).into_inner().into_inner());
                self.segment = None;
            }
            Source::Switching(_) => self.state = State::Done,
        }
        Ok(())
    }

    fn open_compressed(&mut self, codec: Codec) -> Result<()> {
        let input = match std::mem::replace(&mut self.source, Source::Switching(Exhausted)) {
            Source::Plain(input) => input,
            other => {
                self.source = other;
                return Ok(());
            }
        };
        let segment = self.current_segment();
        let offset = input.pos;
        self.source = match codec {
            Codec::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|source| Error::Read {
                        offset,
                        segment,
                        source,
                    })?
                    // Stop at the frame's end so whatever follows is seen as a new segment.
                    .single_frame();
                Source::Zstd(Input::new(decoder))
            }
            Codec::Gzip => {
                Source::Gzip(Box::new(Input::new(flate2::bufread::GzDecoder::new(input))))
            }
            Codec::None => Source::Plain(input),
        };
        Ok(())
    }

    /// Reads one header and its name and contents; `None` for the trailer.
    fn read_member(&mut self) -> Result<Option<ReadEntry>> {
        let segment = self.current_segment();
        let stream = self.source.stream();
        let mut r = Cursor { stream, segment };
        let offset = r.pos();

        let raw = r.take_exact(HEADER_LEN, "header")?;
        let raw: &[u8; HEADER_LEN] = raw
            .as_slice()
            .try_into()
            .map_err(|_| r.malformed(offset, "short header".into()))?;
        let (header, crc) = Header::parse(raw)
            .map_err(|e| r.malformed(offset + e.offset_in_header as u64, e.reason))?;

        let name_offset = r.pos();
        let name = r.read_name(offset, header.namesize as usize)?;
        if name == TRAILER {
            r.contents(header.filesize, None)?;
            return Ok(None);
        }
        if name.is_empty() {
            return Err(r.malformed(name_offset, "empty name".into()));
        }
        let name_bytes = name.as_slice();
        let path = PathBuf::from(OsStr::from_bytes(name_bytes));
        let file_type = r.file_type(offset, &header, name_bytes)?;
        let mut target =
            (file_type == FileType::Symlink).then(|| Vec::with_capacity(header.filesize as usize));
        let contents_offset = r.pos();
        let (sha256, sum) = r.contents(header.filesize, target.as_mut())?;
        // Only a regular file's data carries a checksum: the kernel checks
        // no other (init/initramfs.c sums what it writes to files), and GNU
        // `cpio -H crc` writes 0 for a symlink's target.
        if crc && file_type == FileType::Regular && sum != header.check {
            return Err(r.malformed(
                contents_offset,
                format!(
                    "checksum of {} is {sum:08x}, header says {:08x}",
                    lossy(name_bytes),
                    header.check
                ),
            ));
        }
        Ok(Some(ReadEntry {
            path,
            file_type,
            mode: header.mode,
            ino: header.ino,
            uid: header.uid,
            gid: header.gid,
            nlink: header.nlink,
            mtime: header.mtime,
            size: header.filesize,
            dev_major: header.dev_major,
            dev_minor: header.dev_minor,
            rdev_major: header.rdev_major,
            rdev_minor: header.rdev_minor,
            symlink_target: target.map(|t| PathBuf::from(OsStr::from_bytes(&t))),
            sha256,
            segment,
            offset,
        }))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<ReadEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(entry) => entry.map(Ok),
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

/// Reads from the current stream with errors tagged by segment and offset.
struct Cursor<'a> {
    stream: &'a mut dyn Stream,
    segment: SegmentInfo,
}

impl Cursor<'_> {
    /// The NUL-terminated, 4-byte padded name after a header at `offset`,
    /// without its NUL.
    fn read_name(&mut self, offset: u64, namesize: usize) -> Result<Vec<u8>> {
        if namesize == 0 || namesize > PATH_MAX {
            return Err(self.malformed(
                offset + 6 + 8 * 11,
                format!("namesize {namesize} is not in 1..={PATH_MAX}"),
            ));
        }
        let name_offset = self.pos();
        let name_pad = pad4((HEADER_LEN + namesize) as u64);
        let mut name = self.take_exact(namesize + name_pad, "name")?;
        if name[namesize - 1] != 0 {
            return Err(self.malformed(
                name_offset + namesize as u64 - 1,
                "name is not NUL-terminated".into(),
            ));
        }
        if let Some(i) = name[..namesize - 1].iter().position(|&b| b == 0) {
            return Err(self.malformed(name_offset + i as u64, "NUL inside name".into()));
        }
        if let Some(i) = name[namesize..].iter().position(|&b| b != 0) {
            return Err(self.malformed(
                name_offset + (namesize + i) as u64,
                "non-zero padding after name".into(),
            ));
        }
        name.truncate(namesize - 1);
        Ok(name)
    }

    /// The member's file type, checked against its size: only regular files
    /// and symlinks have contents, and a symlink's target is 1..PATH_MAX bytes.
    fn file_type(&self, offset: u64, header: &Header, name: &[u8]) -> Result<FileType> {
        let mode_offset = offset + 6 + 8;
        let size_offset = offset + 6 + 8 * 6;
        let file_type = FileType::from_mode(header.mode).ok_or_else(|| {
            self.malformed(
                mode_offset,
                format!(
                    "unknown file type in mode {:o} of {}",
                    header.mode,
                    lossy(name)
                ),
            )
        })?;
        let has_contents = matches!(file_type, FileType::Regular | FileType::Symlink);
        if !has_contents && header.filesize != 0 {
            return Err(self.malformed(
                size_offset,
                format!(
                    "{file_type:?} {} has filesize {}",
                    lossy(name),
                    header.filesize
                ),
            ));
        }
        if file_type == FileType::Symlink
            && (header.filesize == 0 || header.filesize as usize >= PATH_MAX)
        {
            return Err(self.malformed(
                size_offset,
                format!(
                    "symlink {} has target length {}",
                    lossy(name),
                    header.filesize
                ),
            ));
        }
        Ok(file_type)
    }

    fn pos(&self) -> u64 {
        self.stream.pos()
    }

    fn malformed(&self, offset: u64, reason: String) -> Error {
        Error::Malformed {
            offset,
            segment: self.segment,
            reason,
        }
    }

    fn read_err(&self, source: io::Error) -> Error {
        Error::Read {
            offset: self.pos(),
            segment: self.segment,
            source,
        }
    }

    /// Exactly `n` bytes (n ≤ the input buffer), or a truncation error naming `what`.
    fn take_exact(&mut self, n: usize, what: &str) -> Result<Vec<u8>> {
        let offset = self.pos();
        let got = match self.stream.peek(n) {
            Ok(buf) => buf.to_vec(),
            Err(e) => return Err(self.read_err(e)),
        };
        if got.len() < n {
            return Err(self.malformed(
                offset,
                format!("truncated {what}: {} of {n} bytes", got.len()),
            ));
        }
        self.stream.consume(n);
        Ok(got)
    }

    /// Consumes `size` bytes of contents plus padding; returns their SHA-256 and byte sum.
    fn contents(&mut self, size: u32, mut keep: Option<&mut Vec<u8>>) -> Result<([u8; 32], u32)> {
        let mut hasher = Sha256::new();
        let mut sum: u32 = 0;
        let mut remaining = size as usize;
        while remaining > 0 {
            let buf = match self.stream.fill() {
                Ok(buf) => buf,
                Err(e) => return Err(self.read_err(e)),
            };
            if buf.is_empty() {
                return Err(self.malformed(
                    self.pos(),
                    format!("truncated contents: {remaining} of {size} bytes missing"),
                ));
            }
            let chunk = &buf[..buf.len().min(remaining)];
            hasher.update(chunk);
            sum = chunk
                .iter()
                .fold(sum, |acc, &b| acc.wrapping_add(u32::from(b)));
            if let Some(keep) = keep.as_mut() {
                keep.extend_from_slice(chunk);
            }
            let n = chunk.len();
            self.stream.consume(n);
            remaining -= n;
        }
        let pad_offset = self.pos();
        let pad = self.take_exact(pad4(u64::from(size)), "padding after contents")?;
        if let Some(i) = pad.iter().position(|&b| b != 0) {
            return Err(self.malformed(
                pad_offset + i as u64,
                "non-zero padding after contents".into(),
            ));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&hasher.finalize());
        Ok((digest, sum))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Buffered access with look-ahead across buffer boundaries, counting consumed bytes.
trait Stream {
    /// Up to `n` bytes without consuming them; fewer only at end of input.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]>;
    /// Whatever is buffered, refilling if empty; empty only at end of input.
    fn fill(&mut self) -> io::Result<&[u8]>;
    fn consume(&mut self, n: usize);
    fn pos(&self) -> u64;
}

/// Stands in while the source is being switched; never holds data.
struct Exhausted;

impl Stream for Exhausted {
    fn peek(&mut self, _: usize) -> io::Result<&[u8]> {
        Ok(&[])
    }
    fn fill(&mut self) -> io::Result<&[u8]> {
        Ok(&[])
    }
    fn consume(&mut self, _: usize) {}
    fn pos(&self) -> u64 {
        0
    }
}

/// A buffered reader that can look ahead across its buffer's end (`BufReader` cannot) and
/// knows how far it has been consumed, for error offsets and segment positions.
struct Input<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pos: u64,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0u8; INPUT_BUF_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
        }
    }

    /// Only called at end of input, when nothing is buffered.
    fn into_inner(self) -> R {
        self.inner
    }

    /// Reads more into the buffer; returns false at end of input.
    fn refill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Stream for Input<R> {
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        while self.end - self.start < n {
            if !self.refill()? {
                break;
            }
        }
        let end = self.end.min(self.start + n);
        Ok(&self.buf[self.start..end])
    }

    fn fill(&mut self) -> io::Result<&[u8]> {
        BufRead::fill_buf(self)
    }

    fn consume(&mut self, n: usize) {
        BufRead::consume(self, n);
    }

    fn pos(&self) -> u64 {
        self.pos
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        BufRead::consume(self, n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Input<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.refill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.end - self.start);
        self.start += amt;
        self.pos += amt as u64;
    }
}
