//! Where in the document an error is: TOML paths and line:column positions.

use crate::text_position::line_col;
use std::fmt;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// A path such as `machine.network.interfaces[0].addresses[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TomlPath(pub Vec<PathSeg>);

impl TomlPath {
    pub fn key(&self, k: &str) -> TomlPath {
        let mut v = self.0.clone();
        v.push(PathSeg::Key(k.to_string()));
        TomlPath(v)
    }

    pub fn index(&self, i: usize) -> TomlPath {
        let mut v = self.0.clone();
        v.push(PathSeg::Index(i));
        TomlPath(v)
    }
}

/// Build a path from dotted keys: `p(&["machine", "hostname"])`.
pub fn p(keys: &[&str]) -> TomlPath {
    TomlPath(keys.iter().map(|k| PathSeg::Key(k.to_string())).collect())
}

impl fmt::Display for TomlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Index(n) => write!(f, "[{n}]")?,
                PathSeg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One problem in a config document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// TOML path, `(document)` for the whole file, `(syntax)` for unparsable TOML.
    pub path: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn document(message: String) -> Self {
        Self {
            path: "(document)".into(),
            line: 1,
            col: 1,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line, self.col, self.path, self.message
        )
    }
}

/// Every problem found, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub(crate) fn single(e: ConfigError) -> Self {
        Self(vec![e])
    }

    /// Each error on its own line prefixed by `file:`, the form editors jump to.
    pub fn render(&self, file: &str) -> String {
        self.0
            .iter()
            .map(|e| format!("{file}:{e}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

fn position(text: &str, span: Option<std::ops::Range<usize>>) -> (usize, usize) {
    span.map_or((1, 1), |s| line_col(text, s.start))
}

pub(crate) fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, col) = position(text, e.span());
    ConfigError {
        path: "(syntax)".into(),
        line,
        col,
        message: format!("invalid TOML: {}", e.message().trim()),
    }
}

pub(crate) fn serde_error(
    text: &str,
    e: serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let mut path = TomlPath(
        e.path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(PathSeg::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect(),
    );
    let inner = e.into_inner();
    let raw = inner.message().trim().to_string();
    // serde says "unknown field `x`, expected one of …" at the parent's path and
    // "missing field `x`" likewise; name the field itself in the path.
    let message = if let Some(field) = backticked_after(&raw, "unknown field ") {
        if path.0.last() != Some(&PathSeg::Key(field.clone())) {
            path = path.key(&field);
        }
        let expected = raw
            .split_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("no keys here");
        format!("unknown key; expected {expected}")
    } else if let Some(field) = backticked_after(&raw, "missing field ") {
        path = path.key(&field);
        "required key is missing".to_string()
    } else {
        raw
    };
    let (line, col) = position(text, inner.span());
    ConfigError {
        path: path.to_string(),
        line,
        col,
        message,
    }
}

fn backticked_after(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?.strip_prefix('`')?;
    Some(rest.split_once('`')?.0.to_string())
}

/// Point a semantic error at the deepest part of `path` present in the tree.
pub(crate) fn at_path(
    text: &str,
    tree: &toml::Spanned<DeTable<'_>>,
    path: TomlPath,
    message: String,
) -> ConfigError {
    let mut span = tree.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(tree.get_ref());
    for seg in &path.0 {
        let next = match (seg, table, cur) {
            (PathSeg::Key(k), Some(t), _) => t
                .iter()
                .find(|(key, _)| key.get_ref().as_ref() == k.as_str())
                .map(|(_, v)| v),
            (PathSeg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(v) = next else { break };
        span = v.span();
        cur = Some(v.get_ref());
        table = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    let (line, col) = line_col(text, span.start);
    ConfigError {
        path: path.to_string(),
        line,
        col,
        message,
    }
}
