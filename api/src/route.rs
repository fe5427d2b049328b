//! Every `/v1` endpoint, named once: machined parses a request line into a
//! [`Route`], basaltctl renders a [`Route`] into the request line it signs
//! and sends. Path segments and query values are percent-encoded by
//! `percent-encoding` / `form_urlencoded`, never by hand.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;
use std::fmt;

/// Characters of a path segment sent as they are (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const PREFIX: &str = "/v1";

/// The HTTP methods the API uses: reads are GET, mutations POST (and need
/// an admin key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API endpoint with its parameters. Bodies: see [`crate::rpc`]; the
/// routes whose [`Route::is_text`] is true answer with plain text instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/nonce` → [`crate::rpc::NonceResponse`]; the only unsigned request.
    Nonce,
    /// `GET /v1/version` → [`crate::rpc::VersionResponse`].
    Version,
    /// `GET /v1/status` → [`crate::rpc::Status`].
    Status,
    /// `GET /v1/services` → `Vec<`[`crate::rpc::ServiceStatus`]`>`.
    Services,
    /// `POST /v1/services/{name}/restart` → [`crate::rpc::RestartResponse`].
    RestartService { name: String },
    /// `POST /v1/services/{name}/kill` → [`crate::rpc::KillResponse`].
    KillService { name: String },
    /// `GET /v1/logs/{service}[?follow=1]` → text.
    Logs { service: String, follow: bool },
    /// `GET /v1/dmesg[?follow=1]` → text.
    Dmesg { follow: bool },
    /// `GET /v1/network` → [`crate::rpc::NetworkReport`].
    Network,
    /// `GET /v1/mounts` → `Vec<`[`crate::rpc::Mount`]`>`.
    Mounts,
    /// `GET /v1/processes` → `Vec<`[`crate::rpc::Process`]`>`.
    Processes,
    /// `GET /v1/read?path=…` → [`crate::rpc::FileContent`].
    Read { path: String },
    /// `GET /v1/metrics` → Prometheus text.
    Metrics,
    /// `GET /v1/resources` → every controller's resources: desired and
    /// observed state (JSON).
    Resources,
    /// `POST /v1/apply` ([`crate::rpc::ApplyRequest`]) → [`crate::rpc::ApplyResponse`].
    Apply,
    /// `POST /v1/apply/confirm` → [`crate::rpc::ConfirmResponse`].
    ConfirmApply,
    /// `POST /v1/reboot` → [`crate::rpc::RebootResponse`].
    Reboot,
    /// `POST /v1/shutdown` → [`crate::rpc::ShutdownResponse`].
    Shutdown,
    /// `POST /v1/reset` → [`crate::rpc::ResetResponse`].
    Reset,
    /// `POST /v1/bootstrap` → [`crate::rpc::BootstrapResponse`]: initialise
    /// etcd and the cluster, once, on the first control-plane node (409
    /// after that).
    Bootstrap,
    /// `POST /v1/kubeconfig` ([`crate::rpc::KubeconfigRequest`]) →
    /// [`crate::rpc::KubeconfigResponse`]: an admin credential for the
    /// cluster, minted by the node. A POST, so admin-only.
    Kubeconfig,
    /// `GET /v1/health` → [`crate::rpc::HealthReport`]: the Kubernetes
    /// components' checks.
    Health,
    /// `GET /v1/config` → TOML: the running config as
    /// [`crate::config::MachineConfig::redacted_toml`] shows it (404 in
    /// maintenance mode).
    Config,
    /// `POST /v1/upgrade[?stage=1]`, body: a signed bundle
    /// ([`crate::upgrade`]) → [`crate::rpc::UpgradeResponse`]. `stage`:
    /// write the inactive slot, switch at the next reboot.
    Upgrade { stage: bool },
    /// `POST /v1/rollback` → [`crate::rpc::RollbackResponse`]: boot the
    /// previous slot again.
    Rollback,
}

/// Why a request line names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("missing ?{0}=")]
    MissingParameter(&'static str),
}

impl RouteError {
    /// The HTTP status that goes with the error.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound { .. } => 404,
            RouteError::MissingParameter(_) => 400,
        }
    }
}

impl Route {
    pub fn method(&self) -> Method {
        match self {
            Route::Nonce
            | Route::Version
            | Route::Status
            | Route::Services
            | Route::Logs { .. }
            | Route::Dmesg { .. }
            | Route::Network
            | Route::Mounts
            | Route::Processes
            | Route::Read { .. }
            | Route::Metrics
            | Route::Resources
            | Route::Health
            | Route::Config => Method::Get,
            Route::RestartService { .. }
            | Route::KillService { .. }
            | Route::Apply
            | Route::ConfirmApply
            | Route::Reboot
            | Route::Shutdown
            | Route::Reset
            | Route::Bootstrap
            | Route::Kubeconfig
            | Route::Upgrade { .. }
            | Route::Rollback => Method::Post,
        }
    }

