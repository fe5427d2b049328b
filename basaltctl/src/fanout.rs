//! One read on several nodes at once (`--node a,b,c`): the calls run
//! concurrently, one thread per node, and every answer is labelled with its
//! node, as talosctl labels its output: a `NODE` column in text, a `node`
//! field on each JSON object. A node that fails does not stop the others;
//! its error is reported under its name.

use serde::Serialize;
use serde_json::Value;
use std::fmt::Display;

/// What one node answered.
#[derive(Debug)]
pub struct Answer<T, E> {
    /// The node as the operator named it.
    pub node: String,
    pub result: Result<T, E>,
}

/// `call` on every node of `nodes` at once; the answers in the order of
/// `nodes`, whatever order they arrive in.
pub fn on_each<T: Send, E: Send>(
    nodes: &[String],
    call: impl Fn(&str) -> Result<T, E> + Sync,
) -> Vec<Answer<T, E>> {
    let call = &call;
    std::thread::scope(|s| {
        let running: Vec<_> = nodes
            .iter()
            .map(|n| (n, s.spawn(move || call(n))))
            .collect();
        running
            .into_iter()
            .map(|(node, handle)| Answer {
                node: node.clone(),
                // A call that panicked is a bug; resuming keeps its message.
                result: handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            })
            .collect()
    })
}

/// How a command's text is labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The first line is a header (`SERVICE STATE …`): printed once, behind
    /// `NODE`; every other line behind its node.
    Table,
    /// Every line behind its node (status, network, logs, files).
    Lines,
}

/// The width of the label column for `nodes`.
pub fn label_width<'a>(nodes: impl IntoIterator<Item = &'a str>, layout: Layout) -> usize {
    let header = if layout == Layout::Table { 4 } else { 0 };
    nodes.into_iter().map(str::len).fold(header, usize::max)
}

/// `line` behind `node`, padded to `width`.
pub fn label(node: &str, width: usize, line: &str) -> String {
    format!("{node:<width$}  {line}")
}

/// The texts of several nodes, `(node, text)` in order, as one labelled
/// text. Every line ends in a newline.
pub fn label_text(texts: &[(&str, &str)], layout: Layout) -> String {
    let width = label_width(texts.iter().map(|(n, _)| *n), layout);
    let mut out = String::new();
    let mut header_done = false;
    for (node, text) in texts {
        let mut lines = text.lines();
        if layout == Layout::Table {
            let header = lines.next();
            if let (false, Some(h)) = (header_done, header) {
                out.push_str(&label("NODE", width, h));
                out.push('\n');
                header_done = true;
            }
        }
        for line in lines {
            out.push_str(&label(node, width, line));
            out.push('\n');
        }
    }
    out
}

/// The answers as one JSON array: each object of an answer (the answer
/// itself, or each element of a list) with a `node` field; a value that
/// is no object as `{"node", "value"}`; a failed node as `{"node", "error"}`.
pub fn label_json<E: Display>(answers: Vec<Answer<Value, E>>) -> Value {
    let mut out = Vec::new();
    let labelled = |node: &str, v: Value| match v {
        Value::Object(mut m) => {
            m.insert("node".into(), node.into());
            Value::Object(m)
        }
        other => serde_json::json!({ "node": node, "value": other }),
    };
    for a in answers {
        match a.result {
            Ok(Value::Array(items)) => {
                out.extend(items.into_iter().map(|v| labelled(&a.node, v)));
            }
            Ok(v) => out.push(labelled(&a.node, v)),
            Err(e) => out.push(serde_json::json!({ "node": a.node, "error": e.to_string() })),
        }
    }
    Value::Array(out)
}

/// A command's output from several nodes, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: String,
    /// One `node: error: …` line per failed node.
    pub stderr: String,
    /// What the command fails with: which nodes failed.
    pub failed: Option<String>,
}

