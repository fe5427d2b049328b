//! Unified kernel images: systemd's EFI stub with the kernel, initramfs,
//! command line and os-release appended as PE sections, written by hand.
//!
//! objcopy would do it, but it stamps the current time into the PE header
//! (binutils 2.40 ignores `SOURCE_DATE_EPOCH` there), so two builds would
//! differ. The layout follows the UKI spec: each new section starts at the
//! next `SectionAlignment` boundary after the previous one (in memory) and at
//! the next `FileAlignment` boundary (in the file), and `.linux` comes last
//! because the kernel may use memory past its section when it runs in place.
//!
//! The stub file is kept whole (its COFF symbol table trails its last
//! section); the new sections' data follows it. Only headers change:
//! `NumberOfSections`, `SizeOfImage`, `SizeOfInitializedData`, maybe
//! `SizeOfHeaders`, and `CheckSum` (zeroed: UEFI does not check it, and a
//! stale one would be wrong).

use goblin::pe::PE;
use std::io::Write;
use std::path::{Path, PathBuf};

const SECTION_HEADER: usize = 40;
/// IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ.
const DATA_READ: u32 = 0x4000_0040;
const PE32_PLUS: u16 = 0x20b;

#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    #[error("UKI stub {path}: {reason}")]
    Stub { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("UKI section {0}: names are at most 8 bytes")]
    Name(String),
    #[error("UKI section {0}: larger than 4 GiB, which a PE section cannot hold")]
    TooLarge(String),
}

/// What goes into one appended section.
#[derive(Debug, Clone)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A file, streamed (an initramfs may be hundreds of MB).
    File(PathBuf),
}

impl Source {
    fn len(&self) -> Result<u64, UkiError> {
        match self {
            Source::Bytes(b) => Ok(b.len() as u64),
            Source::File(p) => {
                std::fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|source| UkiError::Io {
                        op: "reading the size of",
                        path: p.clone(),
                        source,
                    })
            }
        }
    }
}

/// The sections of a UKI, in the order they are appended (`.linux` last).
pub struct Sections {
    pub osrel: Vec<u8>,
    pub cmdline: Vec<u8>,
    pub initrd: Source,
    pub linux: Source,
}

impl Sections {
    fn list(self) -> Vec<(&'static str, Source)> {
        vec![
            (".osrel", Source::Bytes(self.osrel)),
            (".cmdline", Source::Bytes(self.cmdline)),
            (".initrd", self.initrd),
            (".linux", self.linux),
        ]
    }
}

/// Where a new section lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub name: &'static str,
    pub virtual_address: u32,
    pub size: u32,
    pub file_offset: u64,
}

fn align(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The stub's header fields this writer reads and rewrites.
struct StubLayout {
    /// Offset of the optional header.
    opt: usize,
    /// Offset of the section table, and its current entry count.
    table: usize,
    sections: usize,
    section_alignment: u64,
    file_alignment: u64,
    /// First free virtual address after the stub's sections.
    next_va: u64,
    /// Lowest file offset of any section's data: the headers must end before it.
    first_raw: u64,
}

fn layout(stub: &[u8], path: &Path) -> Result<StubLayout, UkiError> {
    let bad = |reason: String| UkiError::Stub {
        path: path.to_path_buf(),
        reason,
    };
    let pe = PE::parse(stub).map_err(|e| bad(format!("not a PE image: {e}")))?;
    let opt_header = pe
        .header
        .optional_header
        .ok_or_else(|| bad("no optional header".into()))?;
    let coff = pe.header.dos_header.pe_pointer as usize + 4;
    let opt = coff + 20;
    if le16(stub, opt) != PE32_PLUS {
        return Err(bad("not PE32+ (an x86-64 EFI application)".into()));
    }
    if opt_header
        .data_directories
        .get_certificate_table()
        .is_some_and(|d| d.size != 0)
    {
        return Err(bad(
            "it is signed (has a certificate table); appending sections would break the signature"
                .into(),
        ));
    }
    let table = opt + le16(stub, coff + 16) as usize;
    let sections = pe.sections.len();
    let section_alignment = u64::from(opt_header.windows_fields.section_alignment);
    let file_alignment = u64::from(opt_header.windows_fields.file_alignment);
    if section_alignment == 0 || file_alignment == 0 {
        return Err(bad("zero section or file alignment".into()));
    }
    let next_va = pe
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.size_of_raw_data)))
        .max()
        .unwrap_or(0);
    let first_raw = pe
        .sections
        .iter()
        .filter(|s| s.size_of_raw_data > 0)
        .map(|s| u64::from(s.pointer_to_raw_data))
        .min()
        .unwrap_or(stub.len() as u64);
    Ok(StubLayout {
        opt,
        table,
        sections,
        section_alignment,
        file_alignment,
        next_va: align(next_va, section_alignment),
        first_raw,
    })
}

