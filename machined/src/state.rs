//! STATE: the node's persistent memory. Each applied generation lives in its
//! own directory; `current`, `previous` and `staged` are symlinks swapped with
//! an atomic rename, so an apply is all-or-nothing even across a power cut.
//!
//! ```text
//! STATE/gen-00000007/{config.toml,config.toml.sig}
//! STATE/current -> gen-00000007     STATE/previous -> gen-00000006
//! STATE/staged  -> gen-00000008     STATE/tls/{cert.pem,key.pem}
//! ```

use crate::host::durable::{self, DurableFs, EntryKind, RealFs};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The disk is full: nothing was persisted.
    #[error(
        "STATE has no space left ({op} {path}): the config was not persisted, the running one is kept"
    )]
    Full { op: &'static str, path: String },
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
    move |source| {
        if source.kind() == io::ErrorKind::StorageFull {
            StateError::Full { op, path }
        } else {
            StateError::Io { op, path, source }
        }
    }
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
    /// The filesystem it is on: the real one, or a test's that loses power.
    fs: Arc<dyn DurableFs>,
}

impl StateStore {
    pub fn open(dir: impl Into<PathBuf>, ram: bool) -> Result<Self, StateError> {
        Self::open_on(Arc::new(RealFs), dir, ram)
    }

    /// [`StateStore::open`] on a given filesystem.
    pub fn open_on(
        fs: Arc<dyn DurableFs>,
        dir: impl Into<PathBuf>,
        ram: bool,
    ) -> Result<Self, StateError> {
        let dir = dir.into();
        durable::create_dir_all(&*fs, &dir).map_err(io_err("create", &dir))?;
        Ok(Self { dir, ram, fs })
    }

    /// The filesystem STATE is on (the TLS identity is kept there too).
    pub fn fs(&self) -> &dyn DurableFs {
        &*self.fs
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
        if self.fs.kind(&link).is_none() {
            return Ok(None);
        }
        let config_path = link.join("config.toml");
        let sig_path = link.join("config.toml.sig");
        let config = self
            .fs
            .read(&config_path)
            .map_err(io_err("read", &config_path))?;
        let signatures = self.fs.read(&sig_path).map_err(io_err("read", &sig_path))?;
        Ok(Some(SignedDoc { config, signatures }))
    }

    /// The generation a slot points at, from its directory name.
    pub fn generation(&self, slot: Slot) -> Option<u64> {
        let target = self.link(slot)?;
        target.strip_prefix("gen-")?.parse().ok()
    }

    /// Write a generation's files into their own directory (fully synced),
    /// without pointing anything at it yet.
    fn write_generation(&self, generation: u64, doc: &SignedDoc) -> Result<String, StateError> {
        let name = Self::gen_dir_name(generation);
        let final_dir = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let fs = &*self.fs;
        let _ = fs.remove_dir_all(&tmp);
        durable::create_dir_all(fs, &tmp).map_err(io_err("create", &tmp))?;
        for (file, data) in [
            ("config.toml", &doc.config),
            ("config.toml.sig", &doc.signatures),
        ] {
            let path = tmp.join(file);
            durable::write_atomic(fs, &path, data, 0o600).map_err(io_err("write", &path))?;
        }
        if fs.kind(&final_dir).is_some() {
            // Only an abandoned generation (e.g. a rolled-back `try`, or
            // one written before a power cut) can sit here; no slot points
            // at it.
            fs.remove_dir_all(&final_dir)
                .map_err(io_err("remove", &final_dir))?;
        }
        fs.rename(&tmp, &final_dir)
            .map_err(io_err("rename", &final_dir))?;
        self.sync_dir()?;
        Ok(name)
    }

    fn point(&self, slot: Slot, target: &str) -> Result<(), StateError> {
        let link = self.dir.join(slot.link());
        let tmp = self.dir.join(format!(".{}.tmp", slot.link()));
        let _ = self.fs.remove_file(&tmp);
        self.fs
            .symlink(target, &tmp)
            .map_err(io_err("symlink", &tmp))?;
        self.fs
            .rename(&tmp, &link)
            .map_err(io_err("rename", &link))?;
        self.sync_dir()
    }

    fn unlink(&self, slot: Slot) -> Result<(), StateError> {
        let link = self.dir.join(slot.link());
        match self.fs.remove_file(&link) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &link)(e)),
        }
    }

    fn sync_dir(&self) -> Result<(), StateError> {
        self.fs
            .sync_dir(&self.dir)
            .map_err(io_err("sync", &self.dir))
    }

    /// Where a slot's symlink points (a generation directory's name).
    fn link(&self, slot: Slot) -> Option<String> {
        let target = self.fs.read_link(&self.dir.join(slot.link())).ok()?;
        target.to_str().map(str::to_string)
    }

    /// Make `doc` the current config; the old current becomes previous.
    pub fn commit(&self, generation: u64, doc: &SignedDoc) -> Result<(), StateError> {
        let name = self.write_generation(generation, doc)?;
        if let Some(old) = self.link(Slot::Current) {
            self.point(Slot::Previous, &old)?;
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
        let Some(staged) = self.link(Slot::Staged) else {
            return Ok(false);
        };
        if let Some(old) = self.link(Slot::Current) {
            self.point(Slot::Previous, &old)?;
        }
        self.point(Slot::Current, &staged)?;
        self.unlink(Slot::Staged)?;
        Ok(true)
    }

    /// Undo the last commit: previous becomes current again and the
    /// abandoned generation is removed (so it may be applied again later).
    pub fn rollback(&self) -> Result<bool, StateError> {
        let (Some(prev), Some(cur)) = (self.link(Slot::Previous), self.link(Slot::Current)) else {
            return Ok(false);
        };
        self.point(Slot::Current, &prev)?;
        self.unlink(Slot::Previous)?;
        let abandoned = self.dir.join(cur);
        self.fs
            .remove_dir_all(&abandoned)
            .map_err(io_err("remove", &abandoned))?;
        self.sync_dir().map(|_| true)
    }

    /// Forget everything: configs, generations, the TLS identity. The node
    /// comes back in maintenance mode with a new certificate.
    pub fn wipe(&self) -> Result<(), StateError> {
        let entries = self.fs.list(&self.dir).map_err(io_err("list", &self.dir))?;
        for (name, kind) in entries {
            let p = self.dir.join(name);
            let removed = if kind == EntryKind::Dir {
                self.fs.remove_dir_all(&p)
            } else {
                self.fs.remove_file(&p)
            };
            removed.map_err(io_err("remove", &p))?;
        }
        self.sync_dir()
    }

    /// Drop generation directories no slot points at.
    fn prune(&self) -> Result<(), StateError> {
        let keep: Vec<String> = [Slot::Current, Slot::Previous, Slot::Staged]
            .iter()
            .filter_map(|s| self.link(*s))
            .collect();
        let entries = self.fs.list(&self.dir).map_err(io_err("list", &self.dir))?;
        for (name, _) in entries {
            let is_gen = name.starts_with("gen-") && !name.ends_with(".tmp");
            if is_gen && !keep.contains(&name) {
                let p = self.dir.join(&name);
                self.fs.remove_dir_all(&p).map_err(io_err("remove", &p))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
