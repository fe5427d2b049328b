//! Kernel modules: which `.ko` files a list of module names needs, and the
//! order to load them in, read from depmod's text indexes like modprobe does.
//!
//! A name resolves with `-` and `_` treated alike. Dependencies come from
//! `modules.dep`; soft dependencies (`pre:`/`post:` in `modules.softdep`, e.g.
//! ext4 wants `crypto-crc32c`) through `modules.alias`, as `modprobe` does, so
//! our set equals `modprobe --show-depends`. A module built into the kernel
//! (`modules.builtin`) is skipped without error.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// depmod's view of one `/lib/modules/<release>` directory.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// Normalised name → (relative `.ko` path, hard dependencies' relative paths).
    modules: BTreeMap<String, (String, Vec<String>)>,
    /// Relative path → normalised name.
    by_path: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
    /// Normalised name → (pre, post) soft dependencies (names or aliases).
    softdeps: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// (pattern, module name) pairs from `modules.alias`.
    aliases: Vec<(String, String)>,
}

/// The answer for a list of names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulePlan {
    /// Relative `.ko` paths (as in `modules.dep`), dependencies before dependents.
    pub load_order: Vec<String>,
    /// Requested names that are built into the kernel.
    pub builtin: Vec<String>,
}

/// `virtio-net`, `virtio_net` → `virtio_net`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/fs/ext4/ext4.ko.xz` → `ext4`.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalize(stem)
}

impl ModuleIndex {
    /// Reads `modules.dep` (required), `modules.builtin`, `modules.softdep` and
    /// `modules.alias` (optional) from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let dep_path = dir.join("modules.dep");
        let dep = std::fs::read_to_string(&dep_path).map_err(Error::io("reading", &dep_path))?;
        let mut index = ModuleIndex {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, deps) = line.split_once(':').ok_or_else(|| {
                Error::Module(format!(
                    "{}:{}: expected `path: deps…`, found `{line}`",
                    dep_path.display(),
                    n + 1
                ))
            })?;
            let module = module.trim().to_string();
            let deps = deps.split_whitespace().map(str::to_string).collect();
            let name = name_of(&module);
            index.by_path.insert(module.clone(), name.clone());
            index.modules.insert(name, (module, deps));
        }
        if let Some(text) = read_optional(&dir.join("modules.builtin"))? {
            index.builtin = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(name_of)
                .collect();
        }
        if let Some(text) = read_optional(&dir.join("modules.softdep"))? {
            index.softdeps = parse_softdeps(&text);
        }
        if let Some(text) = read_optional(&dir.join("modules.alias"))? {
            index.aliases = text
                .lines()
                .filter_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("alias")).then_some(())?;
                    Some((w.next()?.to_string(), normalize(w.next()?)))
                })
                .collect();
        }
        Ok(index)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads `names` and everything they need, dependencies first. The first
    /// module to be reached decides a file's position; cycles are errors.
    pub fn plan(&self, names: &[String]) -> Result<ModulePlan> {
        let mut plan = ModulePlan::default();
        let mut state: BTreeMap<String, Visit> = BTreeMap::new();
        for requested in names {
            let name = normalize(requested);
            if !self.modules.contains_key(&name) {
                if self.builtin.contains(&name) {
                    plan.builtin.push(requested.clone());
                    continue;
                }
                return Err(Error::Module(format!(
                    "no module `{requested}` in {} (neither in modules.dep nor in modules.builtin)",
                    self.dir.display()
                )));
            }
            self.visit(&name, requested, &mut state, &mut plan.load_order)?;
        }
        Ok(plan)
    }

    /// Depth-first post-order with an explicit stack: a module is emitted
    /// once all it needs has been.
    fn visit(
        &self,
        start: &str,
        requested: &str,
        state: &mut BTreeMap<String, Visit>,
        order: &mut Vec<String>,
    ) -> Result<()> {
        // (module, its requirements still to visit, requirements listed yet?)
        let mut stack: Vec<(String, Vec<String>, bool)> =
            vec![(start.to_string(), Vec::new(), false)];
        while let Some(top) = stack.last_mut() {
            if !top.2 {
                top.2 = true;
                let name = top.0.clone();
                match state.get(&name) {
                    Some(Visit::Done) => {
                        stack.pop();
                        continue;
                    }
                    Some(Visit::Active) => return Err(cycle(&name, requested)),
                    None => {}
                }
                state.insert(name.clone(), Visit::Active);
                // Reversed so that popping visits them in the listed order.
                let mut next = self.requirements(&name)?;
                next.reverse();
                top_requirements(&mut stack, next);
                continue;
            }
            if let Some(child) = top.1.pop() {
                match state.get(&child) {
                    Some(Visit::Done) => {}
                    Some(Visit::Active) => return Err(cycle(&child, requested)),
                    None => stack.push((child, Vec::new(), false)),
                }
                continue;
            }
            let name = top.0.clone();
            stack.pop();
            // requirements() has checked that every name pushed is a module.
            if let Some((path, _)) = self.modules.get(&name) {
                order.push(path.clone());
            }
            state.insert(name, Visit::Done);
        }
        Ok(())
    }

    /// What must be loaded before `name`: soft `pre:` modules, then the hard
    /// dependencies deepest-first (modules.dep lists them nearest-first).
    /// Soft `post:` modules are loaded before too: loading them early is
    /// harmless, and one flat list keeps machined simple.
    fn requirements(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if let Some((pre, post)) = self.softdeps.get(name) {
            for s in pre.iter().chain(post) {
                out.extend(self.soft_targets(s));
            }
        }
        let (_, deps) = self.modules.get(name).ok_or_else(|| {
            Error::Module(format!(
                "`{name}` is not in {}/modules.dep",
                self.dir.display()
            ))
        })?;
        for dep in deps.iter().rev() {
            let dep_name = self.by_path.get(dep).cloned().ok_or_else(|| {
                Error::Module(format!(
                    "`{name}` depends on {dep}, which has no line of its own in modules.dep"
                ))
            })?;
            out.push(dep_name);
        }
        Ok(out)
    }

    /// A soft dependency is a module name or an alias; unknown or built-in
    /// ones are skipped, as modprobe does.
    fn soft_targets(&self, wanted: &str) -> Vec<String> {
        let name = normalize(wanted);
        if self.modules.contains_key(&name) {
            return vec![name];
        }
        let mut out: Vec<String> = self
            .aliases
            .iter()
            .filter(|(pattern, _)| alias_matches(pattern, wanted))
            .map(|(_, module)| module.clone())
            .filter(|m| self.modules.contains_key(m))
            .collect();
        out.dedup();
        out
    }
}