    /// A fixed name per endpoint, without its parameters: what metrics
    /// label a request with (a label must not grow with service names or
    /// paths a caller chooses).
    pub fn name(&self) -> &'static str {
        match self {
            Route::Nonce => "nonce",
            Route::Version => "version",
            Route::Status => "status",
            Route::Services => "services",
            Route::RestartService { .. } => "restart_service",
            Route::KillService { .. } => "kill_service",
            Route::Logs { .. } => "logs",
            Route::Dmesg { .. } => "dmesg",
            Route::Network => "network",
            Route::Mounts => "mounts",
            Route::Processes => "processes",
            Route::Read { .. } => "read",
            Route::Metrics => "metrics",
            Route::Resources => "resources",
            Route::Apply => "apply",
            Route::ConfirmApply => "confirm_apply",
            Route::Reboot => "reboot",
            Route::Shutdown => "shutdown",
            Route::Reset => "reset",
            Route::Bootstrap => "bootstrap",
            Route::Kubeconfig => "kubeconfig",
            Route::Health => "health",
            Route::Config => "config",
            Route::Upgrade { .. } => "upgrade",
            Route::Rollback => "rollback",
        }
    }

    /// Whether the answer is plain text (possibly streamed), not JSON.
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            Route::Logs { .. } | Route::Dmesg { .. } | Route::Metrics | Route::Config
        )
    }

    /// The request target, encoded: what is sent and what is signed.
    pub fn path_and_query(&self) -> String {
        let seg = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let follow = |f: bool| if f { "?follow=1" } else { "" };
        match self {
            Route::Nonce => format!("{PREFIX}/nonce"),
            Route::Version => format!("{PREFIX}/version"),
            Route::Status => format!("{PREFIX}/status"),
            Route::Services => format!("{PREFIX}/services"),
            Route::RestartService { name } => format!("{PREFIX}/services/{}/restart", seg(name)),
            Route::KillService { name } => format!("{PREFIX}/services/{}/kill", seg(name)),
            Route::Logs { service, follow: f } => {
                format!("{PREFIX}/logs/{}{}", seg(service), follow(*f))
            }
            Route::Dmesg { follow: f } => format!("{PREFIX}/dmesg{}", follow(*f)),
            Route::Network => format!("{PREFIX}/network"),
            Route::Mounts => format!("{PREFIX}/mounts"),
            Route::Processes => format!("{PREFIX}/processes"),
            Route::Read { path } => {
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("path", path)
                    .finish();
                format!("{PREFIX}/read?{query}")
            }
            Route::Metrics => format!("{PREFIX}/metrics"),
            Route::Resources => format!("{PREFIX}/resources"),
            Route::Apply => format!("{PREFIX}/apply"),
            Route::ConfirmApply => format!("{PREFIX}/apply/confirm"),
            Route::Reboot => format!("{PREFIX}/reboot"),
            Route::Shutdown => format!("{PREFIX}/shutdown"),
            Route::Reset => format!("{PREFIX}/reset"),
            Route::Bootstrap => format!("{PREFIX}/bootstrap"),
            Route::Kubeconfig => format!("{PREFIX}/kubeconfig"),
            Route::Health => format!("{PREFIX}/health"),
            Route::Config => format!("{PREFIX}/config"),
            Route::Upgrade { stage } => {
                format!("{PREFIX}/upgrade{}", if *stage { "?stage=1" } else { "" })
            }
            Route::Rollback => format!("{PREFIX}/rollback"),
        }
    }

    /// The endpoint a request line names. `method` is the HTTP method as
    /// sent (`GET`, `POST`, …), `path_and_query` the raw request target.
    pub fn parse(method: &str, path_and_query: &str) -> Result<Route, RouteError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let not_found = || RouteError::NotFound {
            method: method.to_string(),
            path: path.to_string(),
        };
        let param = |name: &str| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let follow = || param("follow").is_some_and(|v| v == "1" || v == "true");
        let rest = path.strip_prefix(PREFIX).ok_or_else(not_found)?;
        let segments: Vec<Cow<'_, str>> = rest
            .strip_prefix('/')
            .ok_or_else(not_found)?
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy())
            .collect();
        let segments: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
        let route = match (method, segments.as_slice()) {
            ("GET", ["nonce"]) => Route::Nonce,
            ("GET", ["version"]) => Route::Version,
            ("GET", ["status"]) => Route::Status,
            ("GET", ["services"]) => Route::Services,
            ("POST", ["services", name, "restart"]) => Route::RestartService {
                name: name.to_string(),
            },
            ("POST", ["services", name, "kill"]) => Route::KillService {
                name: name.to_string(),
            },
            ("GET", ["logs", service]) => Route::Logs {
                service: service.to_string(),
                follow: follow(),
            },
            ("GET", ["dmesg"]) => Route::Dmesg { follow: follow() },
            ("GET", ["network"]) => Route::Network,
            ("GET", ["mounts"]) => Route::Mounts,
            ("GET", ["processes"]) => Route::Processes,
            ("GET", ["read"]) => Route::Read {
                path: param("path").ok_or(RouteError::MissingParameter("path"))?,
            },
            ("GET", ["metrics"]) => Route::Metrics,
            ("GET", ["resources"]) => Route::Resources,
            ("POST", ["apply"]) => Route::Apply,
            ("POST", ["apply", "confirm"]) => Route::ConfirmApply,
            ("POST", ["reboot"]) => Route::Reboot,
            ("POST", ["shutdown"]) => Route::Shutdown,
            ("POST", ["reset"]) => Route::Reset,
            ("POST", ["bootstrap"]) => Route::Bootstrap,
            ("POST", ["kubeconfig"]) => Route::Kubeconfig,
            ("GET", ["health"]) => Route::Health,
            ("GET", ["config"]) => Route::Config,
            ("POST", ["upgrade"]) => Route::Upgrade {
                stage: param("stage").is_some_and(|v| v == "1" || v == "true"),
            },
            ("POST", ["rollback"]) => Route::Rollback,
            _ => return Err(not_found()),
        };
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_route() -> Vec<Route> {
        vec![
            Route::Nonce,
            Route::Version,
            Route::Status,
            Route::Services,
            Route::RestartService {
                name: "kube let/x".into(),
            },
            Route::KillService {
                name: "containerd".into(),
            },
            Route::Logs {
                service: "greeter".into(),
                follow: true,
            },
            Route::Logs {
                service: "ünï".into(),
                follow: false,
            },
            Route::Dmesg { follow: false },
            Route::Dmesg { follow: true },
            Route::Network,
            Route::Mounts,
            Route::Processes,
            Route::Read {
                path: "/etc/a b&c=d?e#f%+/ü".into(),
            },
            Route::Metrics,
            Route::Resources,
            Route::Apply,
            Route::ConfirmApply,
            Route::Reboot,
            Route::Shutdown,
            Route::Reset,
            Route::Bootstrap,
            Route::Kubeconfig,
            Route::Health,
            Route::Config,
            Route::Upgrade { stage: false },
            Route::Upgrade { stage: true },
            Route::Rollback,
        ]
    }

    #[test]
    fn every_route_parses_back_from_what_it_renders() {
        for r in every_route() {
            let line = r.path_and_query();
            assert_eq!(
                Route::parse(r.method().as_str(), &line),
                Ok(r.clone()),
                "{line}"
            );
        }
    }

    #[test]
    fn rendering_encodes_what_a_url_cannot_carry() {
        let read = Route::Read {
            path: "/etc/a b&c".into(),
        };
        assert_eq!(read.path_and_query(), "/v1/read?path=%2Fetc%2Fa+b%26c");
        let restart = Route::RestartService { name: "a/b".into() };
        assert_eq!(restart.path_and_query(), "/v1/services/a%2Fb/restart");
    }

    #[test]
    fn hand_written_queries_still_parse() {
        assert_eq!(
            Route::parse("GET", "/v1/read?path=/usr/lib/os-release"),
            Ok(Route::Read {
                path: "/usr/lib/os-release".into()
            })
        );
        assert_eq!(
            Route::parse("GET", "/v1/logs/greeter?follow=true"),
            Ok(Route::Logs {
                service: "greeter".into(),
                follow: true
            })
        );
    }

    #[test]
    fn wrong_method_or_path_is_not_found_and_missing_parameters_are_named() {
        for (m, p) in [
            ("POST", "/v1/status"),
            ("GET", "/v1/apply"),
            ("GET", "/v2/status"),
            ("GET", "/v1"),
            ("GET", "/v1/status/extra"),
            ("GET", "/v1nonce"),
            ("DELETE", "/v1/services"),
            ("GET", "/v1/bootstrap"),
            ("GET", "/v1/kubeconfig"),
            ("POST", "/v1/health"),
            ("POST", "/v1/config"),
            ("GET", "/v1/upgrade"),
            ("GET", "/v1/rollback"),
        ] {
            let e = Route::parse(m, p).unwrap_err();
            assert_eq!(e.status(), 404, "{m} {p}");
            assert_eq!(e.to_string(), format!("no such endpoint: {m} {p}"));
        }
        let e = Route::parse("GET", "/v1/read?other=1").unwrap_err();
        assert_eq!((e.status(), e.to_string()), (400, "missing ?path=".into()));
    }
}
