//! A strict reader of the Prometheus text exposition format (0.0.4), the
//! form `GET /v1/metrics` answers in: one sample per line,
//! `name{label="value",…} value [timestamp]`; `#` lines (HELP, TYPE,
//! comments) and blank lines carry no samples. The dashboard reads node
//! figures from it. Anything else is an error naming its line, never a
//! silently dropped sample: a figure the dashboard shows must be the node's.

use std::fmt;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order the line gives them.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What is wrong with a line of exposition text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics text line {line}: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub reason: Reason,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    BadMetricName,
    BadLabelName,
    /// A label without `="…"`, or a `{` without its `}`.
    BadLabelSyntax,
    /// A backslash before something other than `\`, `"` or `n`.
    BadEscape,
    UnterminatedLabelValue,
    DuplicateLabel,
    BadValue,
    BadTimestamp,
    TrailingText,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::BadMetricName => "not a metric name",
            Reason::BadLabelName => "not a label name",
            Reason::BadLabelSyntax => "labels are not name=\"value\" pairs in braces",
            Reason::BadEscape => "unknown escape in a label value",
            Reason::UnterminatedLabelValue => "unterminated label value",
            Reason::DuplicateLabel => "a label given twice",
            Reason::BadValue => "not a sample value",
            Reason::BadTimestamp => "not a timestamp in milliseconds",
            Reason::TrailingText => "text after the timestamp",
        })
    }
}

/// Every sample of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(sample(line).map_err(|reason| ParseError {
            line: i + 1,
            reason,
            text: raw.to_string(),
        })?);
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, Reason> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(Reason::BadMetricName);
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = read_labels(after, &mut labels)?;
    }
    // The value (and timestamp) must be separated from what precedes them.
    if !rest.starts_with([' ', '\t']) {
        return Err(if rest.is_empty() {
            Reason::BadValue
        } else {
            Reason::BadLabelSyntax
        });
    }
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    let value = fields.next().ok_or(Reason::BadValue).and_then(value)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| Reason::BadTimestamp)?;
    }
    if fields.next().is_some() {
        return Err(Reason::TrailingText);
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads `a="x",b="y"}` (after the `{`) into `labels`; returns what follows `}`.
fn read_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, Reason> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or(Reason::BadLabelSyntax)?;
        let key = s[..eq].trim_end_matches([' ', '\t']);
        if !is_name(key, false) {
            return Err(Reason::BadLabelName);
        }
        let after = s[eq + 1..].trim_start_matches([' ', '\t']);
        let quoted = after.strip_prefix('"').ok_or(Reason::BadLabelSyntax)?;
        let (value, rest) = read_quoted(quoted)?;
        if labels.iter().any(|(k, _)| k == key) {
            return Err(Reason::DuplicateLabel);
        }
        labels.push((key.to_string(), value));
        let rest = rest.trim_start_matches([' ', '\t']);
        s = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.starts_with('}') => rest,
            None => return Err(Reason::BadLabelSyntax),
        };
    }
}

/// A label value up to its closing quote, unescaped; and what follows it.
fn read_quoted(s: &str) -> Result<(String, &str), Reason> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some(_) => return Err(Reason::BadEscape),
                None => return Err(Reason::UnterminatedLabelValue),
            },
            c => value.push(c),
        }
    }
    Err(Reason::UnterminatedLabelValue)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; label names have no `:`.
fn is_name(s: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// A Go `ParseFloat` value as the format allows: a decimal or exponent
/// number, `+Inf`, `-Inf` or `NaN`.
fn value(s: &str) -> Result<f64, Reason> {
    match s {
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    // Rust also reads "inf", "infinity" and "nan" in any case; the format does not.
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || b".+-eE".contains(&b))
    {
        return Err(Reason::BadValue);
    }
    s.parse().map_err(|_| Reason::BadValue)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of `GET /v1/metrics` of a dev-mode machined (this machine's
    /// /proc, machined 0.1.0), as it answered: HELP and TYPE lines, labels
    /// with and without values, a histogram, exponent notation.
    const REAL: &str = include_str!("../tests/fixtures/metrics-dev.txt");

    #[test]
    fn reads_real_machined_output() {
        let samples = parse(REAL).unwrap();
        let n_sample_lines = REAL
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(samples.len(), n_sample_lines);
        let find = |name: &str, labels: &[(&str, &str)]| {
            samples
                .iter()
                .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
                .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        };
        assert_eq!(find("basalt_config_generation", &[]).value, 0.0);
        assert!(find("basalt_node_memory_total_bytes", &[]).value > 1e8);
        let idle = find("basalt_node_cpu_seconds_total", &[("mode", "idle")]);
        assert!(idle.value > 0.0);
        assert_eq!(
            find(
                "basalt_node_pressure_avg10_ratio",
                &[("resource", "memory"), ("kind", "full")]
            )
            .labels
            .len(),
            2
        );
        assert_eq!(
            find("basalt_apply_duration_seconds_bucket", &[("le", "+Inf")]).value,
            0.0
        );
    }

    #[test]
    fn label_values_unescape_and_keep_commas_braces_and_spaces() {
        let s = parse(r#"m{a="say \"hi\", then }",b="back\\slash\nnew"  ,} 1.5e3 1712000000000"#)
            .unwrap();
        assert_eq!(
            s,
            [Sample {
                name: "m".into(),
                labels: vec![
                    ("a".into(), "say \"hi\", then }".into()),
                    ("b".into(), "back\\slash\nnew".into())
                ],
                value: 1500.0,
            }]
        );
        let s = parse("# HELP x y\n\nup 1\nneg -Inf\nnan NaN\nm{} +Inf\n").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert!(s[2].value.is_nan());
        assert!(s[3].labels.is_empty() && s[3].value == f64::INFINITY);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_line_number() {
        let cases = [
            ("1up 1", Reason::BadMetricName),
            ("up", Reason::BadValue),
            ("up one", Reason::BadValue),
            ("up inf", Reason::BadValue),
            ("up 1 12.5", Reason::BadTimestamp),
            ("up 1 2 3", Reason::TrailingText),
            ("up{a=\"b} 1", Reason::UnterminatedLabelValue),
            ("up{a=\"b\" 1", Reason::BadLabelSyntax),
            ("up{a=b} 1", Reason::BadLabelSyntax),
            ("up{a=\"b\"}1", Reason::BadLabelSyntax),
            ("up{a=\"b\" c=\"d\"} 1", Reason::BadLabelSyntax),
            ("up{a:b=\"c\"} 1", Reason::BadLabelName),
            ("up{a=\"\\t\"} 1", Reason::BadEscape),
            ("up{a=\"x\",a=\"y\"} 1", Reason::DuplicateLabel),
        ];
        for (line, reason) in cases {
            let err = parse(&format!("# TYPE up gauge\nok 1\n{line}\n")).unwrap_err();
            assert_eq!((err.line, err.reason), (3, reason), "{line}");
            assert!(
                err.to_string().starts_with("metrics text line 3: "),
                "{err}"
            );
        }
    }
}
