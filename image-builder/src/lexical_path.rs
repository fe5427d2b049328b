//! Paths cleaned up as text, never through the file system: profile paths
//! for readable messages and ELF `$ORIGIN` run paths, which must resolve
//! against the image's layout rather than the build host's symlinks.

use std::path::{Component, Path, PathBuf};

/// `a/b/../c` → `a/c`, `./a` → `a`, `/..` → `/`. A `..` with nothing left to
/// drop stays in a relative path (`../a` names something outside it).
pub fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // The root's parent is the root.
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_lexically as n;
    use std::path::PathBuf;

    #[test]
    fn drops_dots_without_touching_the_file_system() {
        assert_eq!(n("a/b/../c".as_ref()), PathBuf::from("a/c"));
        assert_eq!(n("./a/./b".as_ref()), PathBuf::from("a/b"));
        assert_eq!(
            n("/nix/store/abc/bin/../lib".as_ref()),
            PathBuf::from("/nix/store/abc/lib")
        );
    }

    #[test]
    fn stops_at_the_root_and_keeps_leading_parents() {
        assert_eq!(n("/../../etc".as_ref()), PathBuf::from("/etc"));
        assert_eq!(n("../a/../../b".as_ref()), PathBuf::from("../../b"));
    }
}
