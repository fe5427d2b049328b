//! `packages/<name>/package.toml`: how one upstream Go component is built.
//!
//! Strict like profiles: unknown keys are errors that name the file, line and
//! key. The recipe says *what* to build (main packages, tags, cgo, version
//! stamps); the sources are pinned by the `go.mod`/`go.sum` beside it.

use super::PackageError;
use basalt_api::text_position::line_col;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name of a recipe inside its component folder.
pub const RECIPE_FILE: &str = "package.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    module: String,
    version: String,
    cgo: bool,
    #[serde(default, rename = "static")]
    static_: Option<bool>,
    #[serde(default)]
    tags: Vec<String>,
    binaries: Vec<Binary>,
    #[serde(default)]
    ldflags: BTreeMap<String, String>,
    #[serde(default)]
    trees: Vec<Tree>,
    #[serde(default)]
    overlays: Vec<Overlay>,
}

/// One main package and the file name it is installed as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binary {
    pub name: String,
    pub package: String,
    /// Build tags for this binary only, on top of the recipe's.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A directory copied out of the upstream module's sources (for example
/// Cilium's `bpf/`, which its agent compiles on the node).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Relative to the module's root.
    pub from: String,
    /// Relative to the package's output directory.
    pub to: String,
}

/// One file of the upstream module replaced at build time (`go build
/// -overlay`), for the rare change upstream offers no flag for. The upstream
/// file's hash is pinned, so a version bump that changes the file fails the
/// build instead of silently dropping upstream's new text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The upstream file, relative to the module's root.
    pub file: String,
    /// sha256 (lowercase hex) of the upstream file this replaces.
    pub upstream_sha256: String,
    /// The replacement, relative to the component folder.
    pub replacement: String,
}

/// A parsed, checked recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The component's name: its folder under `packages/`.
    pub name: String,
    pub dir: PathBuf,
    /// The upstream module whose version is the component's version.
    pub module: String,
    /// That module's version, as `go.mod` must require it (`v1.37.2`).
    pub version: String,
    pub cgo: bool,
    /// Link statically even with cgo (`-extldflags -static`).
    pub static_link: bool,
    pub tags: Vec<String>,
    pub binaries: Vec<Binary>,
    /// `-X importpath.name=value` stamps, values with `{version}` etc. expanded.
    pub ldflags: BTreeMap<String, String>,
    pub trees: Vec<Tree>,
    pub overlays: Vec<Overlay>,
}

impl Recipe {
    /// Read `dir/package.toml`. The component's name is the folder's name.
    pub fn load(dir: &Path) -> Result<Recipe, PackageError> {
        let path = dir.join(RECIPE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| PackageError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| PackageError::Recipe {
                path: path.clone(),
                message: "the component folder has no usable name".into(),
            })?
            .to_owned();
        Self::parse(&name, dir, &path, &text)
    }

    fn parse(name: &str, dir: &Path, path: &Path, text: &str) -> Result<Recipe, PackageError> {
        let raw: RawRecipe = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (line, col) = line_col(text, s.start);
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            PackageError::Recipe {
                path: PathBuf::from(format!("{}{at}", path.display())),
                message: e.message().to_owned(),
            }
        })?;
        let bad = |message: String| PackageError::Recipe {
            path: path.to_owned(),
            message,
        };
        let semver = SemVer::parse(&raw.version).ok_or_else(|| {
            bad(format!(
                "version: `{}` is not a Go module version like v1.2.3",
                raw.version
            ))
        })?;
        if raw.binaries.is_empty() {
            return Err(bad("binaries: name at least one main package".into()));
        }
        check_binaries(&raw).map_err(bad)?;
        for t in raw
            .tags
            .iter()
            .chain(raw.binaries.iter().flat_map(|b| &b.tags))
        {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(bad(format!("tags: `{t}` is not a Go build tag")));
            }
        }
        for tree in &raw.trees {
            for (key, p) in [("from", &tree.from), ("to", &tree.to)] {
                check_relative(&format!("trees.{key}"), p).map_err(bad)?;
            }
        }
        check_overlays(&raw.overlays).map_err(bad)?;
        let mut ldflags = BTreeMap::new();
        for (var, value) in &raw.ldflags {
            if !var.contains('.') || var.contains(char::is_whitespace) {
                return Err(bad(format!(
                    "ldflags: `{var}` is not an `importpath.name` variable"
                )));
            }
            let expanded = semver.expand(value).map_err(|p| {
                bad(format!(
                    "ldflags.\"{var}\": unknown placeholder `{{{p}}}` (known: version, version_bare, major, minor, patch)"
                ))
            })?;
            if expanded.contains(char::is_whitespace)
                || expanded.contains('\'')
                || expanded.contains('"')
            {
                return Err(bad(format!(
                    "ldflags.\"{var}\": values may not hold spaces or quotes"
                )));
            }
            ldflags.insert(var.clone(), expanded);
        }
        Ok(Recipe {
            name: name.to_owned(),
            dir: dir.to_owned(),
            module: raw.module,
            version: raw.version,
            cgo: raw.cgo,
            static_link: raw.static_.unwrap_or(!raw.cgo),
            tags: raw.tags,
            binaries: raw.binaries,
            ldflags,
            trees: raw.trees,
            overlays: raw.overlays,
        })
    }
}

