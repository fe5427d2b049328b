//! Per-service log capture: stdout/stderr read line by line into a bounded
//! ring buffer (oldest dropped), broadcast to followers, and emitted via
//! `tracing` (target `service`, field `service` = the name).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;

use crate::log_policy::KnownSecrets;

/// Longer lines are split into pieces of this many bytes.
const MAX_LINE: usize = 8192;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of service output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Per-service sequence number, increasing across restarts; gaps in a
    /// [`logs`](super::Supervisor::logs) answer's first `seq` mean dropped lines.
    pub seq: u64,
    /// Where the line came from.
    pub stream: Stream,
    /// The line without its newline (invalid UTF-8 replaced).
    pub line: String,
}

struct Ring {
    lines: VecDeque<LogLine>,
    next_seq: u64,
}

pub(crate) struct LogBuffer {
    service: String,
    capacity: usize,
    /// Redacted from every line before it is kept, logged or sent
    /// ([`crate::log_policy`]).
    secrets: Arc<KnownSecrets>,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<LogLine>,
}

impl LogBuffer {
    pub fn new(service: &str, capacity: usize, secrets: Arc<KnownSecrets>) -> Self {
        let (tx, _) = broadcast::channel(capacity.clamp(16, 4096));
        LogBuffer {
            service: service.to_string(),
            capacity,
            secrets,
            ring: Mutex::new(Ring {
                lines: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 0,
            }),
            tx,
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        crate::lock::lock(&self.ring)
    }

    pub fn push(&self, stream: Stream, bytes: &[u8]) {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes);
        let line = self.secrets.redact(&line).into_owned();
        // Debug, not info: at info every line of every component reached the
        // serial console, hundreds of KB per boot of a Kubernetes node, which
        // a slow console pays for. The ring below
        // (`basaltctl logs`) keeps them all; `basalt.log=debug` shows them.
        tracing::debug!(target: crate::log_policy::SERVICE_TARGET, service = %self.service, stream = stream.as_str(), "{line}");
        let entry = {
            let mut ring = self.ring();
            let entry = LogLine {
                seq: ring.next_seq,
                stream,
                line,
            };
            ring.next_seq = ring.next_seq.saturating_add(1);
            if self.capacity > 0 {
                while ring.lines.len() >= self.capacity {
                    ring.lines.pop_front();
                }
                ring.lines.push_back(entry.clone());
            }
            entry
        };
        // No followers is fine.
        let _ = self.tx.send(entry);
    }

    pub fn snapshot(&self) -> Vec<LogLine> {
        self.ring().lines.iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.tx.subscribe()
    }
}

/// Read `fd` (a pipe) until EOF, pushing its lines into `buf`.
pub(crate) fn capture(buf: Arc<LogBuffer>, stream: Stream, fd: OwnedFd) {
    let pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(service = %buf.service, "cannot capture {}: {e}", stream.as_str());
            return;
        }
    };
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut line: Vec<u8> = Vec::new();
        loop {
            let avail = match reader.fill_buf().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(service = %buf.service, "reading {}: {e}", stream.as_str());
                    break;
                }
            };
            if avail.is_empty() {
                break;
            }
            let room = MAX_LINE.saturating_sub(line.len());
            let used = match avail.iter().take(room).position(|&b| b == b'\n') {
                Some(nl) => {
                    line.extend_from_slice(avail.get(..nl).unwrap_or_default());
                    buf.push(stream, &line);
                    line.clear();
                    nl + 1
                }
                None => {
                    let take = avail.len().min(room);
                    line.extend_from_slice(avail.get(..take).unwrap_or_default());
                    if line.len() >= MAX_LINE {
                        buf.push(stream, &line);
                        line.clear();
                    }
                    take
                }
            };
            reader.consume(used);
        }
        if !line.is_empty() {
            buf.push(stream, &line);
        }
    });
}

#[cfg(test)]
mod tests;
