//! The two module lists a built package is checked against: its `go.sum` (the
//! lock, verified by Go's checksum database) and the build info Go embeds in
//! every binary (`go version -m`).

use std::collections::BTreeMap;

/// `module@version` → `h1:` hash of the module's files, from `go.sum`.
/// (The `/go.mod` lines, hashes of just the go.mod files, are left out: a
/// binary's build info records the module hashes.)
pub fn module_hashes(go_sum: &str) -> BTreeMap<(String, String), String> {
    go_sum
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (module, version, hash) = (f.next()?, f.next()?, f.next()?);
            (!version.ends_with("/go.mod"))
                .then(|| ((module.to_owned(), version.to_owned()), hash.to_owned()))
        })
        .collect()
}

/// One `dep` (or `=>` replacement) line of `go version -m`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub module: String,
    pub version: String,
    pub hash: Option<String>,
}

/// What `go version -m <binary>` says the binary was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    pub go_version: String,
    /// The main package's import path.
    pub path: String,
    /// The module holding the main package (for a component, the upstream
    /// module: Go builds it from the module cache, not from our wrapper).
    pub main_module: Option<Dep>,
    /// Every module compiled in. A replaced module is listed as its
    /// replacement: that is the code that was built.
    pub deps: Vec<Dep>,
    /// `-ldflags`, `-tags`, `CGO_ENABLED`, …
    pub settings: BTreeMap<String, String>,
}

/// Parse `go version -m` output (tab-separated, one binary).
pub fn parse_build_info(text: &str) -> BuildInfo {
    let mut info = BuildInfo::default();
    // A `=>` line replaces the `mod` or `dep` line just before it.
    let mut last_was_main = false;
    for line in text.lines() {
        if !line.starts_with('\t') {
            if let Some((_, v)) = line.split_once(": ") {
                info.go_version = v.trim().to_owned();
            }
            continue;
        }
        let f: Vec<&str> = line.trim_start_matches('\t').split('\t').collect();
        match f.as_slice() {
            ["path", p, ..] => info.path = (*p).to_owned(),
            ["mod", m, v, rest @ ..] => {
                info.main_module = Some(dep(m, v, rest));
                last_was_main = true;
            }
            ["dep", m, v, rest @ ..] => {
                info.deps.push(dep(m, v, rest));
                last_was_main = false;
            }
            ["=>", m, v, rest @ ..] => {
                let replaced = if last_was_main {
                    info.main_module.as_mut()
                } else {
                    info.deps.last_mut()
                };
                if let Some(last) = replaced {
                    *last = dep(m, v, rest);
                }
            }
            ["build", kv, ..] => {
                if let Some((k, v)) = kv.split_once('=') {
                    info.settings.insert(k.to_owned(), v.to_owned());
                }
            }
            _ => {}
        }
    }
    info
}

fn dep(module: &str, version: &str, rest: &[&str]) -> Dep {
    Dep {
        module: module.to_owned(),
        version: version.to_owned(),
        // `(devel)` replacements end in an empty hash field.
        hash: rest
            .first()
            .filter(|h| !h.is_empty())
            .map(|h| (*h).to_owned()),
    }
}

/// Every module in `info` (the main package's and each dependency) must be
/// in the lock with the same hash. Returns the disagreements, each as a
/// sentence.
pub fn check_against_lock(
    info: &BuildInfo,
    lock: &BTreeMap<(String, String), String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for dep in info.main_module.iter().chain(&info.deps) {
        let key = (dep.module.clone(), dep.version.clone());
        match (lock.get(&key), &dep.hash) {
            (None, _) => problems.push(format!(
                "{} {} is compiled in but not in go.sum",
                dep.module, dep.version
            )),
            (Some(want), Some(got)) if want != got => problems.push(format!(
                "{} {}: binary records {got}, go.sum has {want}",
                dep.module, dep.version
            )),
            (Some(_), None) => problems.push(format!(
                "{} {}: binary records no hash",
                dep.module, dep.version
            )),
            _ => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION_M: &str = "/tmp/out/runc: go1.26.8
\tpath\tgithub.com/opencontainers/runc
\tmod\tgithub.com/opencontainers/runc\tv1.5.2\th1:AAA=
\tdep\tgithub.com/a/b\tv1.0.0\th1:BBB=
\tdep\tgithub.com/c/d\tv0.1.0\th1:CCC=
\t=>\tgithub.com/e/d\tv0.2.0\th1:EEE=
\tbuild\t-tags=seccomp
\tbuild\tCGO_ENABLED=1
";

    #[test]
    fn reads_deps_replacements_and_settings() {
        let info = parse_build_info(VERSION_M);
        assert_eq!(info.go_version, "go1.26.8");
        assert_eq!(info.path, "github.com/opencontainers/runc");
        assert_eq!(info.main_module.as_ref().unwrap().version, "v1.5.2");
        assert_eq!(info.deps.len(), 2);
        assert_eq!(info.deps[1].module, "github.com/e/d");
        assert_eq!(info.settings["CGO_ENABLED"], "1");
    }

    #[test]
    fn a_replaced_main_module_is_the_replacement() {
        // What Go records for a component built with overlays.
        let text = "/tmp/loopback: go1.26.8
\tpath\tgithub.com/containernetworking/plugins/plugins/main/loopback
\tmod\tgithub.com/containernetworking/plugins\tv1.9.1
\t=>\t./upstream\t(devel)\t
\tdep\tgithub.com/pkg/errors\tv0.9.1\th1:FEB=
";
        let info = parse_build_info(text);
        let main = info.main_module.unwrap();
        assert_eq!(
            (main.module.as_str(), main.version.as_str()),
            ("./upstream", "(devel)")
        );
        assert_eq!(main.hash, None);
        assert_eq!(info.deps.len(), 1);
        assert_eq!(info.deps[0].module, "github.com/pkg/errors");
    }

    #[test]
    fn lock_disagreements_are_named() {
        let info = parse_build_info(VERSION_M);
        let sum = "github.com/opencontainers/runc v1.5.2 h1:AAA=\ngithub.com/a/b v1.0.0 h1:BBB=\ngithub.com/a/b v1.0.0/go.mod h1:x=\ngithub.com/e/d v0.2.0 h1:XXX=\n";
        let problems = check_against_lock(&info, &module_hashes(sum));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("go.sum has h1:XXX="), "{problems:?}");
        let ok = "github.com/opencontainers/runc v1.5.2 h1:AAA=\ngithub.com/a/b v1.0.0 h1:BBB=\ngithub.com/e/d v0.2.0 h1:EEE=\n";
        assert!(check_against_lock(&info, &module_hashes(ok)).is_empty());
    }
}
