//! STATE: the node's persistent memory. Each applied generation lives in its
//! own directory; `current`, `previous` and `staged` are symlinks swapped with
//! an atomic rename, so an apply is all-or-nothing even across a power cut.
//!
//! ```text
//! STATE/gen-00000007/{config.toml,config.toml.sig}
//! STATE/current -> gen-00000007     STATE/previous -> gen-00000006
//! STATE/staged  -> gen-00000008     STATE/tls/{cert.pem,key.pem}
//! ```

use crate::host::{HostError, write_atomic};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError + use<> {
    let path = path.display().to_string();
    move |source| StateError::Io { op, path, source }
}

/// A config document with its signatures, as they were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDoc {
    pub config: Vec<u8>,
    pub signatures: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Previous,
    Staged,
}

impl Slot {
    fn link(self) -> &'static str {
        match self {
            Slot::Current => "current",
            Slot::Previous => "previous",
            Slot::Staged => "staged",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
    /// True when no STATE partition was found and this lives in RAM.
    ram: bool,
}

impl StateStore {
    pub fn open(dir: impl Into<PathBuf>, ram: bool) -> Result<Self, StateError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Self { dir, ram })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn is_ram(&self) -> bool {
        self.ram
    }

    fn gen_dir_name(generation: u64) -> String {
        format!("gen-{generation:08}")
    }

    pub fn load(&self, slot: Slot) -> Result<Option<SignedDoc>, StateError> {
        let link = self.dir.join(slot.link());
        if fs::symlink_metadata(&link).is_err() {
            return Ok(None);
        }
        let config_path = link.join("config.toml");
        let sig_path = link.join("config.toml.sig");
        let config = fs::read(&config_path).map_err(io_err("read", &config_path))?;
        let signatures = fs::read(&sig_path).map_err(io_err("read", &sig_path))?;
        Ok(Some(SignedDoc { config, signatures }))
    }

    /// The generation a slot points at, from its directory name.
    pub fn generation(&self, slot: Slot) -> Option<u64> {
        let target = fs::read_link(self.dir.join(slot.link())).ok()?;
        target.to_str()?.strip_prefix("gen-")?.parse().ok()
    }

    /// Write a generation's files into their own directory (fully synced),
    /// without pointing anything at it yet.
    fn write_generation(&self, generation: u64, doc: &SignedDoc) -> Result<String, StateError> {
        let name = Self::gen_dir_name(generation);
        let final_dir = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        write_atomic(&tmp.join("config.toml"), &doc.config, 0o600)?;
        write_atomic(&tmp.join("config.toml.sig"), &doc.signatures, 0o600)?;
        if final_dir.exists() {
            // Only an abandoned generation (e.g. a rolled-back `try`) can sit here.
            fs::remove_dir_all(&final_dir).map_err(io_err("remove", &final_dir))?;
        }
        fs::rename(&tmp, &final_dir).map_err(io_err("rename", &final_dir))?;
        self.sync_dir()?;
        Ok(name)
    }

    fn point(&self, slot: Slot, target: &str) -> Result<(), StateError> {
        let link = self.dir.join(slot.link());
        let tmp = self.dir.join(format!(".{}.tmp", slot.link()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(io_err("symlink", &tmp))?;
        fs::rename(&tmp, &link).map_err(io_err("rename", &link))?;
        self.sync_dir()
    }

    fn unlink(&self, slot: Slot) -> Result<(), StateError> {
        let link = self.dir.join(slot.link());
        match fs::remove_file(&link) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &link)(e)),
        }
    }

    fn sync_dir(&self) -> Result<(), StateError> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.dir))
    }

    /// Make `doc` the current config; the old current becomes previous.
    pub fn commit(&self, generation: u64, doc: &SignedDoc) -> Result<(), StateError> {
        let name = self.write_generation(generation, doc)?;
        if let Ok(old) = fs::read_link(self.dir.join("current"))
            && let Some(old) = old.to_str()
        {
            self.point(Slot::Previous, old)?;
        }
        self.point(Slot::Current, &name)?;
        self.prune()
    }

    /// Keep `doc` for the next boot without touching the running config.
    pub fn stage(&self, generation: u64, doc: &SignedDoc) -> Result<(), StateError> {
        let name = self.write_generation(generation, doc)?;
        self.point(Slot::Staged, &name)
    }

    /// At boot: a staged config becomes current.
    pub fn promote_staged(&self) -> Result<bool, StateError> {
        let Ok(staged) = fs::read_link(self.dir.join("staged")) else {
            return Ok(false);
        };
        let Some(staged) = staged.to_str().map(str::to_string) else {
            return Ok(false);
        };
        if let Ok(old) = fs::read_link(self.dir.join("current"))
            && let Some(old) = old.to_str()
        {
            self.point(Slot::Previous, old)?;
        }
        self.point(Slot::Current, &staged)?;
        self.unlink(Slot::Staged)?;
        Ok(true)
    }

    /// Undo the last commit: previous becomes current again and the
    /// abandoned generation is removed (so it may be applied again later).
    pub fn rollback(&self) -> Result<bool, StateError> {
        let (Ok(prev), Ok(cur)) = (
            fs::read_link(self.dir.join("previous")),
            fs::read_link(self.dir.join("current")),
        ) else {
            return Ok(false);
        };
        let Some(prev) = prev.to_str().map(str::to_string) else {
            return Ok(false);
        };
        self.point(Slot::Current, &prev)?;
        self.unlink(Slot::Previous)?;
        let abandoned = self.dir.join(cur);
        fs::remove_dir_all(&abandoned).map_err(io_err("remove", &abandoned))?;
        self.sync_dir().map(|_| true)
    }

    /// Forget everything: configs, generations, the TLS identity. The node
    /// comes back in maintenance mode with a new certificate.
    pub fn wipe(&self) -> Result<(), StateError> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        for e in entries.flatten() {
            let p = e.path();
            let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            removed.map_err(io_err("remove", &p))?;
        }
        self.sync_dir()
    }

    /// Drop generation directories no slot points at.
    fn prune(&self) -> Result<(), StateError> {
        let keep: Vec<_> = [Slot::Current, Slot::Previous, Slot::Staged]
            .iter()
            .filter_map(|s| fs::read_link(self.dir.join(s.link())).ok())
            .collect();
        let entries = fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        for e in entries.flatten() {
            let name = e.file_name();
            let is_gen = name
                .to_str()
                .is_some_and(|n| n.starts_with("gen-") && !n.ends_with(".tmp"));
            if is_gen && !keep.iter().any(|k| k.as_os_str() == name) {
                let p = e.path();
                fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
