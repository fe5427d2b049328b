//! `basaltctl` commands that talk to a node: apply, status, logs, … Each
//! call is signed with the operator's key; the node's TLS certificate is
//! pinned in `known_nodes` on first use (or given with `--fingerprint`).

use crate::keys::load_private;
use anyhow::{Context, Result, bail};
use basalt_api::request::API_PORT;
use basalt_api::route::Route;
use basalt_api::rpc::{
    ApplyMode, ApplyRequest, ApplyResponse, BootstrapResponse, FileContent, HealthCheck,
    HealthReport, KubeconfigRequest, KubeconfigResponse, Mount, NetworkReport, Process, Resource,
    ResourceState, ServiceStatus, Status, VersionResponse,
};
use basaltctl::client::NodeClient;
use basaltctl::fanout::{self, Answer, Layout};
use basaltctl::kube::{self, HealthError, Observation};
use basaltctl::support;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// Node address, ADDR[:PORT] (default port 50443). Reads (status,
    /// services, logs, support, …) take several, comma-separated, and label
    /// each line or JSON object with its node.
    #[arg(
        long,
        short = 'n',
        env = "BASALT_NODE",
        global = true,
        value_delimiter = ','
    )]
    pub node: Vec<String>,
    /// Signing key (OpenSSH ed25519 private key).
    #[arg(long, env = "BASALT_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Expected TLS certificate fingerprint (SHA256:…); pins it explicitly.
    #[arg(long, global = true)]
    pub fingerprint: Option<String>,
    /// known_nodes file (default: ~/.config/basalt/known_nodes).
    #[arg(long, env = "BASALT_KNOWN_NODES", global = true)]
    pub known_nodes: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text", global = true)]
    pub output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `10.0.0.5` → `10.0.0.5:50443`; `fd00::5` → `[fd00::5]:50443`; explicit ports kept.
pub fn with_port(node: &str) -> String {
    if node.parse::<std::net::SocketAddr>().is_ok() {
        node.to_string()
    } else if let Ok(std::net::IpAddr::V6(ip)) = node.parse::<std::net::IpAddr>() {
        format!("[{ip}]:{API_PORT}")
    } else if node.matches(':').count() == 1 {
        node.to_string()
    } else {
        format!("{node}:{API_PORT}")
    }
}

fn known_nodes_path(args: &NodeArgs) -> PathBuf {
    if let Some(p) = &args.known_nodes {
        return p.clone();
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("basalt/known_nodes")
}

fn lookup_pin(file: &Path, node: &str) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    Ok(text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(node))
            .then(|| parts.next().map(str::to_string))
            .flatten()
    }))
}

fn save_pin(file: &Path, node: &str, fingerprint: &str) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    writeln!(f, "{node} {fingerprint}").with_context(|| format!("writing {}", file.display()))
}

pub struct Session {
    pub client: NodeClient,
    node: String,
    known: PathBuf,
    pinned: bool,
    pub output: Output,
}

