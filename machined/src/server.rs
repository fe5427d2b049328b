//! The node API: HTTPS (TLS 1.3, self-signed, pinned by fingerprint) on TCP
//! 50443, JSON under `/v1`. Every request except `GET /v1/nonce` is signed
//! (see [`crate::auth`]); readers may only read.

use crate::auth::{self, AuthError, Role};
use crate::controllers::metrics;
use crate::host::inspect;
use crate::host::kmsg::Record;
use crate::kubernetes::node_api::KubernetesApi;
use crate::log_policy::{self, KnownSecrets};
use crate::node::{Node, PowerEvent};
use crate::peers::{PeerLimits, Peers};
use crate::upgrade::upload;
use basalt_api::request::{NONCE_HEADER, SIGNATURE_HEADER};
use basalt_api::route::Route;
use basalt_api::rpc::{
    ApplyRequest, ConfirmResponse, ErrorResponse, KillResponse, KubeconfigRequest, NonceResponse,
    RebootResponse, ResetResponse, RestartResponse, ShutdownResponse, VersionResponse,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// How long an issued nonce stays usable.
    pub nonce_ttl: Duration,
    /// What any one peer may hold (see [`crate::peers`]).
    pub per_peer: PeerLimits,
    /// The largest upgrade bundle `POST /v1/upgrade` spools.
    pub max_upgrade_body: u64,
    /// How long an upgrade upload may take.
    pub upgrade_body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A 1 MiB config plus a 1 MiB signature file, JSON-escaped.
            max_body: 3 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            nonce_ttl: crate::auth::NONCE_TTL,
            per_peer: PeerLimits::default(),
            max_upgrade_body: 2 * 1024 * 1024 * 1024,
            upgrade_body_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Whole responses, or a channel for `?follow=1` streams.
type Body = http_body_util::Either<Full<Bytes>, http_body_util::channel::Channel<Bytes>>;

fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Either::Left(Full::new(b.into()))
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let body = serde_json::to_vec(v)
        .unwrap_or_else(|e| format!("{{\"error\":\"encoding: {e}\"}}").into_bytes());
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: u16, msg: impl Into<String>) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &ErrorResponse { error: msg.into() })
}