/// Writes `stub` + `sections` to `out`; returns where each section went.
pub fn write(stub: &Path, sections: Sections, out: &Path) -> Result<Vec<Placed>, UkiError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| UkiError::Io { op, path, source }
    };
    let mut head = std::fs::read(stub).map_err(io("reading", stub))?;
    let l = layout(&head, stub)?;
    let list = sections.list();
    let new_table_end = l.table + (l.sections + list.len()) * SECTION_HEADER;
    if new_table_end as u64 > l.first_raw {
        return Err(UkiError::Stub {
            path: stub.to_path_buf(),
            reason: format!(
                "no room for {} more section headers: the table would end at {new_table_end:#x}, \
                 but the first section's data starts at {:#x}",
                list.len(),
                l.first_raw
            ),
        });
    }
    let mut va = l.next_va;
    let mut offset = align(head.len() as u64, l.file_alignment);
    let mut placed = Vec::new();
    let mut initialized = 0u64;
    for (i, (name, source)) in list.iter().enumerate() {
        if name.len() > 8 {
            return Err(UkiError::Name((*name).into()));
        }
        let len = source.len()?;
        let raw = align(len, l.file_alignment);
        let size = u32::try_from(len).map_err(|_| UkiError::TooLarge((*name).into()))?;
        let too_large = || UkiError::TooLarge((*name).into());
        let mut h = [0u8; SECTION_HEADER];
        h[..name.len()].copy_from_slice(name.as_bytes());
        put32(&mut h, 8, size);
        put32(&mut h, 12, u32::try_from(va).map_err(|_| too_large())?);
        put32(&mut h, 16, u32::try_from(raw).map_err(|_| too_large())?);
        put32(&mut h, 20, u32::try_from(offset).map_err(|_| too_large())?);
        put32(&mut h, 36, DATA_READ);
        let at = l.table + (l.sections + i) * SECTION_HEADER;
        head[at..at + SECTION_HEADER].copy_from_slice(&h);
        placed.push(Placed {
            name,
            virtual_address: va as u32,
            size,
            file_offset: offset,
        });
        initialized += raw;
        va = align(va + len, l.section_alignment);
        offset += raw;
    }
    let coff = l.opt - 20;
    let count = (l.sections + list.len()) as u16;
    head[coff + 2..coff + 4].copy_from_slice(&count.to_le_bytes());
    let old_initialized = u64::from(le32(&head, l.opt + 8));
    let too_large = || UkiError::TooLarge("the image".into());
    put32(
        &mut head,
        l.opt + 8,
        u32::try_from(old_initialized + initialized).map_err(|_| too_large())?,
    );
    put32(
        &mut head,
        l.opt + 56,
        u32::try_from(va).map_err(|_| too_large())?,
    );
    let headers = u64::from(le32(&head, l.opt + 60));
    let needed = align(new_table_end as u64, l.file_alignment);
    if needed > headers {
        put32(&mut head, l.opt + 60, needed as u32);
    }
    put32(&mut head, l.opt + 64, 0);

    let file = std::fs::File::create(out).map_err(io("creating", out))?;
    let mut w = std::io::BufWriter::new(file);
    let mut written = head.len() as u64;
    w.write_all(&head).map_err(io("writing", out))?;
    for ((_, source), p) in list.into_iter().zip(&placed) {
        pad_to(&mut w, &mut written, p.file_offset).map_err(io("writing", out))?;
        written += match source {
            Source::Bytes(b) => {
                w.write_all(&b).map_err(io("writing", out))?;
                b.len() as u64
            }
            Source::File(path) => {
                let mut f = std::fs::File::open(&path).map_err(io("opening", &path))?;
                std::io::copy(&mut f, &mut w).map_err(io("copying", &path))?
            }
        };
    }
    let end = align(written, l.file_alignment);
    pad_to(&mut w, &mut written, end).map_err(io("writing", out))?;
    w.flush().map_err(io("writing", out))?;
    Ok(placed)
}

fn pad_to(w: &mut impl Write, written: &mut u64, to: u64) -> std::io::Result<()> {
    while *written < to {
        let n = (to - *written).min(4096);
        w.write_all(&vec![0u8; n as usize])?;
        *written += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(initrd: &[u8], linux: &[u8]) -> Sections {
        Sections {
            osrel: b"ID=basalt\nVERSION_ID=1\n".to_vec(),
            cmdline: b"console=ttyS0".to_vec(),
            initrd: Source::Bytes(initrd.to_vec()),
            linux: Source::Bytes(linux.to_vec()),
        }
    }

    #[test]
    fn refuses_something_that_is_not_a_pe_image() {
        let dir = tempfile::tempdir().unwrap();
        let stub = dir.path().join("stub");
        std::fs::write(&stub, b"MZ but not really").unwrap();
        let err = write(&stub, sections(b"i", b"l"), &dir.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("not a PE image"), "{err}");
        assert!(!dir.path().join("out").exists());
    }
}
