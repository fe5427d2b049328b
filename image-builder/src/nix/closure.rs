//! Closure files: the list of store paths that make up an input, as Nix writes it.
//!
//! Two formats exist in the wild and both are accepted, detected from the content:
//! - `closureInfo`'s `store-paths`: one store path per line.
//! - the registration format of `exportReferencesGraph` (`path\nderiver\nN\nref…` per path), and its
//!   `nix-store --dump-db` / `closureInfo` `registration` variant that adds `narHash\nnarSize\n`
//!   after the path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nix_derivation::StorePath;

use super::Error;
use super::store_path::parse_store_path;

/// Which of the two closure file formats a file was in.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ClosureFormat {
    /// One store path per line (`closureInfo`'s `store-paths`, `nix-store -qR`).
    StorePaths,
    /// `exportReferencesGraph` / `nix-store --dump-db` registration records.
    ReferencesGraph,
}

/// A parsed closure file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClosureFile {
    pub format: ClosureFormat,
    /// Every store path of the closure, sorted and deduplicated.
    pub paths: Vec<StorePath>,
    /// Each path's references, when the format carries them ([`ClosureFormat::ReferencesGraph`]).
    pub references: Option<BTreeMap<StorePath, BTreeSet<StorePath>>>,
}

/// Read a closure file and return its store paths, sorted and deduplicated.
pub fn read_closure_file(file: &Path) -> Result<ClosureFile, Error> {
    let bytes = std::fs::read(file).map_err(|e| Error::io("reading closure file", file, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::ClosureFile {
        file: file.to_owned(),
        line: 0,
        reason: "not UTF-8".to_owned(),
    })?;
    parse_closure(&text, file)
}

/// Parse closure file content; `file` only names the source in errors.
pub fn parse_closure(text: &str, file: &Path) -> Result<ClosureFile, Error> {
    let lines: Vec<&str> = text.lines().collect();
    // A references graph always has count lines, which are never store paths, so "every non-empty
    // line is a store path" identifies the plain list unambiguously.
    let all_paths = lines
        .iter()
        .filter(|l| !l.is_empty())
        .all(|l| l.starts_with('/') && parse_store_path(l).is_ok());
    if all_paths {
        let mut paths = BTreeSet::new();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            paths.insert(parse_line(file, i, line)?);
        }
        return Ok(ClosureFile {
            format: ClosureFormat::StorePaths,
            paths: paths.into_iter().collect(),
            references: None,
        });
    }
    parse_references_graph(&lines, file)
}

fn parse_references_graph(lines: &[&str], file: &Path) -> Result<ClosureFile, Error> {
    let err = |line: usize, reason: String| Error::ClosureFile {
        file: file.to_owned(),
        line: line + 1,
        reason,
    };
    let mut graph: BTreeMap<StorePath, BTreeSet<StorePath>> = BTreeMap::new();
    let mut i = 0;
    let next = |i: &mut usize, what: &str| -> Result<(usize, &str), Error> {
        let n = *i;
        let line = lines
            .get(n)
            .ok_or_else(|| err(n, format!("file ends where {what} was expected")))?;
        *i += 1;
        Ok((n, line))
    };
    while i < lines.len() {
        if lines[i].is_empty() {
            // Trailing blank lines are harmless; blank lines inside a record are derivers, below.
            if lines[i..].iter().all(|l| l.is_empty()) {
                break;
            }
            return Err(err(i, "expected a store path".to_owned()));
        }
        let (n, line) = next(&mut i, "a store path")?;
        let path = parse_line(file, n, line)?;
        let (mut n, mut line) = next(&mut i, "a deriver or a NAR hash")?;
        if !line.is_empty() && !line.starts_with('/') {
            // `--dump-db` variant: narHash and narSize come before the deriver. Nix writes the
            // hash as bare base16 sha256; accept the prefixed forms too.
            let valid = if line.contains(':') || line.contains('-') {
                nix_derivation::NixHash::parse(line).is_ok()
            } else {
                line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit())
            };
            if !valid {
                return Err(err(n, format!("invalid NAR hash {line:?}")));
            }
            let (sn, size) = next(&mut i, "a NAR size")?;
            size.parse::<u64>()
                .map_err(|e| err(sn, format!("invalid NAR size {size:?}: {e}")))?;
            (n, line) = next(&mut i, "a deriver")?;
        }
        if !line.is_empty() {
            parse_line(file, n, line)?;
        }
        let (cn, count) = next(&mut i, "a reference count")?;
        let count: usize = count
            .parse()
            .map_err(|e| err(cn, format!("invalid reference count {count:?}: {e}")))?;
        let mut refs = BTreeSet::new();
        for _ in 0..count {
            let (rn, r) = next(&mut i, "a reference")?;
            refs.insert(parse_line(file, rn, r)?);
        }
        if graph.insert(path.clone(), refs).is_some() {
            return Err(err(n, format!("{path} is listed twice")));
        }
    }
    // A closure that misses a reference would give an image with dangling store paths.
    for (path, refs) in &graph {
        if let Some(missing) = refs.iter().find(|r| !graph.contains_key(r)) {
            return Err(Error::ClosureFile {
                file: file.to_owned(),
                line: 0,
                reason: format!("{path} references {missing}, which the closure does not list"),
            });
        }
    }
    Ok(ClosureFile {
        format: ClosureFormat::ReferencesGraph,
        paths: graph.keys().cloned().collect(),
        references: Some(graph),
    })
}