fn text(body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// The node's metrics, or 500 saying why they could not be encoded.
async fn metrics_text(node: &Node) -> Response<Body> {
    match metrics::scrape(node).await {
        Ok(t) => text(t),
        Err(e) => error(500, format!("metrics: {e}")),
    }
}

/// Accept connections until the listener fails; each connection is served
/// on its own task under the connection limit.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    node: Arc<Node>,
    limits: Limits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Peers::new(limits.per_peer.clone());
    let limits = Arc::new(limits);
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A peer over its share is closed at once, before any TLS work, and
        // gives its global slot straight back.
        let admission = match peers.admit(peer.ip(), Instant::now()) {
            Ok(a) => a,
            Err(refusal) => {
                tracing::debug!("{peer}: connection refused: {refusal:?}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let node = Arc::clone(&node);
        let limits = Arc::clone(&limits);
        let peers = Arc::clone(&peers);
        tokio::spawn(async move {
            let _permit = permit;
            let Some(tls) = handshake(&acceptor, tcp, &admission, &limits, peer).await else {
                return;
            };
            let service_limits = Arc::clone(&limits);
            let service = hyper::service::service_fn(move |req| {
                let node = Arc::clone(&node);
                let limits = Arc::clone(&service_limits);
                let peers = Arc::clone(&peers);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(node, &limits, &peers, peer, req).await,
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!("{peer}: {e}");
            }
            drop(admission);
        });
    }
}

/// TLS with one of the peer's handshake slots, waiting for a slot and
/// handshaking within the handshake timeout.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: tokio::net::TcpStream,
    admission: &crate::peers::Admission,
    limits: &Limits,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let slots = admission.handshake_slots();
    let work = async {
        let _slot = slots.acquire_owned().await.ok()?;
        acceptor
            .accept(tcp)
            .await
            .map_err(|e| tracing::debug!("{peer}: TLS handshake: {e}"))
            .ok()
    };
    match tokio::time::timeout(limits.handshake_timeout, work).await {
        Ok(tls) => tls,
        Err(_) => {
            tracing::debug!("{peer}: TLS handshake timed out");
            None
        }
    }
}

/// 429 with the time until the peer's bucket holds another token.
fn too_many(peers: &Peers) -> Response<Body> {
    let mut r = error(
        429,
        "too many unauthenticated requests from this address; slow down",
    );
    let secs = peers.retry_after().as_secs().max(1).to_string();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&secs) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

/// [`answer`], counted in the node's metrics by route and status (and
/// timed, for applies).
async fn handle(
    node: Arc<Node>,
    limits: &Limits,
    peers: &Peers,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str());
    let route = Route::parse(req.method().as_str(), path_and_query.unwrap_or_default())
        .map_or("unknown", |r| r.name());
    let response = answer(Arc::clone(&node), limits, peers, peer, req).await;
    let status = response.status();
    node.metrics.api_request(route, status.as_u16());
    if route == Route::Apply.name() && status.is_success() {
        node.metrics.apply_took(started.elapsed());
    }
    response
}

async fn answer(
    node: Arc<Node>,
    limits: &Limits,
    peers: &Peers,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (nonce, signature) = (header(NONCE_HEADER), header(SIGNATURE_HEADER));
    // Parsed now, acted on after authentication: an unsigned caller learns
    // nothing about which endpoints exist.
    let route = Route::parse(method.as_str(), &path_and_query);
    let is_nonce_request = route == Ok(Route::Nonce);
    if is_nonce_request && !peers.allow_unauthenticated(peer.ip(), Instant::now()) {
        return too_many(peers);
    }
    if let Ok(Route::Upgrade { stage }) = route {
        let auth = SignedHeaders {
            nonce,
            signature,
            path_and_query,
        };
        return upgrade_route(&node, limits, peers, peer, req, auth, stage).await;
    }

    let body = match tokio::time::timeout(
        limits.body_timeout,
        Limited::new(req.into_body(), limits.max_body).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error(413, format!("request body over {} bytes", limits.max_body));
        }
        Ok(Err(e)) => return error(400, format!("reading body: {e}")),
        Err(_) => return error(408, "request body timed out"),
    };

    if is_nonce_request {
        return match node.nonces.issue() {
            Ok(nonce) => json(StatusCode::OK, &NonceResponse { nonce }),
            Err(e) => error(503, format!("no randomness: {e}")),
        };
    }

    let policy = node.policy().await;
    let caller = match auth::authenticate(
        &policy,
        &node.nonces,
        nonce.as_deref(),
        signature.as_deref(),
        method.as_str(),
        &path_and_query,
        &body,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("{peer}: {method} {path}: refused: {e}");
            node.metrics.auth_failure(e.reason());
            // A request that proves nothing is paid for from the same bucket
            // as a nonce: bad signatures cost a verification each.
            if !peers.allow_unauthenticated(peer.ip(), Instant::now()) {
                return too_many(peers);
            }
            return error(e.status(), e.to_string());
        }
    };
    if method != Method::GET && caller.role != Role::Admin {
        let e = AuthError::Forbidden(caller.fingerprint);
        tracing::info!("{peer}: {method} {path}: refused: {e}");
        node.metrics.auth_failure(e.reason());
        return error(e.status(), e.to_string());
    }
    tracing::debug!(
        "{peer}: {method} {path} by {} ({:?})",
        caller.fingerprint,
        caller.role
    );
    match route {
        Ok(Route::Nonce) => error(500, "nonce route reached the authenticated router"),
        Ok(r) if r.method() == basalt_api::route::Method::Get => {
            read_route(&node, r, caller.role).await
        }
        Ok(r) => write_route(&node, r, &body).await,
        Err(e) => error(e.status(), e.to_string()),
    }
}

/// What authenticates a request, taken from its head.
struct SignedHeaders {
    nonce: Option<String>,
    signature: Option<String>,
    path_and_query: String,
}

/// A refused caller: logged, counted, and charged to the peer's bucket as
/// [`answer`] does.
fn refuse(
    node: &Node,
    peers: &Peers,
    peer: SocketAddr,
    what: &str,
    e: &AuthError,
) -> Response<Body> {
    tracing::info!("{peer}: {what}: refused: {e}");
    node.metrics.auth_failure(e.reason());
    if !peers.allow_unauthenticated(peer.ip(), Instant::now()) {
        return too_many(peers);
    }
    error(e.status(), e.to_string())
}

