//! PID 1's log: every line to the console and to the kernel log (/dev/kmsg),
//! so `basaltctl dmesg` shows machined's story next to the kernel's.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Tee {
    kmsg: Option<Arc<Mutex<File>>>,
}

impl Tee {
    pub fn open() -> Self {
        let kmsg = OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok()
            .map(|f| Arc::new(Mutex::new(f)));
        Self { kmsg }
    }
}

pub struct TeeWriter {
    kmsg: Option<Arc<Mutex<File>>>,
}

impl Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stdout().write_all(buf);
        if let Some(k) = &self.kmsg {
            let mut f = crate::lock::lock(k);
            // One record per line; <6> = KERN_INFO.
            for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let mut rec = b"<6>machined: ".to_vec();
                rec.extend_from_slice(line);
                let _ = f.write_all(&rec);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> TeeWriter {
        TeeWriter {
            kmsg: self.kmsg.clone(),
        }
    }
}

/// Print straight to the console, bypassing tracing (banners an operator
/// must see, like the TLS fingerprint).
pub fn banner(text: &str) {
    let _ = writeln!(io::stdout(), "\n{text}\n");
    let _ = io::stdout().flush();
    if let Ok(mut k) = OpenOptions::new().write(true).open("/dev/kmsg") {
        for l in text.lines() {
            let _ = k.write_all(format!("<5>basalt: {l}").as_bytes());
        }
    }
}