/// Several nodes' answers as `basaltctl` prints them: as one labelled JSON
/// array ([`label_json`]), or labelled text ([`label_text`] of `text` of
/// each answer); the failures apart ([`failures`]).
pub fn render<T: Serialize>(
    json: bool,
    answers: &[Answer<T, String>],
    text: impl Fn(&T) -> String,
    layout: Layout,
) -> Rendered {
    let stdout = if json {
        let values = answers
            .iter()
            .map(|a| Answer {
                node: a.node.clone(),
                result: a
                    .result
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string())),
            })
            .collect();
        let mut out = serde_json::to_string_pretty(&label_json(values))
            .unwrap_or_else(|e| format!("encoding the answers: {e}"));
        out.push('\n');
        out
    } else {
        let texts: Vec<(&str, String)> = answers
            .iter()
            .filter_map(|a| a.result.as_ref().ok().map(|v| (a.node.as_str(), text(v))))
            .collect();
        let texts: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (*n, t.as_str())).collect();
        label_text(&texts, layout)
    };
    let (stderr, failed) = failures(answers);
    Rendered {
        stdout,
        stderr,
        failed,
    }
}

/// A text answer's bytes (a log, the kernel log: not necessarily UTF-8)
/// with every line behind `node`, each ending in a newline.
pub fn label_bytes(node: &str, width: usize, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(label(node, width, "").as_bytes());
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

/// `e` and its sources, each once (an error's text often holds its
/// source's already, which `{:#}` would repeat).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    out
}

/// The failures of `answers` as `node: error: …` lines (for stderr), and
/// the one error a command ends with when any node failed.
pub fn failures<T, E: Display>(answers: &[Answer<T, E>]) -> (String, Option<String>) {
    let failed: Vec<(&str, String)> = answers
        .iter()
        .filter_map(|a| {
            a.result
                .as_ref()
                .err()
                .map(|e| (a.node.as_str(), e.to_string()))
        })
        .collect();
    if failed.is_empty() {
        return (String::new(), None);
    }
    let lines = failed
        .iter()
        .map(|(n, e)| format!("{n}: error: {e}\n"))
        .collect();
    let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
    let summary = format!(
        "{} of {} nodes failed: {}",
        failed.len(),
        answers.len(),
        names.join(", ")
    );
    (lines, Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_print_one_header_and_a_node_column() {
        let a = "SERVICE  STATE\ncontainerd  running\n";
        let b = "SERVICE  STATE\nkubelet  backoff\netcd  running\n";
        assert_eq!(
            label_text(&[("10.0.0.5", a), ("b", b)], Layout::Table),
            "NODE      SERVICE  STATE\n10.0.0.5  containerd  running\nb         kubelet  backoff\nb         etcd  running\n"
        );
        assert_eq!(
            label_text(&[("a", "x\ny"), ("bb", "z\n")], Layout::Lines),
            "a   x\na   y\nbb  z\n"
        );
        assert_eq!(label_bytes("a", 2, b"x\n\xffy"), b"a   x\na   \xffy\n");
    }

    #[test]
    fn json_objects_carry_their_node_and_failures_their_error() {
        let answers: Vec<Answer<Value, String>> = vec![
            Answer {
                node: "a".into(),
                result: Ok(serde_json::json!([{"name": "x"}, {"name": "y"}])),
            },
            Answer {
                node: "b".into(),
                result: Err("connecting to b: refused".into()),
            },
            Answer {
                node: "c".into(),
                result: Ok(serde_json::json!({"hostname": "c1"})),
            },
        ];
        let (lines, summary) = failures(&answers);
        assert_eq!(lines, "b: error: connecting to b: refused\n");
        assert_eq!(summary.as_deref(), Some("1 of 3 nodes failed: b"));
        assert_eq!(
            label_json(answers),
            serde_json::json!([
                {"name": "x", "node": "a"},
                {"name": "y", "node": "a"},
                {"node": "b", "error": "connecting to b: refused"},
                {"hostname": "c1", "node": "c"},
            ])
        );
    }

    #[test]
    fn calls_run_at_once_and_answers_keep_the_nodes_order() {
        let nodes: Vec<String> = ["slow", "fast"].map(String::from).to_vec();
        let barrier = std::sync::Barrier::new(2);
        // Each call waits for the other: they can only finish together.
        let answers = on_each(&nodes, |n| {
            barrier.wait();
            if n == "slow" {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok::<_, String>(n.len())
        });
        let got: Vec<(&str, usize)> = answers
            .iter()
            .map(|a| (a.node.as_str(), *a.result.as_ref().unwrap()))
            .collect();
        assert_eq!(got, [("slow", 4), ("fast", 4)]);
    }
}