/// `POST /v1/upgrade`: the body (a bundle, up to gigabytes) is streamed
/// into the spool, not memory. Before a byte is stored the request must
/// name an admin key and a live nonce of ours; once it is all in, its
/// signature is verified over the streamed digest; only then is the
/// bundle verified and handed to the slot writer. The spool file is
/// removed whatever happens.
async fn upgrade_route(
    node: &Arc<Node>,
    limits: &Limits,
    peers: &Peers,
    peer: SocketAddr,
    req: Request<Incoming>,
    auth: SignedHeaders,
    stage: bool,
) -> Response<Body> {
    let what = "POST /v1/upgrade";
    let policy = node.policy().await;
    let (nonce, signature) = (auth.nonce.as_deref(), auth.signature.as_deref());
    let declared: Option<u64> = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let early = if let Err(e) = auth::precheck_admin(&policy, &node.nonces, nonce, signature) {
        Some(refuse(node, peers, peer, what, &e))
    } else if node.slots().is_none() {
        Some(error(409, crate::upgrade::NO_SLOTS))
    } else if let Some(n) = declared.filter(|&n| n > limits.max_upgrade_body) {
        tracing::info!("{peer}: {what}: {n} bytes declared, over the limit");
        Some(error(
            413,
            upload::UploadError::TooLarge {
                limit: limits.max_upgrade_body,
            }
            .to_string(),
        ))
    } else {
        None
    };
    if let Some(response) = early {
        discard(req.into_body(), limits).await;
        return response;
    }
    let Ok(_one_at_a_time) = node.upgrade_lock.try_lock() else {
        discard(req.into_body(), limits).await;
        return error(409, crate::upgrade::UpgradeError::Busy.to_string());
    };
    let spooled = match upload::receive(
        req.into_body(),
        &node.upgrade_spool_dir(),
        limits.max_upgrade_body,
        limits.upgrade_body_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::info!("{peer}: {what}: {e}");
            return error(e.status(), e.to_string());
        }
    };
    let caller = match auth::authenticate_digest(
        &policy,
        &node.nonces,
        nonce,
        signature,
        "POST",
        &auth.path_and_query,
        &spooled.sha256,
    ) {
        Ok(c) if c.role == Role::Admin => c,
        Ok(c) => {
            return refuse(
                node,
                peers,
                peer,
                what,
                &AuthError::Forbidden(c.fingerprint),
            );
        }
        Err(e) => return refuse(node, peers, peer, what, &e),
    };
    tracing::info!(
        "{peer}: {what}: {} bytes from {}",
        spooled.len,
        caller.fingerprint
    );
    match node.install_upgrade(&spooled.file, stage).await {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => {
            tracing::warn!("{peer}: {what}: {e}");
            error(e.status(), e.to_string())
        }
    }
}

/// Read and drop a body the node refuses before storing it, up to the
/// size and time any request body gets, so that the client (still sending)
/// reads the answer instead of a reset connection. A larger body is cut
/// off: the connection closes.
async fn discard(mut body: Incoming, limits: &Limits) {
    let mut left = limits.max_body;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                return;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(limits.body_timeout, drain).await;
}

/// `GET` endpoints: readers and admins (files: see [`inspect::read_allowed`]).
async fn read_route(node: &Arc<Node>, route: Route, role: Role) -> Response<Body> {
    match route {
        Route::Version => json(
            StatusCode::OK,
            &VersionResponse {
                version: env!("CARGO_PKG_VERSION").into(),
                api: "v1".into(),
            },
        ),
        Route::Status => json(StatusCode::OK, &node.status().await),
        Route::Mounts => match inspect::mounts() {
            Ok(m) => json(StatusCode::OK, &m),
            Err(e) => error(500, e.to_string()),
        },
        Route::Processes => json(StatusCode::OK, &inspect::processes()),
        Route::Network => {
            let mut report = inspect::network();
            report.controller = node.network_status().as_ref().map(Into::into);
            json(StatusCode::OK, &report)
        }
        Route::Read { path } => {
            let who = match role {
                Role::Admin => inspect::Reader::Admin,
                Role::Reader => inspect::Reader::Reader,
            };
            match inspect::read_file(&node.host, node.state().dir(), who, &path) {
                Ok(data) => json(StatusCode::OK, &data),
                Err(e) => error(e.status(), e.to_string()),
            }
        }
        Route::Resources => json(StatusCode::OK, &node.resources().await),
        Route::Metrics => metrics_text(node).await,
        Route::Services => {
            let list: Vec<basalt_api::rpc::ServiceStatus> =
                node.supervisor().list().iter().map(Into::into).collect();
            json(StatusCode::OK, &list)
        }
        Route::Logs { service, follow } => logs(node, role, &service, follow),
        Route::Dmesg { follow } => dmesg(role, node.supervisor().known_secrets(), follow),
        Route::Health => json(StatusCode::OK, &node.health().await),
        Route::Config => running_config(node).await,
        other => error(405, format!("{} is not a read", other.path_and_query())),
    }
}

