//! `${VAR}` and `${VAR:-default}` in profile paths, so one profile serves a
//! developer's checkout and CI (e.g. machined from `${CARGO_TARGET_DIR:-target}`).
//!
//! Defaults may nest (`${A:-${B:-x}}`). As in the shell, `:-` also applies when
//! the variable is set but empty. A `$` not followed by `{` is literal, and
//! `$$` is a literal `$`.

/// Expands `text`, looking variables up with `lookup`. The error says which
/// variable is unset or where the syntax is broken.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut pos = 0;
    let out = expand_until(&chars, &mut pos, false, lookup)?;
    Ok(out)
}

/// Expands from `pos` until the end, or (inside a default) until the closing `}`.
fn expand_until(
    chars: &[char],
    pos: &mut usize,
    in_default: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    while *pos < chars.len() {
        let c = chars[*pos];
        if in_default && c == '}' {
            return Ok(out);
        }
        if c == '$' && chars.get(*pos + 1) == Some(&'$') {
            out.push('$');
            *pos += 2;
            continue;
        }
        if c == '$' && chars.get(*pos + 1) == Some(&'{') {
            *pos += 2;
            out.push_str(&expand_reference(chars, pos, lookup)?);
            continue;
        }
        out.push(c);
        *pos += 1;
    }
    if in_default {
        return Err("unterminated `${`: missing `}`".to_string());
    }
    Ok(out)
}

/// Expands one `${…}` whose `${` has been consumed; leaves `pos` after its `}`.
fn expand_reference(
    chars: &[char],
    pos: &mut usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let start = *pos;
    while *pos < chars.len() && (chars[*pos].is_ascii_alphanumeric() || chars[*pos] == '_') {
        *pos += 1;
    }
    let name: String = chars[start..*pos].iter().collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "`${{` must be followed by a variable name (letters, digits, `_`), found `{}`",
            chars[start..].iter().take(10).collect::<String>()
        ));
    }
    match (chars.get(*pos), chars.get(*pos + 1)) {
        (Some('}'), _) => {
            *pos += 1;
            lookup(&name).ok_or_else(|| {
                format!("environment variable {name} is not set (write `${{{name}:-default}}` for a fallback)")
            })
        }
        (Some(':'), Some('-')) => {
            *pos += 2;
            let default = expand_until(chars, pos, true, lookup)?;
            // expand_until stopped at the `}` (or failed at the end).
            *pos += 1;
            match lookup(&name) {
                Some(value) if !value.is_empty() => Ok(value),
                _ => Ok(default),
            }
        }
        (Some(c), _) => Err(format!(
            "in `${{{name}…}}`: expected `}}` or `:-default`, found `{c}`"
        )),
        (None, _) => Err(format!("unterminated `${{{name}`: missing `}}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(expand("/usr/bin/x$", &env).unwrap(), "/usr/bin/x$");
        assert_eq!(expand("a$$b", &env).unwrap(), "a$b");
    }

    #[test]
    fn variables_and_defaults() {
        assert_eq!(expand("${SET}/x", &env).unwrap(), "value/x");
        assert_eq!(expand("${UNSET:-d}/x", &env).unwrap(), "d/x");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand("${SET:-d}", &env).unwrap(), "value");
        assert_eq!(expand("${UNSET:-}", &env).unwrap(), "");
    }

    #[test]
    fn nested_defaults() {
        assert_eq!(
            expand("${UNSET:-${ALSO_UNSET:-target}/release/m}", &env).unwrap(),
            "target/release/m"
        );
        assert_eq!(expand("${UNSET:-${SET:-t}/r}", &env).unwrap(), "value/r");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            expand("${UNSET}", &env)
                .unwrap_err()
                .contains("UNSET is not set")
        );
        assert!(expand("${SET", &env).unwrap_err().contains("missing `}`"));
        assert!(
            expand("${UNSET:-abc", &env)
                .unwrap_err()
                .contains("missing `}`")
        );
        assert!(expand("${}", &env).unwrap_err().contains("variable name"));
        assert!(expand("${A-b}", &env).unwrap_err().contains("expected `}`"));
    }
}
