//! The newc ("SVR4 portable, no CRC") header layout shared by the writer and the reader.

/// Magic of newc headers without checksum; the only one the writer emits.
pub(crate) const MAGIC: &[u8; 6] = b"070701";
/// Magic of the "crc" variant, whose `check` field sums the file's bytes. Read-only support.
pub(crate) const MAGIC_CRC: &[u8; 6] = b"070702";
pub(crate) const HEADER_LEN: usize = 110;
pub(crate) const TRAILER: &[u8] = b"TRAILER!!!";
/// The kernel refuses names longer than `PATH_MAX`, so there is no point writing them, and
/// the reader uses the same bound to avoid allocating what a corrupt header asks for.
pub(crate) const PATH_MAX: usize = 4096;

pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFSOCK: u32 = 0o140000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFBLK: u32 = 0o060000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFCHR: u32 = 0o020000;
pub(crate) const S_IFIFO: u32 = 0o010000;

const FIELD_NAMES: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub filesize: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub namesize: u32,
    pub check: u32,
}

/// Why a header could not be parsed, and where in it.
#[derive(Debug)]
pub(crate) struct HeaderError {
    pub offset_in_header: usize,
    pub reason: String,
}

impl Header {
    fn fields(&self) -> [u32; 13] {
        [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.dev_major,
            self.dev_minor,
            self.rdev_major,
            self.rdev_minor,
            self.namesize,
            self.check,
        ]
    }

    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        // Uppercase like GNU cpio and the kernel's gen_init_cpio.
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = [0u8; HEADER_LEN];
        out[..6].copy_from_slice(MAGIC);
        for (i, value) in self.fields().into_iter().enumerate() {
            let field = &mut out[6 + 8 * i..6 + 8 * (i + 1)];
            for (j, byte) in field.iter_mut().enumerate() {
                *byte = HEX[((value >> (28 - 4 * j)) & 0xf) as usize];
            }
        }
        out
    }

    /// Parses a header; returns it with a flag telling whether it was the CRC variant.
    pub(crate) fn parse(raw: &[u8; HEADER_LEN]) -> Result<(Header, bool), HeaderError> {
        let crc = match &raw[..6] {
            m if m == MAGIC => false,
            m if m == MAGIC_CRC => true,
            m => {
                return Err(HeaderError {
                    offset_in_header: 0,
                    reason: format!(
                        "bad magic {:?} (expected \"070701\" or \"070702\")",
                        String::from_utf8_lossy(m)
                    ),
                });
            }
        };
        let mut values = [0u32; 13];
        for (i, value) in values.iter_mut().enumerate() {
            let start = 6 + 8 * i;
            for (j, &c) in raw[start..start + 8].iter().enumerate() {
                // Both cases: the kernel's parser accepts either, and so do other writers.
                let digit = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    b'A'..=b'F' => c - b'A' + 10,
                    _ => {
                        return Err(HeaderError {
                            offset_in_header: start + j,
                            reason: format!(
                                "bad hex digit {:?} in field {}",
                                char::from(c),
                                FIELD_NAMES[i]
                            ),
                        });
                    }
                };
                *value = (*value << 4) | u32::from(digit);
            }
        }
        let [
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            filesize,
            dev_major,
            dev_minor,
            rdev_major,
            rdev_minor,
            namesize,
            check,
        ] = values;
        Ok((
            Header {
                ino,
                mode,
                uid,
                gid,
                nlink,
                mtime,
                filesize,
                dev_major,
                dev_minor,
                rdev_major,
                rdev_minor,
                namesize,
                check,
            },
            crc,
        ))
    }
}

/// Bytes of zero padding needed after `len` bytes to reach newc's 4-byte alignment.
pub(crate) fn pad4(len: u64) -> usize {
    ((4 - (len % 4)) % 4) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_parse_round_trip() {
        let h = Header {
            ino: 1,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0x6543_21ab,
            filesize: 0xdead_beef,
            dev_major: 0,
            dev_minor: 0,
            rdev_major: 5,
            rdev_minor: 1,
            namesize: 5,
            check: 0,
        };
        let raw = h.encode();
        let expected = concat!(
            "070701", "00000001", "000081A4", "00000000", "00000000", "00000001", "654321AB",
            "DEADBEEF", "00000000", "00000000", "00000005", "00000001", "00000005", "00000000"
        );
        assert_eq!(&raw[..], expected.as_bytes());
        let (parsed, crc) = Header::parse(&raw).unwrap();
        assert_eq!(parsed, h);
        assert!(!crc);
    }

    #[test]
    fn parse_reports_offending_position() {
        let mut raw = Header::default().encode();
        raw[6 + 8 * 6 + 3] = b'g';
        let err = Header::parse(&raw).unwrap_err();
        assert_eq!(err.offset_in_header, 6 + 8 * 6 + 3);
        assert!(err.reason.contains("filesize"), "{}", err.reason);

        raw[..6].copy_from_slice(b"070707");
        let err = Header::parse(&raw).unwrap_err();
        assert_eq!(err.offset_in_header, 0);
        assert!(err.reason.contains("bad magic"));

        let mut lower = Header {
            filesize: 0xabc,
            ..Header::default()
        }
        .encode();
        lower.make_ascii_lowercase();
        assert_eq!(Header::parse(&lower).unwrap().0.filesize, 0xabc);
    }

    #[test]
    fn padding() {
        assert_eq!(pad4(0), 0);
        assert_eq!(pad4(1), 3);
        assert_eq!(pad4(110 + 5), 1);
        assert_eq!(pad4(8), 0);
    }
}
