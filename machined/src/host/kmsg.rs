//! The kernel log, `/dev/kmsg`: what `GET /v1/dmesg` reads.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

const KMSG: &str = "/dev/kmsg";

/// One kernel log record: who wrote it and its dmesg line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The syslog facility: 0 the kernel, 1 (LOG_USER) a process that
    /// named none, else the one the writer named.
    pub facility: u8,
    /// "[   secs.micro] message\n".
    pub line: String,
}

/// "prio,seq,usec,flags;message" → its facility and
/// "[   secs.micro] message\n".
pub fn parse_record(rec: &[u8]) -> Record {
    let rec = String::from_utf8_lossy(rec);
    let (head, msg) = rec.split_once(';').unwrap_or(("", &rec));
    let mut fields = head.split(',');
    let prio: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let usec: u64 = fields.nth(1).and_then(|u| u.parse().ok()).unwrap_or(0);
    let msg = msg.lines().next().unwrap_or_default();
    Record {
        facility: u8::try_from(prio >> 3).unwrap_or(u8::MAX),
        line: format!("[{:>5}.{:06}] {msg}\n", usec / 1_000_000, usec % 1_000_000),
    }
}

/// A reader of kernel log records, one record per read.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    /// `nonblock`: reads end at the newest record instead of waiting.
    pub fn open(nonblock: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(if nonblock { libc::O_NONBLOCK } else { 0 })
            .open(KMSG)
            .map_err(|e| io::Error::new(e.kind(), format!("{KMSG}: {e}")))?;
        Ok(Self { file })
    }

    /// Skip the records already in the buffer.
    pub fn seek_end(&mut self) {
        let _ = rustix::fs::seek(&self.file, rustix::fs::SeekFrom::End(0));
    }

    /// The next record; `None` at the end (non-blocking) or on an error.
    /// A record overwritten while we read (EPIPE) is skipped.
    pub fn next_record(&mut self) -> Option<Record> {
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => return Some(parse_record(buf.get(..n).unwrap_or_default())),
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
