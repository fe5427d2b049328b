//! The no-shell rule: no image may contain a shell, a busybox or a script
//! interpreter, under any name we can see: the entry's own name, a symlink's
//! target, or the host file it was copied from. A script (`#!`) is refused
//! too, since nothing in the image could run it.

use crate::error::{Error, Result};
use crate::tree::{Content, Node, Tree};
use std::io::Read;
use std::path::Path;

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ash", "busybox", "ksh", "mksh", "csh", "tcsh", "fish",
];
const INTERPRETER_PREFIXES: &[&str] = &["python", "perl"];

/// Whether a file name (no directory) is a shell or an interpreter.
pub fn is_forbidden_name(name: &str) -> bool {
    SHELLS.contains(&name) || INTERPRETER_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// Fails on the first forbidden entry, naming where it came from.
pub fn check_tree(tree: &Tree) -> Result<()> {
    for (path, entry) in tree.entries() {
        let refuse = |name: &str, what: String| Error::Forbidden {
            name: name.to_string(),
            origin: format!("{what}, added by {}", entry.origin),
        };
        let name = basename(path);
        if is_forbidden_name(name) {
            return Err(refuse(name, format!("image path {path}")));
        }
        match &entry.node {
            Node::Symlink { target } => {
                let t = basename(target);
                if is_forbidden_name(t) {
                    return Err(refuse(t, format!("symlink {path} -> {target}")));
                }
            }
            Node::File {
                content: Content::Host(source),
                mode,
            } => {
                let s = source
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if is_forbidden_name(s) {
                    return Err(refuse(
                        s,
                        format!("{path} copied from {}", source.display()),
                    ));
                }
                if mode & 0o111 != 0 && starts_with_shebang(source)? {
                    return Err(refuse(
                        "#!",
                        format!(
                            "script {path} (from {}) needs an interpreter",
                            source.display()
                        ),
                    ));
                }
            }
            Node::File {
                content: Content::Bytes(data),
                mode,
            } => {
                if mode & 0o111 != 0 && data.starts_with(b"#!") {
                    return Err(refuse("#!", format!("script {path} needs an interpreter")));
                }
            }
            Node::Dir { .. } | Node::CharDevice { .. } => {}
        }
    }
    Ok(())
}

fn starts_with_shebang(path: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < 2 {
        match f.read(&mut head[n..]).map_err(Error::io("reading", path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n == 2 && &head == b"#!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for bad in [
            "sh",
            "bash",
            "dash",
            "busybox",
            "python3",
            "python3.11",
            "perl",
            "perl5.36.0",
        ] {
            assert!(is_forbidden_name(bad), "{bad}");
        }
        for ok in [
            "shred",
            "ssh",
            "libperl.so",
            "containerd",
            "bash.bashrc",
            "flash",
        ] {
            assert!(!is_forbidden_name(ok), "{ok}");
        }
    }

    #[test]
    fn symlink_targets_and_scripts_are_refused() {
        let mut t = Tree::new(1);
        t.add_symlink(Path::new("/usr/bin/run"), "../../bin/dash", "test profile")
            .unwrap();
        let err = check_tree(&t).unwrap_err().to_string();
        assert!(
            err.contains("`dash`") && err.contains("test profile"),
            "{err}"
        );

        let mut t = Tree::new(1);
        t.add_bytes(
            Path::new("/usr/bin/hello"),
            b"#!/bin/true\n".to_vec(),
            0o755,
            "test",
        )
        .unwrap();
        assert!(check_tree(&t).is_err());
        let mut t = Tree::new(1);
        t.add_bytes(
            Path::new("/etc/motd"),
            b"#!not a script, not executable".to_vec(),
            0o644,
            "test",
        )
        .unwrap();
        assert!(check_tree(&t).is_ok());
    }
}
