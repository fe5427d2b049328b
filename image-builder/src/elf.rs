//! ELF closures: a dynamic executable brings its interpreter (`PT_INTERP`) and
//! every `DT_NEEDED` library, found the way glibc's ld.so finds them, recursively.
//!
//! The search order per object is ld.so's: `DT_RUNPATH` if the object has one,
//! otherwise its `DT_RPATH` followed by those of the objects that loaded it;
//! then the system directories. `LD_LIBRARY_PATH` and `/etc/ld.so.cache` are
//! deliberately ignored: the image has neither, so a library only they could
//! find would be missing at run time, and the build fails now instead.
//! `$ORIGIN` is expanded twice: on the host (to find the file) and in the image
//! (to place it where the loader will look for it).

use crate::error::{Error, Result};
use crate::lexical_path::normalize_lexically;
use crate::tree::Tree;
use goblin::elf::Elf;
use std::collections::{BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};

/// ld.so's system search path on x86_64 (Debian's multiarch directories
/// first, then the lib64 and plain layouts other distributions use).
pub const SYSTEM_LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// What the dynamic loader needs to know about one ELF object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64: bool,
    pub machine: u16,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

impl ElfInfo {
    /// Static executables (including static-pie) load nothing.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

/// `Ok(None)` if `path` is not an ELF file at all.
pub fn read_info(path: &Path) -> Result<Option<ElfInfo>> {
    let mut file = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(Error::io("reading", path))?;
    if n < 4 || &magic != b"\x7fELF" {
        return Ok(None);
    }
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    let elf = Elf::parse(&bytes).map_err(|e| Error::Elf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let split = |list: &[&str]| -> Vec<String> {
        list.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Some(ElfInfo {
        is_64: elf.is_64,
        machine: elf.header.e_machine,
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
    }))
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A library directory as seen on the host and inside the image. They differ
/// only for `$ORIGIN` paths of a binary installed somewhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SearchDir {
    host: PathBuf,
    image: PathBuf,
}

/// One object whose dependencies are still to be resolved.
struct Pending {
    /// Where to read it on the host.
    host: PathBuf,
    /// The directory it lives in, on the host and in the image (`$ORIGIN`).
    origin: SearchDir,
    /// `DT_RPATH`s of the objects that loaded it, nearest first.
    loader_rpaths: Vec<SearchDir>,
    /// The binary the profile asked for, to name in errors.
    root: PathBuf,
}

/// Resolves ELF closures into a [`Tree`].
pub struct Resolver {
    pub system_dirs: Vec<PathBuf>,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver {
            system_dirs: SYSTEM_LIBRARY_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

/// What [`Resolver::add_binary`] put in the tree besides the binary.
#[derive(Debug, Clone, Default)]
pub struct ClosureReport {
    /// Host paths of the interpreter and libraries (real files), sorted.
    pub libraries: BTreeSet<PathBuf>,
}

impl Resolver {
    /// Installs executable `source` at `target` and everything it loads at
    /// their host paths. `source` must be an ELF file.
    pub fn add_binary(
        &self,
        tree: &mut Tree,
        source: &Path,
        target: &Path,
        mode: Option<u32>,
        origin: &str,
    ) -> Result<ClosureReport> {
        let info = read_info(source)?.ok_or_else(|| Error::Elf {
            path: source.to_path_buf(),
            reason: "not an ELF executable (binaries must be ELF; put data in `files`)".into(),
        })?;
        tree.add_host_file(source, target, mode, origin)?;
        let mut report = ClosureReport::default();
        if info.is_static() {
            return Ok(report);
        }
        let real = std::fs::canonicalize(source).map_err(Error::io("resolving", source))?;
        let origin_dir = SearchDir {
            host: real
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
            image: target
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        if let Some(interp) = &info.interpreter {
            let added = tree
                .add_host_path(
                    Path::new(interp),
                    &format!("interpreter of {}", source.display()),
                )
                .map_err(|e| match e {
                    Error::Io { source: io, .. } if io.kind() == std::io::ErrorKind::NotFound => {
                        Error::MissingLibrary {
                            binary: source.to_path_buf(),
                            library: interp.clone(),
                            via: None,
                            searched: "its PT_INTERP path".into(),
                        }
                    }
                    other => other,
                })?;
            report.libraries.insert(added.host_path);
        }
        let mut queue = VecDeque::new();
        let mut done: BTreeSet<PathBuf> = BTreeSet::new();
        done.insert(real.clone());
        self.enqueue_needed(
            tree,
            &info,
            &origin_dir,
            &[],
            source,
            &mut queue,
            &mut done,
            &mut report,
            (info.is_64, info.machine),
        )?;
        while let Some(item) = queue.pop_front() {
            let lib = read_info(&item.host)?.ok_or_else(|| Error::Elf {
                path: item.host.clone(),
                reason: "a library that is not ELF".into(),
            })?;
            self.enqueue_needed(
                tree,
                &lib,
                &item.origin,
                &item.loader_rpaths,
                &item.root,
                &mut queue,
                &mut done,
                &mut report,
                (info.is_64, info.machine),
            )
            .map_err(|e| match e {
                Error::MissingLibrary {
                    binary,
                    library,
                    via: None,
                    searched,
                } => Error::MissingLibrary {
                    binary,
                    library,
                    via: Some(item.host.clone()),
                    searched,
                },
                other => other,
            })?;
        }
        Ok(report)
    }

    /// Finds and installs each `DT_NEEDED` of `object`, queueing new ones.
    #[allow(clippy::too_many_arguments)]
    fn enqueue_needed(
        &self,
        tree: &mut Tree,
        object: &ElfInfo,
        origin: &SearchDir,
        loader_rpaths: &[SearchDir],
        root: &Path,
        queue: &mut VecDeque<Pending>,
        done: &mut BTreeSet<PathBuf>,
        report: &mut ClosureReport,
        arch: (bool, u16),
    ) -> Result<()> {
        let own_rpath: Vec<SearchDir> = if object.runpath.is_empty() {
            object
                .rpath
                .iter()
                .map(|d| expand_origin(d, origin))
                .collect()
        } else {
            Vec::new()
        };
        let mut dirs: Vec<SearchDir> = if object.runpath.is_empty() {
            own_rpath.iter().chain(loader_rpaths).cloned().collect()
        } else {
            object
                .runpath
                .iter()
                .map(|d| expand_origin(d, origin))
                .collect()
        };
        dirs.extend(self.system_dirs.iter().map(|d| SearchDir {
            host: d.clone(),
            image: d.clone(),
        }));
        let child_rpaths: Vec<SearchDir> = own_rpath.iter().chain(loader_rpaths).cloned().collect();

        for name in &object.needed {
            let found = if name.contains('/') {
                // A path in DT_NEEDED is used as is, relative to nothing we control.
                let p = PathBuf::from(name);
                let dir = SearchDir {
                    host: p.parent().map(Path::to_path_buf).unwrap_or_default(),
                    image: p.parent().map(Path::to_path_buf).unwrap_or_default(),
                };
                usable(&p, arch).then_some((dir, p))
            } else {
                dirs.iter().find_map(|d| {
                    let candidate = d.host.join(name);
                    usable(&candidate, arch).then(|| (d.clone(), candidate))
                })
            };
            let Some((dir, host)) = found else {
                let searched: Vec<String> =
                    dirs.iter().map(|d| d.host.display().to_string()).collect();
                return Err(Error::MissingLibrary {
                    binary: root.to_path_buf(),
                    library: name.clone(),
                    via: None,
                    searched: searched.join(", "),
                });
            };
            let lib_origin = format!("library {name} needed by {}", root.display());
            let real = if dir.host == dir.image {
                tree.add_host_path(&host, &lib_origin)?.host_path
            } else {
                let target = dir.image.join(name);
                tree.add_host_file(&host, &target, None, &lib_origin)?;
                std::fs::canonicalize(&host).map_err(Error::io("resolving", &host))?
            };
            report.libraries.insert(real.clone());
            if done.insert(real) {
                queue.push_back(Pending {
                    host,
                    origin: dir,
                    loader_rpaths: child_rpaths.clone(),
                    root: root.to_path_buf(),
                });
            }
        }
        Ok(())
    }
}

/// Whether `path` is a library the loader would accept for this binary:
/// an ELF file of the same class and machine (ld.so skips others and goes on).
fn usable(path: &Path, arch: (bool, u16)) -> bool {
    match std::fs::metadata(path) {
        Ok(md) if md.is_file() => {}
        _ => return false,
    }
    matches!(read_header(path), Some((is_64, machine)) if (is_64, machine) == arch)
}

/// Class and machine from the ELF identification and header, without reading the file.
fn read_header(path: &Path) -> Option<(bool, u16)> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = [0u8; 20];
    if read_up_to(&mut f, &mut h).ok()? < 20 || &h[..4] != b"\x7fELF" {
        return None;
    }
    let is_64 = h[4] == 2;
    let machine = if h[5] == 2 {
        u16::from_be_bytes([h[18], h[19]])
    } else {
        u16::from_le_bytes([h[18], h[19]])
    };
    Some((is_64, machine))
}

/// `$ORIGIN` / `${ORIGIN}` in a run path, on both sides.
fn expand_origin(dir: &str, origin: &SearchDir) -> SearchDir {
    let sub = |base: &Path| -> PathBuf {
        let base = base.to_string_lossy();
        let text = dir.replace("${ORIGIN}", &base).replace("$ORIGIN", &base);
        normalize_lexically(Path::new(&text))
    };
    SearchDir {
        host: sub(&origin.host),
        image: sub(&origin.image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_expands_on_both_sides() {
        let o = SearchDir {
            host: "/nix/store/abc/bin".into(),
            image: "/usr/bin".into(),
        };
        let d = expand_origin("$ORIGIN/../lib", &o);
        assert_eq!(d.host, PathBuf::from("/nix/store/abc/lib"));
        assert_eq!(d.image, PathBuf::from("/usr/lib"));
        assert_eq!(
            expand_origin("/opt/lib", &o).image,
            PathBuf::from("/opt/lib")
        );
    }

    #[test]
    fn non_elf_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        assert_eq!(read_info(&p).unwrap(), None);
    }
}