/// The nodes `--node` names: at least one, none empty, none twice.
pub fn nodes(args: &NodeArgs) -> Result<&[String]> {
    if args.node.is_empty() {
        bail!("no node given: use --node ADDR[:PORT] or set BASALT_NODE");
    }
    if args.node.iter().any(|n| n.trim().is_empty()) {
        bail!(
            "--node {}: an empty node name; separate nodes with single commas",
            args.node.join(",")
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = args.node.iter().find(|n| !seen.insert(n.as_str())) {
        bail!("--node names {twice} twice");
    }
    Ok(&args.node)
}

impl Session {
    /// The one node a command that changes something acts on.
    pub fn open(args: &NodeArgs) -> Result<Self> {
        match nodes(args)? {
            [one] => Self::open_at(args, one),
            many => bail!(
                "this command acts on one node at a time; --node names {}: {}",
                many.len(),
                many.join(", ")
            ),
        }
    }

    /// A session with `node`, one of `args`' nodes.
    pub fn open_at(args: &NodeArgs, node: &str) -> Result<Self> {
        let node = with_port(node);
        let Some(key) = &args.key else {
            bail!("no signing key: use --key PATH or set BASALT_KEY");
        };
        let key = Arc::new(load_private(key)?);
        let known = known_nodes_path(args);
        let pin = match &args.fingerprint {
            Some(f) => Some(f.clone()),
            None => lookup_pin(&known, &node)?,
        };
        let pinned = pin.is_some();
        let client = NodeClient::new(&node, pin, key)?;
        Ok(Self {
            client,
            node,
            known,
            pinned,
            output: args.output,
        })
    }

    /// After the first successful call on an unpinned node, remember its certificate.
    fn remember(&mut self) -> Result<()> {
        if let Some(note) = self.pin_seen()? {
            eprintln!("{note}");
        }
        Ok(())
    }

    /// [`Session::remember`] without printing: what to tell the operator
    /// when a node was pinned now (the dashboard says it after the screen
    /// is given back).
    pub fn pin_seen(&mut self) -> Result<Option<String>> {
        if !self.pinned
            && let Some(fp) = self.client.seen_fingerprint()
        {
            save_pin(&self.known, &self.node, &fp)?;
            self.pinned = true;
            return Ok(Some(format!(
                "pinned {} as {fp} in {} (check it against the node's console)",
                self.node,
                self.known.display()
            )));
        }
        Ok(None)
    }

    /// Call a JSON endpoint that takes no body.
    pub fn call<T: DeserializeOwned>(&mut self, route: &Route) -> Result<T> {
        let v = self.client.call(route)?;
        self.remember()?;
        Ok(v)
    }

    /// Call a POST endpoint with its typed body.
    pub fn call_with<B: Serialize, T: DeserializeOwned>(
        &mut self,
        route: &Route,
        body: &B,
    ) -> Result<T> {
        let v = self.client.call_with(route, body)?;
        self.remember()?;
        Ok(v)
    }

    /// POST a file as the body (streamed) and decode the JSON answer.
    pub fn upload<T: DeserializeOwned>(
        &mut self,
        route: &Route,
        file: &Path,
        timeout: std::time::Duration,
    ) -> Result<T> {
        let v = self.client.post_file(route, file, timeout)?;
        self.remember()?;
        Ok(v)
    }

    pub fn print<T: Serialize>(&self, v: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        print!("{}", render(self.output, v, text)?);
        Ok(())
    }
}

/// An answer as printed: `-o json` as pretty JSON with keys in sorted order
/// (the form this output always had, independent of field order in
/// basalt-api), `-o text` through `text`; either way ending in a newline.
pub fn render<T: Serialize>(
    output: Output,
    v: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<String> {
    let mut out = match output {
        // Through Value: its maps are sorted.
        Output::Json => serde_json::to_string_pretty(&serde_json::to_value(v)?)?,
        Output::Text => text(v),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn sig_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

pub fn apply(
    args: &NodeArgs,
    file: &Path,
    mode: ApplyMode,
    dry_run: bool,
    try_timeout: Option<u64>,
) -> Result<()> {
    let config =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let sig = sig_path(file);
    let signatures = std::fs::read_to_string(&sig).with_context(|| {
        format!(
            "reading {} (sign first: basaltctl config sign --key KEY {})",
            sig.display(),
            file.display()
        )
    })?;
    let mut s = Session::open(args)?;
    let req = ApplyRequest {
        config,
        signatures,
        mode,
        dry_run,
        try_timeout_secs: try_timeout,
    };
    let r: ApplyResponse = s.call_with(&Route::Apply, &req)?;
    s.print(&r, |r| {
        let mut out = format!(
            "{} generation {} ({:?}{})\n",
            if r.dry_run { "would apply" } else { "applied" },
            r.generation,
            r.mode,
            if r.reboot_required { ", reboot" } else { "" }
        );
        for step in &r.plan {
            out.push_str(&format!("  - {step}\n"));
        }
        for signer in &r.signers {
            out.push_str(&format!("  signed by {signer}\n"));
        }
        out
    })
}

pub fn status(args: &NodeArgs) -> Result<()> {
    read_json(args, &Route::Status, status_text, Layout::Lines)
}

pub fn status_text(st: &Status) -> String {
    let ready = match (&st.ready, &st.not_ready) {
        (true, _) => "yes".to_string(),
        (false, Some(why)) => format!("no: {why}"),
        (false, None) => "no".to_string(),
    };
    format!(
        "hostname     {}\nmode         {}\nready        {}\ngeneration   {}\nconfig       {}\nsigners      {}\nstate        {}\nboot id      {}\nstaged       {}\ntry pending  {}\ntls          {}\nversion      {}\nidentity     {}\ntime         {}\nmin gen      {}\n",
        st.hostname,
        st.mode,
        ready,
        st.generation,
        st.config_sha256
            .as_deref()
            .map_or("-".to_string(), |h| format!("sha256:{h}")),
        if st.signers.is_empty() {
            "-".into()
        } else {
            st.signers.join(", ")
        },
        st.state,
        st.boot_id,
        st.staged_generation.map_or("-".into(), |g| g.to_string()),
        st.try_pending_secs
            .map_or("-".into(), |s| format!("{s}s left")),
        st.tls_fingerprint,
        st.version,
        st.identity,
        st.trusted_time.map_or("-".to_string(), |t| format!(
            "at least {} ({})",
            basalt_api::scope::rfc3339(t.at_least),
            t.source
        )),
        st.min_generation,
    ) + &boot_text(st.boot.as_ref())
        + &host_checks_text(&st.host_checks)
}

/// A disk-booted node's slot and boot entry, after the status table.
fn boot_text(boot: Option<&basalt_api::rpc::BootStatus>) -> String {
    let Some(b) = boot else {
        return String::new();
    };
    let mut out = format!(
        "boot         slot {} of {}, entry {}, version {}\nassessment   {}\nvar          {}\n",
        b.slot,
        b.disk,
        b.entry.as_deref().unwrap_or("-"),
        b.version.as_deref().unwrap_or("-"),
        b.assessment,
        b.var,
    );
    if let Some(u) = &b.last_upgrade {
        out.push_str(&format!("last upgrade {u}\n"));
    }
    out
}

/// The CNI's host prerequisites, one line each, after the status table.
fn host_checks_text(checks: &[basalt_api::rpc::HealthCheck]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "host
",
    );
    for c in checks {
        let mark = if c.ok { '✓' } else { '✗' };
        out.push_str(&format!("  {mark} {:<14} {}\n", c.name, c.detail));
    }
    out
}

/// A JSON endpoint that takes no body, printed as JSON or through `text`.
pub fn show<T: Serialize + DeserializeOwned>(
    args: &NodeArgs,
    route: &Route,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    let mut s = Session::open(args)?;
    let v: T = s.call(route)?;
    s.print(&v, text)
}

/// Whether several nodes are asked (and the output labelled).
fn several(args: &NodeArgs) -> Result<bool> {
    Ok(nodes(args)?.len() > 1)
}

/// A JSON read, printed as JSON or through `text`. Several nodes are asked
/// at once and each answer is labelled with its node ([`fanout`]): text
/// lines behind a `NODE` column laid out as `layout`, JSON objects with a
/// `node` field; a node that fails is reported on stderr under its name,
/// the others still print, and the command fails.
pub fn read_json<T: Serialize + DeserializeOwned + Send>(
    args: &NodeArgs,
    route: &Route,
    text: impl Fn(&T) -> String,
    layout: Layout,
) -> Result<()> {
    if !several(args)? {
        return show(args, route, text);
    }
    let answers = fanout::on_each(nodes(args)?, |n| {
        Session::open_at(args, n)
            .and_then(|mut s| s.call::<T>(route))
            .map_err(|e| fanout::error_chain(e.as_ref()))
    });
    print_labelled(args.output, &answers, text, layout)
}

/// Several nodes' answers, labelled ([`fanout::render`]); failures on
/// stderr, and an error naming them.
fn print_labelled<T: Serialize>(
    output: Output,
    answers: &[Answer<T, String>],
    text: impl Fn(&T) -> String,
    layout: Layout,
) -> Result<()> {
    let r = fanout::render(output == Output::Json, answers, text, layout);
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    match r.failed {
        Some(s) => Err(anyhow::anyhow!(s)),
        None => Ok(()),
    }
}

/// An error naming the failed nodes, if any.
fn finish<T>(answers: &[Answer<T, String>]) -> Result<()> {
    match fanout::failures(answers).1 {
        Some(s) => Err(anyhow::anyhow!(s)),
        None => Ok(()),
    }
}

/// Stream a text endpoint's body (logs, dmesg, metrics, config) to stdout
/// as it arrives. From several nodes each line is labelled with its node:
/// followed streams line by line as they come, whole answers node by node.
pub fn stream(args: &NodeArgs, route: &Route) -> Result<()> {
    if !several(args)? {
        let mut s = Session::open(args)?;
        let mut resp = s.client.open_text(route)?;
        s.remember()?;
        let mut out = std::io::stdout().lock();
        std::io::copy(&mut resp, &mut out).context("streaming from the node")?;
        return Ok(());
    }
    let nodes = nodes(args)?;
    let width = fanout::label_width(nodes.iter().map(String::as_str), Layout::Lines);
    let follow = matches!(
        route,
        Route::Logs { follow: true, .. } | Route::Dmesg { follow: true }
    );
    if follow {
        let answers = fanout::on_each(nodes, |n| {
            follow_labelled(args, route, n, width).map_err(|e| {
                // At once: the other streams may run for hours.
                let e = fanout::error_chain(e.as_ref());
                eprintln!("{n}: error: {e}");
                e
            })
        });
        return finish(&answers);
    }
    let answers = fanout::on_each(nodes, |n| {
        let whole = || -> Result<Vec<u8>> {
            let mut s = Session::open_at(args, n)?;
            let mut resp = s.client.open_text(route)?;
            s.remember()?;
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut resp, &mut body).context("reading from the node")?;
            Ok(body)
        };
        whole().map_err(|e| fanout::error_chain(e.as_ref()))
    });
    let mut out = std::io::stdout().lock();
    for a in &answers {
        if let Ok(body) = &a.result {
            out.write_all(&fanout::label_bytes(&a.node, width, body))?;
        }
    }
    drop(out);
    eprint!("{}", fanout::failures(&answers).0);
    finish(&answers)
}

/// A followed stream of `node`, each line labelled as it comes.
fn follow_labelled(args: &NodeArgs, route: &Route, node: &str, width: usize) -> Result<()> {
    use std::io::BufRead;
    let mut s = Session::open_at(args, node)?;
    let resp = s.client.open_text(route)?;
    s.remember()?;
    let mut lines = std::io::BufReader::new(resp);
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines
            .read_until(b'\n', &mut line)
            .context("streaming from the node")?
            == 0
        {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(&fanout::label_bytes(node, width, &line))?;
        out.flush()?;
    }
}

/// `basaltctl bootstrap`.
pub fn bootstrap(args: &NodeArgs) -> Result<()> {
    let mut s = Session::open(args)?;
    let r: BootstrapResponse = s
        .call(&Route::Bootstrap)
        .context("the node did not bootstrap")?;
    s.print(&r, |r| {
        format!("bootstrapped: etcd member {}\n{}", r.etcd_member, r.message)
    })
}

/// `basaltctl kubeconfig`: ask the node to mint one; print it, or write it
/// 0600 to `out` (refused before asking if `out` exists and not `force`).
pub fn kubeconfig(
    args: &NodeArgs,
    out: Option<&Path>,
    server: Option<String>,
    user: String,
    force: bool,
) -> Result<()> {
    let req = KubeconfigRequest { server, user };
    req.check().map_err(anyhow::Error::msg)?;
    if let Some(out) = out {
        kube::check_out_path(out, force)?;
    }
    let mut s = Session::open(args)?;
    let r: KubeconfigResponse = s
        .call_with(&Route::Kubeconfig, &req)
        .context("the node did not issue a kubeconfig")?;
    match out {
        Some(out) => {
            kube::write_kubeconfig(out, &r.kubeconfig, force)?;
            eprintln!(
                "wrote a kubeconfig for {} to {} (mode 0600): it is a cluster credential, keep it private",
                req.user,
                out.display()
            );
            Ok(())
        }
        None if s.output == Output::Json => s.print(&r, |_| String::new()),
        None => {
            print!("{}", r.kubeconfig);
            Ok(())
        }
    }
}

/// `basaltctl health`: poll `GET /v1/health` with one live line per check
/// (on stderr, when it is a terminal) until all pass or `timeout`; then the
/// last report on stdout. Several nodes: one live line per node, then each
/// node's report labelled.
pub fn health(args: &NodeArgs, timeout: std::time::Duration) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    if several(args)? {
        return health_of_nodes(args, timeout);
    }
    let mut s = Session::open(args)?;
    let multi = MultiProgress::new();
    let header = multi.add(ProgressBar::new_spinner());
    header.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    header.enable_steady_tick(std::time::Duration::from_millis(120));
    header.set_message(format!(
        "asking the node (up to {})",
        kube::format_duration(timeout)
    ));
    let line_style =
        ProgressStyle::with_template("  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut lines: Vec<(String, ProgressBar)> = Vec::new();
    let mut last: Option<HealthReport> = None;
    let result = kube::wait_for_node(&s.client, timeout, kube::POLL_INTERVAL, |o| match o {
        Observation::Report(r) => {
            let failing = r.failing().count();
            header.set_message(if r.all_ok() {
                "all checks pass".to_string()
            } else {
                format!("{failing} of {} checks failing; waiting", r.checks.len())
            });
            for c in &r.checks {
                let line = match lines.iter().find(|(n, _)| *n == c.name) {
                    Some((_, bar)) => bar.clone(),
                    None => {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(line_style.clone());
                        lines.push((c.name.clone(), bar.clone()));
                        bar
                    }
                };
                line.set_message(check_line(c));
            }
            last = Some(r.clone());
        }
        Observation::Unreachable(e) => header.set_message(format!("node not answering: {e}")),
    });
    let _ = multi.clear();
    if last.is_some() {
        s.remember()?;
    }
    match result {
        Ok(report) => s.print(&report, health_text),
        Err(e @ HealthError::TimedOut { .. }) => {
            if let Some(report) = &last {
                s.print(report, health_text)?;
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// One live line per node on stderr (`NODE  [elapsed] 2 of 6 checks
/// failing`), the nodes waited for at once.
fn health_of_nodes(args: &NodeArgs, timeout: std::time::Duration) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let nodes = nodes(args)?;
    let width = fanout::label_width(nodes.iter().map(String::as_str), Layout::Lines);
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: std::collections::HashMap<&str, ProgressBar> = nodes
        .iter()
        .map(|n| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(format!("{n:<width$}"));
            bar.set_message("asking the node");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            (n.as_str(), bar)
        })
        .collect();
    let answers = fanout::on_each(nodes, |n| {
        let bar = bars.get(n).cloned().unwrap_or_else(ProgressBar::hidden);
        let wait = || -> Result<HealthReport> {
            let mut s = Session::open_at(args, n)?;
            let mut reached = false;
            let r = kube::wait_for_node(&s.client, timeout, kube::POLL_INTERVAL, |o| match o {
                Observation::Report(r) => {
                    reached = true;
                    bar.set_message(match r.failing().count() {
                        _ if r.all_ok() => "all checks pass".to_string(),
                        k => format!("{k} of {} checks failing; waiting", r.checks.len()),
                    });
                }
                Observation::Unreachable(e) => bar.set_message(format!("not answering: {e}")),
            });
            if reached {
                s.remember()?;
            }
            Ok(r?)
        };
        let r = wait().map_err(|e| fanout::error_chain(e.as_ref()));
        bar.finish_and_clear();
        r
    });
    let _ = multi.clear();
    print_labelled(args.output, &answers, health_text, Layout::Lines)
}

fn check_line(c: &HealthCheck) -> String {
    format!(
        "{} {:<24} {}",
        if c.ok { "✓" } else { "✗" },
        c.name,
        c.detail
    )
}

/// One line per check: ✓ or ✗, name, detail.
pub fn health_text(r: &HealthReport) -> String {
    r.checks.iter().map(|c| check_line(c) + "\n").collect()
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

pub fn mounts_table(mounts: &Vec<Mount>) -> String {
    let mut out = format!(
        "{:<28} {:<10} {:<24} {}\n",
        "TARGET", "TYPE", "SOURCE", "OPTIONS"
    );
    for m in mounts {
        out.push_str(&format!(
            "{:<28} {:<10} {:<24} {}\n",
            m.target, m.fstype, m.source, m.options
        ));
    }
    out
}

pub fn ps_table(processes: &Vec<Process>) -> String {
    let mut out = format!(
        "{:>7} {:>7} {:<2} {:>10} {}\n",
        "PID", "PPID", "S", "RSS", "COMMAND"
    );
    for p in processes {
        out.push_str(&format!(
            "{:>7} {:>7} {:<2} {:>8}Ki {}\n",
            p.pid,
            p.ppid,
            p.state,
            p.rss_bytes / 1024,
            p.command
        ));
    }
    out
}

pub fn net_table(net: &NetworkReport) -> String {
    let mut out = String::from("LINKS\n");
    for l in &net.links {
        out.push_str(&format!(
            "  {:<12} {:<5} mtu {:<6} {:<18} {}\n",
            l.name,
            if l.up { "up" } else { "down" },
            l.mtu,
            l.mac,
            l.addresses.join(" ")
        ));
    }
    out.push_str("ROUTES\n");
    for r in &net.routes {
        out.push_str(&format!(
            "  {:<20} via {:<16} dev {:<10} metric {}\n",
            r.destination,
            or_dash(r.gateway.as_deref()),
            r.interface,
            r.metric
        ));
    }
    out
}

/// `basaltctl read`: a text file exactly as it is on the node (no newline
/// added), a note for a binary one; `-o json` gives the base64.
pub fn read(args: &NodeArgs, path: &str) -> Result<()> {
    let route = Route::Read {
        path: path.to_string(),
    };
    if several(args)? {
        return read_json(args, &route, file_text, Layout::Lines);
    }
    let mut s = Session::open(args)?;
    let f: FileContent = s.call(&route)?;
    match (s.output, f.binary) {
        (Output::Text, false) => {
            print!("{}", f.content);
            Ok(())
        }
        _ => s.print(&f, file_text),
    }
}

/// A file as text, or a note for a binary one.
fn file_text(f: &FileContent) -> String {
    if f.binary {
        format!(
            "<{} bytes of binary data; use -o json for base64>\n",
            f.size
        )
    } else {
        f.content.clone()
    }
}

/// `basaltctl support`: every node's bundle ([`support::collect`], at once,
/// one progress line each), written to `out`; prints each member and its
/// size. A node that cannot be reached gets its `errors.txt` and fails the
/// command, after the others are written.
pub fn support(args: &NodeArgs, out: &Path, force: bool) -> Result<()> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let nodes = nodes(args)?;
    // Before asking the nodes anything.
    if !force && out.exists() {
        bail!("{} exists; pass --force to replace it", out.display());
    }
    let width = fanout::label_width(nodes.iter().map(String::as_str), Layout::Lines);
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix} [{pos}/{len}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: std::collections::HashMap<&str, ProgressBar> = nodes
        .iter()
        .map(|n| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(format!("{n:<width$}"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            (n.as_str(), bar)
        })
        .collect();
    let answers = fanout::on_each(nodes, |n| {
        let bar = bars.get(n).cloned().unwrap_or_else(ProgressBar::hidden);
        let bundle = match Session::open_at(args, n) {
            Ok(mut s) => {
                let mut b = support::collect(&s.client, n, &mut |p| {
                    bar.set_length(p.total as u64);
                    bar.set_position(p.done as u64);
                    bar.set_message(p.section.to_string());
                });
                if b.unreachable.is_none()
                    && let Err(e) = s.remember()
                {
                    b.errors.push(format!("pinning the node: {e:#}"));
                }
                b
            }
            Err(e) => support::NodeBundle::unreachable(n, fanout::error_chain(e.as_ref())),
        };
        bar.finish_and_clear();
        Ok::<_, String>(bundle)
    });
    let _ = multi.clear();
    let bundles: Vec<support::NodeBundle> =
        answers.into_iter().filter_map(|a| a.result.ok()).collect();
    let written = support::write_bundle(out, &bundles, force)?;
    for (path, size) in &written.members {
        println!("{:>10}  {path}", basaltctl::dashboard::human_bytes(*size));
    }
    println!(
        "wrote {}: {} files from {} node{}, {} ({} unpacked)",
        out.display(),
        written.members.len(),
        bundles.len(),
        if bundles.len() == 1 { "" } else { "s" },
        basaltctl::dashboard::human_bytes(written.compressed),
        basaltctl::dashboard::human_bytes(written.unpacked()),
    );
    let dirs = support::node_dirs(&bundles);
    let mut unreached = Vec::new();
    for (b, dir) in bundles.iter().zip(&dirs) {
        if let Some(e) = &b.unreachable {
            eprintln!("{}: error: {e}", b.node);
            unreached.push(b.node.as_str());
        } else if !b.errors.is_empty() {
            eprintln!(
                "{}: {} sections missing, see {dir}/errors.txt",
                b.node,
                b.errors.len()
            );
        }
    }
    if !unreached.is_empty() {
        bail!(
            "{} of {} nodes could not be reached: {}{}",
            unreached.len(),
            bundles.len(),
            unreached.join(", "),
            if unreached.len() < bundles.len() {
                "; the bundle holds what the others gave"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub fn services_table(services: &Vec<ServiceStatus>) -> String {
    let mut out = format!(
        "{:<16} {:<12} {:>8} {:>9} {}\n",
        "SERVICE", "STATE", "PID", "RESTARTS", "READY"
    );
    for sv in services {
        out.push_str(&format!(
            "{:<16} {:<12} {:>8} {:>9} {}\n",
            sv.name,
            sv.state,
            or_dash(sv.pid),
            sv.restarts,
            sv.ready
        ));
    }
    out
}

/// `basaltctl resources`: one line per resource, desired next to observed.
pub fn resources_table(resources: &Vec<Resource>) -> String {
    let mut out = format!(
        "{:<10} {:<36} {:<8} {}\n",
        "CONCERN", "NAME", "IN SYNC", "STATE"
    );
    for r in resources {
        out.push_str(&format!(
            "{:<10} {:<36} {:<8} {}\n",
            r.controller,
            r.id,
            if r.in_sync { "yes" } else { "no" },
            resource_summary(&r.state)
        ));
    }
    out
}

fn or_none<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn list_or_dash<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(" ")
    }
}

/// A short desired/observed summary of one resource.
pub fn resource_summary(state: &ResourceState) -> String {
    match state {
        ResourceState::Config {
            generation,
            staged_generation,
            try_pending,
            ..
        } => {
            let mut out = format!("generation {generation}");
            if let Some(g) = staged_generation {
                out.push_str(&format!(", staged {g}"));
            }
            if *try_pending {
                out.push_str(", try pending");
            }
            out
        }
        ResourceState::Hostname { desired, observed } => {
            format!("want {}, have {observed}", or_dash(desired.as_deref()))
        }
        ResourceState::Sysctl { desired, observed } => {
            format!("want {desired}, have {}", or_dash(observed.as_deref()))
        }
        ResourceState::KernelModule { present } => {
            if *present { "loaded" } else { "not loaded" }.to_string()
        }
        ResourceState::File {
            op,
            mode,
            desired_bytes,
            observed_bytes,
        } => format!(
            "{} {mode:04o}, want {desired_bytes} bytes, have {}",
            format!("{op:?}").to_lowercase(),
            observed_bytes.map_or("none".to_string(), |b| format!("{b} bytes"))
        ),
        ResourceState::ResolvConf { desired } => format!(
            "nameservers {}; search {}",
            list_or_dash(&desired.nameservers),
            list_or_dash(&desired.search)
        ),
        ResourceState::Link { observed } => {
            let mut out = format!("addresses {}", list_or_dash(&observed.addresses));
            if let Some(d) = &observed.dhcp {
                out.push_str(&format!(
                    ", dhcp {}",
                    format!("{:?}", d.phase).to_lowercase()
                ));
                if let Some(l) = &d.lease {
                    out.push_str(&format!(" {}/{}", l.address, l.prefix_len));
                }
            }
            out
        }
        ResourceState::Service { observed } => format!(
            "{}, pid {}, ready {}",
            observed.state,
            or_dash(observed.pid),
            observed.ready
        ),
        ResourceState::MetricsListener { desired, observed } => {
            format!("want {}, have {}", or_none(*desired), or_none(*observed))
        }
        ResourceState::Kubernetes {
            node_ips,
            bootstrapped,
            services,
            error,
        } => {
            let mut out = format!(
                "node IPs {}, services {}{}",
                list_or_dash(node_ips),
                list_or_dash(services),
                if *bootstrapped {
                    ", bootstrapped here"
                } else {
                    ""
                }
            );
            if let Some(e) = error {
                out.push_str(&format!("; error: {e}"));
            }
            out
        }
        ResourceState::BakedImage {
            archive,
            imported,
            error,
        } => match (imported, error) {
            (true, _) => format!("{archive} imported"),
            (false, Some(e)) => format!("{archive} failed: {e}"),
            (false, None) => format!("{archive} pending"),
        },
    }
}

pub fn version_text(v: &VersionResponse) -> String {
    format!("machined {} (api {})\n", v.version, v.api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_has_sorted_keys_and_text_output_ends_in_a_newline() {
        let v = VersionResponse {
            version: "1.2.3".into(),
            api: "v1".into(),
        };
        assert_eq!(
            render(Output::Json, &v, version_text).unwrap(),
            "{\n  \"api\": \"v1\",\n  \"version\": \"1.2.3\"\n}\n"
        );
        assert_eq!(
            render(Output::Text, &v, |_| "no newline".to_string()).unwrap(),
            "no newline\n"
        );
    }

    #[test]
    fn tables_print_from_the_types() {
        let mounts = vec![Mount {
            source: "proc".into(),
            target: "/proc".into(),
            fstype: "proc".into(),
            options: "rw,nosuid".into(),
        }];
        let text = render(Output::Text, &mounts, mounts_table).unwrap();
        assert!(text.ends_with("rw,nosuid\n"), "{text:?}");
        assert_eq!(text.lines().count(), 2);

        let services = vec![ServiceStatus {
            name: "containerd".into(),
            state: basalt_api::rpc::ServiceState::Backoff,
            pid: None,
            restarts: 3,
            last_exit: None,
            last_error: None,
            ready: false,
            memory_current: None,
        }];
        let text = services_table(&services);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["containerd", "backoff", "-", "3", "false"]);
    }

    #[test]
    fn resources_print_concern_name_sync_and_a_summary() {
        use basalt_api::rpc::{Concern, ResolvConf};
        let list = vec![
            Resource::new(
                Concern::Kernel,
                "sysctl/vm.max_map_count",
                false,
                ResourceState::Sysctl {
                    desired: "262144".into(),
                    observed: Some("65530".into()),
                },
            ),
            Resource::new(
                Concern::Dns,
                "/run/basalt/resolv.conf",
                true,
                ResourceState::ResolvConf {
                    desired: ResolvConf {
                        nameservers: vec!["10.0.2.3".parse().unwrap()],
                        search: vec![],
                    },
                },
            ),
            Resource::new(
                Concern::Files,
                "/etc/motd",
                true,
                ResourceState::File {
                    op: basalt_api::config::FileOp::Overwrite,
                    mode: 0o644,
                    desired_bytes: 5,
                    observed_bytes: Some(5),
                },
            ),
        ];
        let text = render(Output::Text, &list, resources_table).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[1].starts_with("kernel     sysctl/vm.max_map_count")
                && lines[1].ends_with("no       want 262144, have 65530"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("yes      nameservers 10.0.2.3; search -"),
            "{text}"
        );
        assert!(
            lines[3].ends_with("overwrite 0644, want 5 bytes, have 5 bytes"),
            "{text}"
        );
        let json = render(Output::Json, &list, resources_table).unwrap();
        let back: Vec<Resource> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, list);
    }

    #[test]
    fn health_prints_a_mark_per_check() {
        let r = HealthReport {
            checks: vec![
                HealthCheck::new("etcd", true, "member healthy"),
                HealthCheck::new("kubelet", false, "healthz: connection refused"),
            ],
        };
        assert_eq!(
            health_text(&r),
            format!(
                "✓ {:<24} member healthy\n✗ {:<24} healthz: connection refused\n",
                "etcd", "kubelet"
            )
        );
    }

    #[test]
    fn status_says_why_a_node_is_not_ready() {
        let mut st = Status {
            version: "0.1.0".into(),
            hostname: "n".into(),
            mode: basalt_api::rpc::NodeMode::Maintenance,
            generation: 0,
            config_sha256: None,
            signers: vec![],
            boot_id: "b".into(),
            state: "ram".into(),
            ready: false,
            not_ready: Some("no config yet (maintenance mode)".into()),
            staged_generation: None,
            try_pending_secs: None,
            tls_fingerprint: "SHA256:x".into(),
            host_checks: vec![],
            identity: basalt_api::scope::NodeIdentity::from_firmware(
                Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
                None,
                vec!["52:54:00:12:34:56".parse().unwrap()],
            ),
            trusted_time: Some(basalt_api::scope::TrustedTime::new(1_764_547_200, 0, false)),
            min_generation: 3,
            boot: None,
        };
        assert!(
            status_text(&st).contains("\nready        no: no config yet (maintenance mode)\n"),
            "{}",
            status_text(&st)
        );
        assert!(
            status_text(&st).contains(
                "\nidentity     system_uuid 3f2504e0-4f89-11d3-9a0c-0305e82c3301, serial (none), macs [\"52:54:00:12:34:56\"]\n\
                 time         at least 2025-12-01T00:00:00Z (its image's build time; its clock is not synchronized)\n\
                 min gen      3\n"
            ),
            "{}",
            status_text(&st)
        );
        st.ready = true;
        st.not_ready = None;
        assert!(status_text(&st).contains("\nready        yes\n"));
        st.host_checks = vec![
            basalt_api::rpc::HealthCheck::new("host-bpffs", true, "bpffs at /sys/fs/bpf"),
            basalt_api::rpc::HealthCheck::new("host-modules", false, "not loaded: vxlan"),
        ];
        assert!(
            status_text(&st).ends_with(
                "host\n  ✓ host-bpffs     bpffs at /sys/fs/bpf\n  ✗ host-modules   not loaded: vxlan\n"
            ),
            "{}",
            status_text(&st)
        );
    }
}