/// The running config as TOML, for readers too: what is or may be secret
/// is gone ([`basalt_api::config::MachineConfig::redacted`]: the `Secret`
/// fields, file and manifest contents, URL passwords, private keys), and
/// what is left is what `status`, `resources` and `network` already show a
/// reader, plus public keys, CA certificates and settings. The node's known
/// secrets are redacted again from the text, as from every log line: a
/// second line, should a later schema hold a secret in a plain field.
async fn running_config(node: &Arc<Node>) -> Response<Body> {
    let Some(cfg) = node.running_config().await else {
        return error(404, "no config applied yet (maintenance mode)");
    };
    match cfg.redacted_toml() {
        Ok(toml) => {
            let toml = node.supervisor().known_secrets().redact(&toml).into_owned();
            let mut r = Response::new(full(toml));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/toml"),
            );
            r
        }
        Err(e) => error(500, format!("encoding the config: {e}")),
    }
}

/// `POST` endpoints: admins only.
async fn write_route(node: &Arc<Node>, route: Route, body: &[u8]) -> Response<Body> {
    match route {
        Route::Apply => {
            let req: ApplyRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(400, format!("apply body: {e}")),
            };
            match node.apply(req).await {
                Ok(r) => json(StatusCode::OK, &r),
                Err(e) => error(e.status(), e.to_string()),
            }
        }
        Route::ConfirmApply => match node.confirm().await {
            Ok(confirmed) => json(StatusCode::OK, &ConfirmResponse { confirmed }),
            Err(e) => error(e.status(), e.to_string()),
        },
        Route::RestartService { name } => match node.supervisor().restart(&name).await {
            Ok(()) => json(StatusCode::ACCEPTED, &RestartResponse { restarting: name }),
            Err(e) => error(404, e.to_string()),
        },
        // Debugging aid: SIGKILL the service's process group, as a crash
        // would; the supervisor restarts it with backoff.
        Route::KillService { name } => match node.supervisor().kill(&name) {
            Ok(Some(pid)) => json(StatusCode::ACCEPTED, &KillResponse { killed: pid }),
            Ok(None) => error(409, format!("{name} is not running")),
            Err(e) => error(404, e.to_string()),
        },
        Route::Reboot => {
            node.request_power(PowerEvent::Reboot);
            json(StatusCode::ACCEPTED, &RebootResponse { rebooting: true })
        }
        Route::Reset => match node.reset().await {
            Ok(()) => json(
                StatusCode::ACCEPTED,
                &ResetResponse {
                    reset: true,
                    rebooting: true,
                },
            ),
            Err(e) => error(e.status(), e.to_string()),
        },
        Route::Shutdown => {
            node.request_power(PowerEvent::Shutdown);
            json(
                StatusCode::ACCEPTED,
                &ShutdownResponse {
                    shutting_down: true,
                },
            )
        }
        Route::Bootstrap => match node.bootstrap().await {
            Ok(r) => json(StatusCode::OK, &r),
            Err(e) => error(e.status, e.message),
        },
        // A credential: admins only, as every POST is.
        Route::Kubeconfig => {
            let req: KubeconfigRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return error(400, format!("kubeconfig body: {e}")),
            };
            if let Err(e) = req.check() {
                return error(400, e);
            }
            match node.kubeconfig(req).await {
                Ok(r) => json(StatusCode::OK, &r),
                Err(e) => error(e.status, e.message),
            }
        }
        Route::Rollback => match node.rollback_slot().await {
            Ok(r) => json(StatusCode::OK, &r),
            Err(e) => error(e.status(), e.to_string()),
        },
        other => error(405, format!("{} is not a write", other.path_and_query())),
    }
}

