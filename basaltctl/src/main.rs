//! `basaltctl`: the operator's tool for Basalt keys, signed configs and nodes.

mod configcmd;
mod dashcmd;
mod keys;
mod nodecmd;
mod upgradecmd;

use anyhow::Result;
use basalt_api::route::Route;
use basalt_api::rpc::{
    ConfirmResponse, KillResponse, RebootResponse, ResetResponse, RestartResponse, ShutdownResponse,
};
use basaltctl::fanout::Layout;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "basaltctl",
    version,
    about = "Operate Basalt nodes: keys, signed machine configs, node API"
)]
struct Cli {
    #[command(flatten)]
    node: nodecmd::NodeArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate and inspect ed25519 signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Generate, validate, sign, verify and compare machine configs; show a node's.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Send a signed config (FILE and FILE.sig) to the node.
    Apply {
        file: PathBuf,
        /// auto: reboot only if needed; no-reboot: refuse if needed; reboot; staged: next boot; try: roll back unless confirmed.
        #[arg(long, value_enum, default_value = "auto")]
        mode: ModeArg,
        /// Show the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --mode try: seconds before an unconfirmed config rolls back.
        #[arg(long)]
        try_timeout: Option<u64>,
    },
    /// Keep a config applied with --mode try.
    Confirm,
    /// Node summary: hostname, mode, generation, signers, STATE.
    Status,
    /// machined's version.
    Version,
    /// Services and their states.
    Services,
    /// Every controller's resources: desired next to observed, in sync or not.
    Resources,
    /// Act on one service.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// A service's log (ring buffer).
    Logs {
        name: String,
        /// Keep streaming new lines.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// The kernel log.
    Dmesg {
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Links, addresses and routes.
    Net,
    /// Mounted filesystems.
    Mounts,
    /// Processes.
    Ps,
    /// Print a file from the node (size-capped; STATE is off limits).
    Read { path: String },
    /// Prometheus metrics text.
    Metrics,
    /// A live view of the nodes: CPU, memory, pressure, services (state,
    /// readiness, restarts), the log of a chosen service, config generation
    /// and signers. Keys: ←/→ node, ↑/↓ service, q, Esc or Ctrl-C quit.
    /// When stdout is not a terminal (or with --once) it prints each node
    /// once as plain text and exits, non-zero if a node failed.
    Dashboard {
        /// How often to refresh, e.g. 2s, 500ms, 1m.
        #[arg(long, default_value = "2s", value_parser = basaltctl::kube::parse_duration)]
        interval: std::time::Duration,
        /// Print once as plain text, even on a terminal.
        #[arg(long)]
        once: bool,
    },
    /// Write a support bundle: each node's status, services, health,
    /// resources, service logs, kernel log, network, mounts, processes,
    /// metrics, running config (secrets redacted) and image files, one
    /// directory per node in a zstd-compressed tar. What a node refuses
    /// (e.g. to a reader key) is listed in its errors.txt.
    Support {
        /// Where to write the bundle; refuses to replace it without --force.
        #[arg(long, value_name = "FILE", default_value = "support.tar.zst")]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Stop services and reboot the node.
    Reboot,
    /// Stop services and power the node off.
    Shutdown,
    /// Create the Kubernetes cluster: initialise etcd on this first
    /// control-plane node. Once per cluster; the node refuses a second time.
    Bootstrap,
    /// Print (or write) an admin kubeconfig for the cluster.
    ///
    /// The node mints it: a new client certificate signed by the cluster CA,
    /// for --user, valid for the whole cluster. Treat it as a password. Needs
    /// an admin key.
    Kubeconfig {
        /// Write it to FILE (mode 0600) instead of printing it; refuses to
        /// overwrite an existing FILE without --force.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The API server URL to put in it instead of the config's
        /// cluster.endpoint, e.g. https://127.0.0.1:16443 for a forwarded port.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// The user name the credential is issued to.
        #[arg(long, value_name = "NAME", default_value = basalt_api::rpc::DEFAULT_KUBECONFIG_USER)]
        user: String,
        /// Replace --out if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Wait until the node's Kubernetes checks pass (etcd, API server,
    /// controller-manager, scheduler, kubelet, node Ready), showing each.
    /// Exits non-zero naming the failing checks if they do not pass in time.
    Health {
        /// How long to wait, e.g. 90s, 15m, 1h.
        #[arg(long, default_value = "15m", value_parser = basaltctl::kube::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Signed A/B upgrades: `upgrade --node N BUNDLE [--stage]` sends a
    /// bundle; `create`, `sign` and `verify` build and check one offline.
    Upgrade(upgradecmd::UpgradeArgs),
    /// Boot the node's previous A/B slot again.
    Rollback,
    /// Wipe STATE (configs, TLS identity) and reboot into maintenance mode.
    Reset {
        /// Required: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Restart a service.
    Restart { name: String },
    /// SIGKILL a service's processes, as a crash would; it restarts with backoff.
    Kill { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Auto,
    NoReboot,
    Reboot,
    Staged,
    Try,
}

impl From<ModeArg> for basalt_api::rpc::ApplyMode {
    fn from(m: ModeArg) -> Self {
        use basalt_api::rpc::ApplyMode as M;
        match m {
            ModeArg::Auto => M::Auto,
            ModeArg::NoReboot => M::NoReboot,
            ModeArg::Reboot => M::Reboot,
            ModeArg::Staged => M::Staged,
            ModeArg::Try => M::Try,
        }
    }
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Write a new ed25519 key: PATH (OpenSSH private key, mode 0600) and PATH.pub.
    Gen {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
        /// Comment stored in the key (e.g. your name).
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Write a complete, commented config with fresh cluster secrets.
    Gen {
        #[arg(long, value_enum)]
        role: configcmd::RoleArg,
        /// Cluster name (DNS label).
        #[arg(long)]
        cluster_name: String,
        /// Kubernetes API server URL, e.g. https://10.0.0.10:6443.
        #[arg(long)]
        endpoint: String,
        /// The admin's OpenSSH public key file (ssh-ed25519).
        #[arg(long)]
        admin_key: PathBuf,
        /// The node's host name (also its Kubernetes node name).
        #[arg(long)]
        hostname: Option<String>,
        /// The pod network: cilium, bridge (one node only) or none.
        #[arg(long, value_enum, default_value = "cilium")]
        cni: configcmd::CniArg,
        /// Let ordinary pods run on control-plane nodes (a one-node cluster).
        #[arg(long)]
        schedule_on_control_plane: bool,
        /// Write here (refuses to overwrite) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a config; print each error as FILE:line:col: path: message.
    Validate { file: PathBuf },
    /// Sign FILE with the --key (or BASALT_KEY) ed25519 key, appending a signature block to FILE.sig.
    Sign { file: PathBuf },
    /// Check FILE.sig against trusted admin keys, then the config itself.
    Verify {
        /// File of trusted admin public keys, one per line.
        #[arg(long)]
        trust: PathBuf,
        /// Distinct admin signatures required.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// The node's current generation; the config must be newer.
        #[arg(long, default_value_t = 0)]
        current_generation: u64,
        /// Signature file (default: FILE.sig).
        #[arg(long)]
        sig: Option<PathBuf>,
        file: PathBuf,
    },
    /// Show what changes from OLD to NEW (secrets redacted).
    Diff { old: PathBuf, new: PathBuf },
    /// Print the config the node runs, as TOML, secrets and file contents
    /// redacted (GET /v1/config).
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    use nodecmd as n;
    let a = &cli.node;
    let done = |r: Result<()>| r.map(|_| ExitCode::SUCCESS);
    match cli.command {
        Command::Apply {
            file,
            mode,
            dry_run,
            try_timeout,
        } => done(n::apply(a, &file, mode.into(), dry_run, try_timeout)),
        Command::Confirm => done(n::show(a, &Route::ConfirmApply, |_: &ConfirmResponse| {
            "confirmed".into()
        })),
        Command::Status => done(n::status(a)),
        Command::Version => done(n::read_json(
            a,
            &Route::Version,
            n::version_text,
            Layout::Lines,
        )),
        Command::Services => done(n::read_json(
            a,
            &Route::Services,
            n::services_table,
            Layout::Table,
        )),
        Command::Resources => done(n::read_json(
            a,
            &Route::Resources,
            n::resources_table,
            Layout::Table,
        )),
        Command::Service(cmd) => done(service(a, cmd)),
        Command::Logs { name, follow } => done(n::stream(
            a,
            &Route::Logs {
                service: name,
                follow,
            },
        )),
        Command::Dmesg { follow } => done(n::stream(a, &Route::Dmesg { follow })),
        Command::Net => done(n::read_json(
            a,
            &Route::Network,
            n::net_table,
            Layout::Lines,
        )),
        Command::Mounts => done(n::read_json(
            a,
            &Route::Mounts,
            n::mounts_table,
            Layout::Table,
        )),
        Command::Ps => done(n::read_json(
            a,
            &Route::Processes,
            n::ps_table,
            Layout::Table,
        )),
        Command::Read { path } => done(n::read(a, &path)),
        Command::Metrics => done(n::stream(a, &Route::Metrics)),
        Command::Dashboard { interval, once } => done(dashcmd::dashboard(a, interval, once)),
        Command::Support { out, force } => done(n::support(a, &out, force)),
        Command::Reboot => done(n::show(a, &Route::Reboot, |_: &RebootResponse| {
            "rebooting".into()
        })),
        Command::Shutdown => done(n::show(a, &Route::Shutdown, |_: &ShutdownResponse| {
            "shutting down".into()
        })),
        Command::Reset { yes } => done(reset(a, yes)),
        Command::Bootstrap => done(n::bootstrap(a)),
        Command::Kubeconfig {
            out,
            server,
            user,
            force,
        } => done(n::kubeconfig(a, out.as_deref(), server, user, force)),
        Command::Health { timeout } => done(n::health(a, timeout)),
        Command::Upgrade(up) => done(upgradecmd::run(a, up)),
        Command::Rollback => done(upgradecmd::rollback(a)),
        Command::Keys(KeysCmd::Gen { out, comment }) => keys::gen_key(&out, &comment),
        Command::Config(cmd) => config(cmd, a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "basaltctl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `basaltctl service restart|kill NAME`.
fn service(a: &nodecmd::NodeArgs, cmd: ServiceCmd) -> Result<()> {
    match cmd {
        ServiceCmd::Restart { name } => nodecmd::show(
            a,
            &Route::RestartService { name: name.clone() },
            |_: &RestartResponse| format!("restarting {name}"),
        ),
        ServiceCmd::Kill { name } => nodecmd::show(
            a,
            &Route::KillService { name: name.clone() },
            |_: &KillResponse| format!("killed {name}"),
        ),
    }
}

/// `basaltctl reset`: only with `--yes`, since it wipes the node's STATE.
fn reset(a: &nodecmd::NodeArgs, yes: bool) -> Result<()> {
    if !yes {
        anyhow::bail!("reset wipes the node's configs and identity; pass --yes to do it");
    }
    nodecmd::show(a, &Route::Reset, |_: &ResetResponse| {
        "reset: STATE wiped, rebooting into maintenance mode".into()
    })
}

/// `basaltctl config …`: offline work on config files, and `show` (the
/// node's current config).
fn config(cmd: ConfigCmd, a: &nodecmd::NodeArgs) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|_| ExitCode::SUCCESS);
    match cmd {
        ConfigCmd::Gen {
            role,
            cluster_name,
            endpoint,
            admin_key,
            hostname,
            cni,
            schedule_on_control_plane,
            out,
        } => configcmd::gen_config(
            role,
            &cluster_name,
            &endpoint,
            &admin_key,
            basaltctl::template::Shape {
                hostname: hostname.as_deref(),
                cni: cni.into(),
                schedule_on_control_plane,
            },
            out.as_deref(),
        ),
        ConfigCmd::Validate { file } => configcmd::validate(&file),
        ConfigCmd::Sign { file } => match &a.key {
            Some(key) => configcmd::sign(key, &file),
            None => anyhow::bail!("no signing key: use --key PATH or set BASALT_KEY"),
        },
        ConfigCmd::Verify {
            trust,
            threshold,
            current_generation,
            sig,
            file,
        } => configcmd::verify(&trust, threshold, current_generation, sig.as_deref(), &file),
        ConfigCmd::Diff { old, new } => configcmd::diff(&old, &new),
        ConfigCmd::Show => done(nodecmd::stream(a, &Route::Config)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
