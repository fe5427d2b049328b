//! The Kubernetes commands' logic, apart from the terminal: waiting for
//! `GET /v1/health` to pass, and writing a kubeconfig the node minted.
//! machined's API tests drive these against a dev node.

use crate::client::{ClientError, NodeClient};
use basalt_api::route::Route;
use basalt_api::rpc::{HealthCheck, HealthReport};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often `basaltctl health` asks the node.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Why waiting for health ended without success.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The deadline passed; `failing` are the checks of the last report
    /// that did not pass (empty if the node was never reached).
    #[error("{}", timed_out_message(.after, .failing, .last_error.as_deref()))]
    TimedOut {
        after: Duration,
        failing: Vec<HealthCheck>,
        /// The last error reaching the node, if the last attempt failed.
        last_error: Option<String>,
    },
    /// An answer that waiting will not change (refused key, pin mismatch,
    /// no such endpoint).
    #[error(transparent)]
    Refused(ClientError),
}

fn timed_out_message(after: &Duration, failing: &[HealthCheck], last: Option<&str>) -> String {
    let mut out = format!("not healthy after {}", format_duration(*after));
    if !failing.is_empty() {
        let names: Vec<String> = failing
            .iter()
            .map(|c| format!("{} ({})", c.name, c.detail))
            .collect();
        out.push_str(&format!("; failing: {}", names.join(", ")));
    }
    if let Some(e) = last {
        out.push_str(&format!("; last attempt: {e}"));
    }
    out
}

/// Errors a later attempt may not see: the node rebooting, the API not up
/// yet, a server error. Authentication and routing errors are final.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } | ClientError::Decode(_) => true,
        ClientError::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        ClientError::FingerprintMismatch { .. } | ClientError::File { .. } => false,
    }
}

/// One attempt as the display sees it.
pub enum Observation<'a> {
    Report(&'a HealthReport),
    Unreachable(&'a ClientError),
}

/// Ask `fetch` every `interval` until a report passes ([`HealthReport::all_ok`])
/// or `timeout` has passed, showing each attempt to `observe`.
pub fn wait_until_healthy(
    mut fetch: impl FnMut() -> Result<HealthReport, ClientError>,
    timeout: Duration,
    interval: Duration,
    mut observe: impl FnMut(Observation<'_>),
) -> Result<HealthReport, HealthError> {
    let start = Instant::now();
    let mut last: Option<HealthReport> = None;
    loop {
        let mut last_error = None;
        match fetch() {
            Ok(report) => {
                observe(Observation::Report(&report));
                if report.all_ok() {
                    return Ok(report);
                }
                last = Some(report);
            }
            Err(e) if transient(&e) => {
                observe(Observation::Unreachable(&e));
                last_error = Some(e.to_string());
            }
            Err(e) => return Err(HealthError::Refused(e)),
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            let failing = last
                .map(|r| r.failing().cloned().collect())
                .unwrap_or_default();
            return Err(HealthError::TimedOut {
                after: timeout,
                failing,
                last_error,
            });
        }
        std::thread::sleep(interval.min(timeout - elapsed));
    }
}

/// [`wait_until_healthy`] against a node.
pub fn wait_for_node(
    client: &NodeClient,
    timeout: Duration,
    interval: Duration,
    observe: impl FnMut(Observation<'_>),
) -> Result<HealthReport, HealthError> {
    wait_until_healthy(|| client.call(&Route::Health), timeout, interval, observe)
}

/// `15m`, `90s`, `1h30m`, `500ms`, or bare seconds (`30`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("`{s}` is not a duration; expected e.g. 90s, 15m, 1h30m or 500ms");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let n: u64 = rest[..end].parse().map_err(|_| err())?;
        rest = &rest[end..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(err());
        };
        let part = unit.checked_mul(u32::try_from(n).map_err(|_| err())?);
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(err)?;
        rest = &rest[len..];
    }
    Ok(total)
}

/// `1h30m`, `15m`, `2s`, `500ms`: the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.is_zero() {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Why a kubeconfig was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0} already exists; refusing to overwrite it (pass --force to replace it)")]
    Exists(PathBuf),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Refuse early, before asking the node for a credential, when `out`
/// exists and `force` is not given.
pub fn check_out_path(out: &Path, force: bool) -> Result<(), WriteError> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(WriteError::Exists(out.to_path_buf()));
    }
    Ok(())
}

