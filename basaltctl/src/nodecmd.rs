//! `basaltctl` commands that talk to a node: apply, status, logs, … Each
//! call is signed with the operator's key; the node's TLS certificate is
//! pinned in `known_nodes` on first use (or given with `--fingerprint`).

use crate::keys::load_private;
use anyhow::{Context, Result, bail};
use basalt_api::request::API_PORT;
use basalt_api::rpc::{ApplyMode, ApplyRequest, ApplyResponse, Status};
use basaltctl::client::NodeClient;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// Node address, ADDR[:PORT] (default port 50443).
    #[arg(long, short = 'n', env = "BASALT_NODE", global = true)]
    pub node: Option<String>,
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

impl Session {
    pub fn open(args: &NodeArgs) -> Result<Self> {
        let Some(node) = &args.node else {
            bail!("no node given: use --node ADDR[:PORT] or set BASALT_NODE");
        };
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
        if !self.pinned
            && let Some(fp) = self.client.seen_fingerprint()
        {
            save_pin(&self.known, &self.node, &fp)?;
            eprintln!(
                "pinned {} as {fp} in {} (check it against the node's console)",
                self.node,
                self.known.display()
            );
            self.pinned = true;
        }
        Ok(())
    }

    pub fn get_json(&mut self, path: &str) -> Result<serde_json::Value> {
        let v = self.client.get::<serde_json::Value>(path)?;
        self.remember()?;
        Ok(v)
    }

    pub fn post_json<B: serde::Serialize>(
        &mut self,
        path: &str,
        body: &B,
    ) -> Result<serde_json::Value> {
        let v = self.client.post::<_, serde_json::Value>(path, body)?;
        self.remember()?;
        Ok(v)
    }

    fn print(
        &self,
        v: &serde_json::Value,
        text: impl FnOnce(&serde_json::Value) -> String,
    ) -> Result<()> {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(v)?),
            Output::Text => print!("{}", text(v)),
        }
        Ok(())
    }
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
    let v = s.post_json("/v1/apply", &req)?;
    let r: ApplyResponse = serde_json::from_value(v.clone())?;
    s.print(&v, |_| {
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
    let mut s = Session::open(args)?;
    let v = s.get_json("/v1/status")?;
    let st: Status = serde_json::from_value(v.clone())?;
    s.print(&v, |_| {
        format!(
            "hostname     {}\nmode         {}\ngeneration   {}\nconfig       {}\nsigners      {}\nstate        {}\nboot id      {}\nstaged       {}\ntry pending  {}\ntls          {}\nversion      {}\n",
            st.hostname,
            st.mode,
            st.generation,
            st.config_sha256.as_deref().map_or("-".to_string(), |h| format!("sha256:{h}")),
            if st.signers.is_empty() { "-".into() } else { st.signers.join(", ") },
            st.state,
            st.boot_id,
            st.staged_generation.map_or("-".into(), |g| g.to_string()),
            st.try_pending_secs.map_or("-".into(), |s| format!("{s}s left")),
            st.tls_fingerprint,
            st.version,
        )
    })
}

/// Read-only endpoints printed as JSON or as simple tables.
pub fn show(args: &NodeArgs, path: &str, table: fn(&serde_json::Value) -> String) -> Result<()> {
    let mut s = Session::open(args)?;
    let v = s.get_json(path)?;
    s.print(&v, table)
}

pub fn post(args: &NodeArgs, path: &str, done: &str) -> Result<()> {
    let mut s = Session::open(args)?;
    let v = s.post_json(path, &serde_json::json!({}))?;
    s.print(&v, |_| format!("{done}\n"))
}

/// Stream a follow endpoint's body to stdout as it arrives.
pub fn stream(args: &NodeArgs, path: &str) -> Result<()> {
    let mut s = Session::open(args)?;
    let mut resp = s.client.send("GET", path, Vec::new())?;
    s.remember()?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut resp, &mut out).context("streaming from the node")?;
    Ok(())
}

pub fn s(v: &serde_json::Value, k: &str) -> String {
    match &v[k] {
        serde_json::Value::String(x) => x.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn mounts_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<28} {:<10} {:<24} {}\n",
        "TARGET", "TYPE", "SOURCE", "OPTIONS"
    );
    for m in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<28} {:<10} {:<24} {}\n",
            s(m, "target"),
            s(m, "fstype"),
            s(m, "source"),
            s(m, "options")
        ));
    }
    out
}

pub fn ps_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:>7} {:>7} {:<2} {:>10} {}\n",
        "PID", "PPID", "S", "RSS", "COMMAND"
    );
    for p in v.as_array().into_iter().flatten() {
        let rss = p["rss_bytes"].as_u64().unwrap_or(0) / 1024;
        out.push_str(&format!(
            "{:>7} {:>7} {:<2} {:>8}Ki {}\n",
            s(p, "pid"),
            s(p, "ppid"),
            s(p, "state"),
            rss,
            s(p, "command")
        ));
    }
    out
}

pub fn net_table(v: &serde_json::Value) -> String {
    let mut out = String::from("LINKS\n");
    for l in v["links"].as_array().into_iter().flatten() {
        let addrs: Vec<String> = l["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        out.push_str(&format!(
            "  {:<12} {:<5} mtu {:<6} {:<18} {}\n",
            s(l, "name"),
            if l["up"].as_bool() == Some(true) {
                "up"
            } else {
                "down"
            },
            s(l, "mtu"),
            s(l, "mac"),
            addrs.join(" ")
        ));
    }
    out.push_str("ROUTES\n");
    for r in v["routes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<20} via {:<16} dev {:<10} metric {}\n",
            s(r, "destination"),
            s(r, "gateway"),
            s(r, "interface"),
            s(r, "metric")
        ));
    }
    out
}

pub fn read_text(v: &serde_json::Value) -> String {
    if v["binary"].as_bool() == Some(true) {
        format!(
            "<{} bytes of binary data; use -o json for base64>\n",
            s(v, "size")
        )
    } else {
        s(v, "content")
    }
}

pub fn services_table(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<16} {:<12} {:>8} {:>9} {}\n",
        "SERVICE", "STATE", "PID", "RESTARTS", "READY"
    );
    for sv in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16} {:<12} {:>8} {:>9} {}\n",
            s(sv, "name"),
            s(sv, "state"),
            s(sv, "pid"),
            s(sv, "restarts"),
            s(sv, "ready")
        ));
    }
    out
}

pub fn version_text(v: &serde_json::Value) -> String {
    format!("machined {} (api {})\n", s(v, "version"), s(v, "api"))
}