/// Each binary: a plain file name, named once, built from a package inside
/// the recipe's module.
fn check_binaries(raw: &RawRecipe) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for b in &raw.binaries {
        if b.name.is_empty() || b.name.contains('/') || b.name.starts_with('.') {
            return Err(format!(
                "binaries: `{}` is not a file name (no `/`, not hidden)",
                b.name
            ));
        }
        if !seen.insert(&b.name) {
            return Err(format!("binaries: `{}` is named twice", b.name));
        }
        if !(b.package == raw.module || b.package.starts_with(&format!("{}/", raw.module))) {
            return Err(format!(
                "binaries.{}: package `{}` is not inside module `{}`",
                b.name, b.package, raw.module
            ));
        }
    }
    Ok(())
}

fn check_relative(key: &str, p: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') || p.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(format!("{key}: `{p}` must be a relative path without `..`"));
    }
    Ok(())
}

/// Each overlay: relative paths, a real sha256, each upstream file once.
fn check_overlays(overlays: &[Overlay]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for o in overlays {
        check_relative("overlays.file", &o.file)?;
        check_relative("overlays.replacement", &o.replacement)?;
        let hex = &o.upstream_sha256;
        if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(format!(
                "overlays.upstream_sha256 of `{}`: `{hex}` is not a sha256 in lowercase hex \
                 (`sha256sum` of the upstream file)",
                o.file
            ));
        }
        if !seen.insert(&o.file) {
            return Err(format!("overlays: `{}` is replaced twice", o.file));
        }
    }
    Ok(())
}

/// `v1.37.2` (a pre-release or build suffix is kept in `version` only).
struct SemVer<'a> {
    full: &'a str,
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
}

impl<'a> SemVer<'a> {
    fn parse(v: &'a str) -> Option<Self> {
        let rest = v.strip_prefix('v')?;
        let core = rest.split(['-', '+']).next()?;
        let mut parts = core.split('.');
        let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
        let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        (parts.next().is_none() && numeric(major) && numeric(minor) && numeric(patch)).then_some(
            SemVer {
                full: v,
                major,
                minor,
                patch,
            },
        )
    }

    /// Replace `{version}`, `{version_bare}`, `{major}`, `{minor}`, `{patch}`;
    /// an unknown placeholder is returned as the error.
    fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| after.to_owned())?;
            let value = match &after[..close] {
                "version" => self.full,
                "version_bare" => &self.full[1..],
                "major" => self.major,
                "minor" => self.minor,
                "patch" => self.patch,
                other => return Err(other.to_owned()),
            };
            out.push_str(value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Recipe, PackageError> {
        Recipe::parse(
            "demo",
            Path::new("/p/demo"),
            Path::new("/p/demo/package.toml"),
            text,
        )
    }

    const GOOD: &str = r#"
module = "example.com/tool"
version = "v1.37.2-rc.1"
cgo = false
tags = ["netgo"]
binaries = [{ name = "tool", package = "example.com/tool/cmd/tool" }]
[ldflags]
"example.com/tool/version.v" = "{version}"
"example.com/tool/version.minor" = "{major}.{minor}"
"#;

    #[test]
    fn expands_version_placeholders() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.ldflags["example.com/tool/version.v"], "v1.37.2-rc.1");
        assert_eq!(r.ldflags["example.com/tool/version.minor"], "1.37");
        assert!(r.static_link, "pure Go defaults to static");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse(&GOOD.replace("cgo = false", "cgo = false\ncgo_flags = 1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package.toml:5:1"), "{e}");
        assert!(e.contains("cgo_flags"), "{e}");
    }

    #[test]
    fn refuses_bad_recipes() {
        for (edit, want) in [
            (("v1.37.2-rc.1", "1.37"), "not a Go module version"),
            (
                ("{major}.{minor}", "{commit}"),
                "unknown placeholder `{commit}`",
            ),
            (
                ("example.com/tool/cmd/tool", "example.org/other"),
                "not inside module",
            ),
            (
                (r#"name = "tool""#, r#"name = "../tool""#),
                "not a file name",
            ),
            ((r#"["netgo"]"#, r#"["net go"]"#), "not a Go build tag"),
        ] {
            let e = parse(&GOOD.replace(edit.0, edit.1))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{edit:?}: {e}");
        }
    }

    const SHA: &str = "4f2d1e0c9b8a7f6e5d4c3b2a19080706f5e4d3c2b1a09f8e7d6c5b4a39281706";

    fn with_overlay(file: &str, sha: &str, with: &str) -> String {
        format!(
            "{GOOD}\n[[overlays]]\nfile = \"{file}\"\nupstream_sha256 = \"{sha}\"\nreplacement = \"{with}\"\n"
        )
    }

    #[test]
    fn overlays_are_parsed() {
        let r = parse(&with_overlay("pkg/api/const.go", SHA, "overlays/const.go")).unwrap();
        assert_eq!(
            r.overlays,
            vec![Overlay {
                file: "pkg/api/const.go".into(),
                upstream_sha256: SHA.into(),
                replacement: "overlays/const.go".into(),
            }]
        );
    }

    #[test]
    fn refuses_bad_overlays() {
        for (text, want) in [
            (
                with_overlay("../x.go", SHA, "o.go"),
                "overlays.file: `../x.go` must be a relative path",
            ),
            (
                with_overlay("x.go", SHA, "/etc/o.go"),
                "overlays.replacement: `/etc/o.go` must be a relative path",
            ),
            (
                with_overlay("x.go", &SHA.to_uppercase(), "o.go"),
                "is not a sha256 in lowercase hex",
            ),
            (
                with_overlay("x.go", &SHA[..63], "o.go"),
                "is not a sha256 in lowercase hex",
            ),
            (
                format!(
                    "{}[[overlays]]\nfile = \"x.go\"\nupstream_sha256 = \"{SHA}\"\nreplacement = \"p.go\"\n",
                    with_overlay("x.go", SHA, "o.go")
                ),
                "overlays: `x.go` is replaced twice",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