/// Write a kubeconfig with mode 0600. Without `force` the file is created
/// only if absent (atomically: a file appearing meanwhile is not
/// replaced); with it, a complete temporary file is renamed over `out`.
pub fn write_kubeconfig(out: &Path, contents: &str, force: bool) -> Result<(), WriteError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError::Io { path, source }
    };
    let create = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let write_all = |mut f: std::fs::File, path: &Path| {
        f.write_all(contents.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(path))
    };
    if !force {
        let f = create(out).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                WriteError::Exists(out.to_path_buf())
            } else {
                io(out)(e)
            }
        })?;
        return write_all(f, out);
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".into());
    let tmp = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = create(&tmp)
        .map_err(io(&tmp))
        .and_then(|f| write_all(f, &tmp))
        .and_then(|()| std::fs::rename(&tmp, out).map_err(io(out)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::os::unix::fs::PermissionsExt;

    fn report(oks: &[bool]) -> HealthReport {
        HealthReport {
            checks: basalt_api::rpc::HEALTH_CHECKS
                .iter()
                .zip(oks)
                .map(|(n, ok)| HealthCheck::new(*n, *ok, if *ok { "ok" } else { "down" }))
                .collect(),
        }
    }

    #[test]
    fn waits_until_every_check_passes_and_tolerates_an_unreachable_node() {
        let calls = Cell::new(0);
        let mut seen = Vec::new();
        let r = wait_until_healthy(
            || {
                calls.set(calls.get() + 1);
                match calls.get() {
                    1 => Err(ClientError::Api {
                        status: 503,
                        message: "starting".into(),
                    }),
                    2 => Ok(report(&[true, false])),
                    _ => Ok(report(&[true, true])),
                }
            },
            Duration::from_secs(10),
            Duration::from_millis(1),
            |o| {
                seen.push(match o {
                    Observation::Report(r) => r.all_ok(),
                    Observation::Unreachable(_) => false,
                })
            },
        )
        .unwrap();
        assert!(r.all_ok());
        assert_eq!(seen, [false, false, true]);
    }

    #[test]
    fn a_timeout_names_the_failing_checks_and_a_refusal_stops_at_once() {
        let e = wait_until_healthy(
            || Ok(report(&[true, false, false])),
            Duration::from_millis(30),
            Duration::from_millis(5),
            |_| {},
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "not healthy after 30ms; failing: kube-apiserver (down), kube-controller-manager (down)"
        );
        let calls = Cell::new(0);
        let e = wait_until_healthy(
            || {
                calls.set(calls.get() + 1);
                Err(ClientError::Api {
                    status: 401,
                    message: "key is not trusted by this node".into(),
                })
            },
            Duration::from_secs(10),
            Duration::from_millis(1),
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, HealthError::Refused(_)), "{e}");
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn durations_parse_and_print() {
        for (text, secs) in [("15m", 900), ("90s", 90), ("1h30m", 5400), ("30", 30)] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["", "m", "5x", "1.5m", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn kubeconfig_is_private_and_only_replaced_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("kubeconfig");
        write_kubeconfig(&out, "one", false).unwrap();
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            check_out_path(&out, false),
            Err(WriteError::Exists(_))
        ));
        let e = write_kubeconfig(&out, "two", false).unwrap_err();
        assert!(e.to_string().contains("pass --force"), "{e}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one");
        // --force replaces it, still 0600 even if the old file was not.
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_out_path(&out, true).unwrap();
        write_kubeconfig(&out, "two", true).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "two");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
