//! PID 1's log. Every line goes to the kernel log (/dev/kmsg) and reaches the
//! console from there: the kernel prints each record whole, and `basaltctl
//! dmesg` shows machined's story next to the kernel's. Writing the console as
//! well doubled every line, and the kernel's copy could land in the middle of
//! ours: it once split the TLS fingerprint an operator reads off the console.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// The kernel drops writes to /dev/kmsg past 10 records in 5 s per open file
/// unless this says `on`; a booting machined says more than that.
const DEVKMSG_SYSCTL: &str = "/proc/sys/kernel/printk_devkmsg";

/// The kernel keeps about 1 KiB of text per record and cuts the rest; longer
/// lines go out as several records.
const RECORD_TEXT: usize = 900;

#[derive(Clone)]
pub struct ConsoleLog {
    /// None: the kernel log is unusable (no /dev/kmsg, or its rate limit
    /// cannot be lifted), so lines go straight to the console instead.
    kmsg: Option<Arc<Mutex<File>>>,
}

impl ConsoleLog {
    pub fn open() -> Self {
        // The kernel takes the value only with its newline.
        let unlimited = fs::write(DEVKMSG_SYSCTL, "on\n").is_ok()
            // Locked by `printk.devkmsg=` on the kernel command line.
            || fs::read_to_string(DEVKMSG_SYSCTL).is_ok_and(|v| v.trim() == "on");
        let kmsg = unlimited
            .then(|| OpenOptions::new().write(true).open("/dev/kmsg").ok())
            .flatten()
            .map(|f| Arc::new(Mutex::new(f)));
        Self { kmsg }
    }
}

/// `text` as kernel log records with priority `prio` (`<6>`: KERN_INFO, and
/// LOG_USER as the kernel marks what processes write), one per line.
/// Each ends with a newline: the kernel holds a record without one open for
/// continuation, and neither the console nor dmesg sees it until the next.
fn records(prio: u16, tag: &str, text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let line = String::from_utf8_lossy(line);
        let mut rest: &str = &line;
        while !rest.is_empty() {
            let mut cut = rest.len().min(RECORD_TEXT);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (head, tail) = rest.split_at(cut);
            out.push(format!("<{prio}>{tag}{head}\n").into_bytes());
            rest = tail;
        }
    }
    out
}

/// machined's own lines: KERN_INFO (LOG_USER, as the kernel marks them).
const MACHINED_PRIO: u16 = 6;
/// Captured service output ([`crate::log_policy::SERVICE_TARGET`]): KERN_INFO under
/// [`crate::log_policy::SERVICE_OUTPUT_FACILITY`], so that readers' dmesg
/// can leave it out.
const SERVICE_PRIO: u16 = (crate::log_policy::SERVICE_OUTPUT_FACILITY as u16) << 3 | 6;

pub struct ConsoleLogWriter {
    kmsg: Option<Arc<Mutex<File>>>,
    prio: u16,
}

impl Write for ConsoleLogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.kmsg {
            Some(k) => {
                let mut f = crate::lock::lock(k);
                for rec in records(self.prio, "machined: ", buf) {
                    let _ = f.write_all(&rec);
                }
            }
            None => {
                let _ = io::stdout().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ConsoleLog {
    type Writer = ConsoleLogWriter;
    fn make_writer(&'a self) -> ConsoleLogWriter {
        ConsoleLogWriter {
            kmsg: self.kmsg.clone(),
            prio: MACHINED_PRIO,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> ConsoleLogWriter {
        ConsoleLogWriter {
            kmsg: self.kmsg.clone(),
            prio: if meta.target() == crate::log_policy::SERVICE_TARGET {
                SERVICE_PRIO
            } else {
                MACHINED_PRIO
            },
        }
    }
}

/// Lines an operator must see on the console, like the TLS fingerprint,
/// whatever the log level: as kernel notices (a fresh open has its own rate
/// limit budget, ample for a banner), or straight to the console without
/// /dev/kmsg.
pub fn banner(text: &str) {
    let sent = OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut k| {
            records(5, "", text.as_bytes())
                .iter()
                .try_for_each(|r| k.write_all(r))
        });
    if sent.is_err() {
        let _ = writeln!(io::stdout(), "\n{text}\n");
        let _ = io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::records;

    #[test]
    fn one_record_per_line_with_level_and_tag() {
        assert_eq!(
            records(6, "machined: ", b" INFO a\n WARN b\n"),
            vec![
                b"<6>machined:  INFO a\n".to_vec(),
                b"<6>machined:  WARN b\n".to_vec()
            ]
        );
        assert!(records(5, "", b"\n\n").is_empty());
        // Service output under LOG_LOCAL0, which readers' dmesg leaves out.
        assert_eq!(
            records(super::SERVICE_PRIO, "machined: ", b"x\n"),
            vec![b"<134>machined: x\n".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_split_on_character_boundaries_not_cut() {
        let line = "é".repeat(1000); // 2000 bytes
        let recs = records(6, "", line.as_bytes());
        assert_eq!(recs.len(), 3);
        let text: String = recs
            .iter()
            .map(|r| std::str::from_utf8(&r[3..r.len() - 1]).expect("utf-8 record"))
            .collect();
        assert_eq!(text, line, "nothing lost between records");
        assert!(recs.iter().all(|r| r.len() <= 4 + super::RECORD_TEXT));
    }
}