fn stream_response() -> (http_body_util::channel::Sender<Bytes>, Response<Body>) {
    let (tx, body) = http_body_util::channel::Channel::new(64);
    let mut r = Response::new(http_body_util::Either::Right(body));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    (tx, r)
}

/// A log line as served: redacted again, for a secret learnt after the
/// line was captured ([`log_policy`]).
fn log_line(secrets: &KnownSecrets, l: &crate::supervisor::LogLine) -> Bytes {
    Bytes::from(format!("{}\n", secrets.redact(&l.line)))
}

/// A service's ring buffer as text; with follow, then every new line until
/// the client goes away. Who may read which log: [`log_policy`].
fn logs(node: &Arc<Node>, role: Role, name: &str, follow: bool) -> Response<Body> {
    if let Err(e) = log_policy::may_read_log(role, name) {
        // Whether the service exists is no secret: it is in `services`.
        return match node.supervisor().logs(name) {
            Ok(_) => error(403, e.to_string()),
            Err(e) => error(404, e.to_string()),
        };
    }
    let secrets = Arc::clone(node.supervisor().known_secrets());
    let rx = if follow {
        node.supervisor().follow(name).ok()
    } else {
        None
    };
    let lines = match node.supervisor().logs(name) {
        Ok(l) => l,
        Err(e) => return error(404, e.to_string()),
    };
    let Some(mut rx) = rx else {
        let text: Vec<Bytes> = lines.iter().map(|l| log_line(&secrets, l)).collect();
        return Response::new(full(text.concat()));
    };
    let (mut tx, resp) = stream_response();
    let last = lines.last().map(|l| l.seq);
    tokio::spawn(async move {
        for l in &lines {
            if tx.send_data(log_line(&secrets, l)).await.is_err() {
                return;
            }
        }
        loop {
            match rx.recv().await {
                Ok(l) if last.is_some_and(|s| l.seq <= s) => {}
                Ok(l) => {
                    if tx.send_data(log_line(&secrets, &l)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = tx
                        .send_data(Bytes::from(format!("… {n} lines dropped …\n")))
                        .await;
                }
                Err(_) => return,
            }
        }
    });
    resp
}

/// A kernel log record as `role` gets it ([`log_policy`]), if at all.
fn kernel_line(role: Role, secrets: &KnownSecrets, rec: &Record) -> Option<String> {
    log_policy::may_see_kernel_record(role, rec.facility)
        .then(|| secrets.redact(&rec.line).into_owned())
}

/// The kernel log from /dev/kmsg, one record per line; for readers without
/// the services' captured output ([`log_policy`]).
fn dmesg(role: Role, secrets: &Arc<KnownSecrets>, follow: bool) -> Response<Body> {
    use crate::host::kmsg::Kmsg;
    let mut kmsg = match Kmsg::open(true) {
        Ok(k) => k,
        Err(e) => return error(503, format!("kernel log unavailable: {e}")),
    };
    let mut out = String::new();
    while let Some(rec) = kmsg.next_record() {
        out.extend(kernel_line(role, secrets, &rec));
    }
    if !follow {
        return text(out);
    }
    let (mut tx, resp) = stream_response();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(256);
    let secrets = Arc::clone(secrets);
    // Blocking reads of new records on their own thread; stops when the client leaves.
    std::thread::spawn(move || {
        let Ok(mut kmsg) = Kmsg::open(false) else {
            return;
        };
        kmsg.seek_end();
        while let Some(rec) = kmsg.next_record() {
            let Some(line) = kernel_line(role, &secrets, &rec) else {
                continue;
            };
            if line_tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        if tx.send_data(Bytes::from(out)).await.is_err() {
            return;
        }
        while let Some(l) = line_rx.recv().await {
            if tx.send_data(Bytes::from(l)).await.is_err() {
                return;
            }
        }
    });
    resp
}

/// `machine.metrics.listen`: the same Prometheus text, read-only and
/// unauthenticated (Prometheus cannot sign requests; nothing secret is in it).
pub async fn serve_metrics(listener: TcpListener, node: Arc<Node>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let node = Arc::clone(&node);
                async move {
                    let resp = match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => metrics_text(&node).await,
                        _ => error(404, "only GET /metrics is served here"),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics {peer}: {e}");
            }
        });
    }
}
