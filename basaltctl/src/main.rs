//! `basaltctl`: the operator's tool for Basalt keys, signed configs and nodes.

mod configcmd;
mod keys;
mod pki;
mod template;

use anyhow::Result;
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate and inspect ed25519 signing keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Generate, validate, sign, verify and compare machine configs.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script to stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
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
        /// Write here (refuses to overwrite) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a config; print each error as FILE:line:col: path: message.
    Validate { file: PathBuf },
    /// Sign FILE with an ed25519 key, appending a signature block to FILE.sig.
    Sign {
        /// OpenSSH private key (unencrypted); or set BASALT_KEY.
        #[arg(long, env = "BASALT_KEY")]
        key: PathBuf,
        file: PathBuf,
    },
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
    match cli.command {
        Command::Keys(KeysCmd::Gen { out, comment }) => keys::gen_key(&out, &comment),
        Command::Config(cmd) => match cmd {
            ConfigCmd::Gen {
                role,
                cluster_name,
                endpoint,
                admin_key,
                out,
            } => configcmd::gen_config(role, &cluster_name, &endpoint, &admin_key, out.as_deref()),
            ConfigCmd::Validate { file } => configcmd::validate(&file),
            ConfigCmd::Sign { key, file } => configcmd::sign(&key, &file),
            ConfigCmd::Verify {
                trust,
                threshold,
                current_generation,
                sig,
                file,
            } => configcmd::verify(&trust, threshold, current_generation, sig.as_deref(), &file),
            ConfigCmd::Diff { old, new } => configcmd::diff(&old, &new),
        },
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

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