fn cycle(name: &str, requested: &str) -> Error {
    Error::Module(format!(
        "dependency cycle through `{name}` (while resolving `{requested}`)"
    ))
}

fn top_requirements(stack: &mut [(String, Vec<String>, bool)], next: Vec<String>) {
    if let Some(top) = stack.last_mut() {
        top.1 = next;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    Active,
    Done,
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            op: "reading",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// `softdep ext4 pre: crypto-crc32c post: foo`
fn parse_softdeps(text: &str) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let entry = out.entry(normalize(module)).or_default();
        let mut post = false;
        for w in words {
            match w {
                "pre:" => post = false,
                "post:" => post = true,
                name if post => entry.1.push(name.to_string()),
                name => entry.0.push(name.to_string()),
            }
        }
    }
    out
}

/// modprobe matches aliases as fnmatch patterns.
fn alias_matches(pattern: &str, wanted: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return normalize(pattern) == normalize(wanted);
    }
    glob::Pattern::new(pattern)
        .map(|p| p.matches(wanted))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, ModuleIndex) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/lib/crc16.ko:\nkernel/fs/mbcache.ko:\nkernel/fs/jbd2/jbd2.ko:\n\
             kernel/crypto/crc32c_generic.ko:\nkernel/arch/crc32c-intel.ko:\n\
             kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("modules.builtin"),
            "kernel/fs/fat/vfat.ko\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("modules.softdep"),
            "softdep ext4 pre: crypto-crc32c\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("modules.alias"),
            "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n",
        )
        .unwrap();
        let i = ModuleIndex::load(dir.path()).unwrap();
        (dir, i)
    }

    #[test]
    fn dependencies_come_first() {
        let (_d, i) = index();
        let plan = i.plan(&["ext4".into()]).unwrap();
        assert_eq!(
            plan.load_order,
            [
                "kernel/arch/crc32c-intel.ko",
                "kernel/crypto/crc32c_generic.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
    }

    #[test]
    fn dashes_builtins_and_unknowns() {
        let (_d, i) = index();
        let plan = i
            .plan(&["crc32c-intel".into(), "vfat".into(), "crc32c_intel".into()])
            .unwrap();
        assert_eq!(plan.load_order, ["kernel/arch/crc32c-intel.ko"]);
        assert_eq!(plan.builtin, ["vfat"]);
        let err = i.plan(&["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn cycles_are_errors() {
        let (_d, i) = index();
        let err = i.plan(&["a".into()]).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
    }
}