fn parse_line(file: &Path, index: usize, line: &str) -> Result<StorePath, Error> {
    parse_store_path(line).map_err(|e| Error::ClosureFile {
        file: file.to_owned(),
        line: index + 1,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/w90c5hksq93m592fj5k9sbvr10yjx783-basalt-test";
    const B: &str = "/nix/store/z4asv3j07d89ywjf8fxkn7sg6mf5s9q5-dep";
    const DRV: &str = "/nix/store/pc2qwp80rdbxvv8zfgmcj2m9258dhmh8-basalt-test.drv";

    #[test]
    fn store_paths_format() {
        let c = parse_closure(&format!("{B}\n{A}\n{A}\n\n"), Path::new("sp")).expect("parse");
        assert_eq!(c.format, ClosureFormat::StorePaths);
        assert_eq!(c.paths.len(), 2);
        assert_eq!(c.paths[0].to_string(), A);
        assert!(c.references.is_none());
    }

    #[test]
    fn references_graph_with_and_without_hashes() {
        let plain = format!("{A}\n{DRV}\n1\n{B}\n{B}\n\n0\n");
        let hashed = format!(
            "{A}\n1793b5f3b4f29dc740e1b00ab10cff8cd5967edf690210f45973380214b1fbed\n1288\n{DRV}\n2\n{B}\n{A}\n\
             {B}\nsha256:00kjynz8n03652qccs76ivsvark3pr3dfr6w1ba3x7bx83kcknvv\n120\n\n0\n"
        );
        for text in [plain, hashed] {
            let c = parse_closure(&text, Path::new("g")).expect("parse");
            assert_eq!(c.format, ClosureFormat::ReferencesGraph);
            assert_eq!(c.paths.len(), 2);
            let refs = c.references.expect("refs");
            let a = parse_store_path(A).expect("a");
            assert!(refs[&a].contains(&parse_store_path(B).expect("b")));
        }
    }

    #[test]
    fn refuses_incomplete_or_malformed_graphs() {
        let missing = format!("{A}\n\n1\n{B}\n");
        let e = parse_closure(&missing, Path::new("g")).expect_err("missing ref");
        assert!(e.to_string().contains("does not list"), "{e}");
        let truncated = format!("{A}\n\n2\n{B}\n");
        let e = parse_closure(&truncated, Path::new("g")).expect_err("truncated");
        assert!(e.to_string().contains("file ends"), "{e}");
        let bad = format!("{A}\n\nx\n");
        let e = parse_closure(&bad, Path::new("g")).expect_err("bad count");
        assert!(e.to_string().starts_with("g:3:"), "{e}");
        let bad_path = "/nix/store/short-x\n\n0\n";
        let e = parse_closure(bad_path, Path::new("g")).expect_err("bad path");
        assert!(e.to_string().starts_with("g:1:"), "{e}");
    }
}
