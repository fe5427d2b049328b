//! `basaltctl config …`: generate, validate, sign, verify and diff machine configs.

use crate::keys::{load_private, write_new};
use anyhow::{Context, Result, bail};
use basalt_api::config::{CniName, MachineConfig, Role};
use basalt_api::signed::{Admission, SignedConfigError, verify_and_parse};
use basalt_api::sshkey::{PublicKey, parse_key_list};
use basalt_api::trust::TrustRoots;
use basalt_api::{CONFIG_NAMESPACE, MAX_DOCUMENT_BYTES, sshsig};
use basaltctl::template;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Controlplane,
    Worker,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CniArg {
    Cilium,
    Bridge,
    None,
}

impl From<CniArg> for CniName {
    fn from(c: CniArg) -> Self {
        match c {
            CniArg::Cilium => CniName::Cilium,
            CniArg::Bridge => CniName::Bridge,
            CniArg::None => CniName::None,
        }
    }
}

/// Read at most the document limit (+1 to detect "too large" without reading a huge file).
fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(buf)
}

pub fn sig_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

pub fn gen_config(
    role: RoleArg,
    cluster_name: &str,
    endpoint: &str,
    admin_key: &Path,
    shape: template::Shape<'_>,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let admin_text = std::fs::read_to_string(admin_key)
        .with_context(|| format!("reading {}", admin_key.display()))?;
    let admin = PublicKey::from_openssh(admin_text.trim())
        .with_context(|| format!("admin key {}", admin_key.display()))?;
    let role = match role {
        RoleArg::Controlplane => Role::Controlplane,
        RoleArg::Worker => Role::Worker,
    };
    let text = template::generate(role, cluster_name, endpoint, &admin, shape)?;
    match out {
        Some(path) => {
            write_new(path, 0o600, text.as_bytes())?;
            eprintln!("wrote {} (contains secrets: mode 0600)", path.display());
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn validate(file: &Path) -> Result<ExitCode> {
    let bytes = read_capped(file)?;
    match MachineConfig::parse(&bytes) {
        Ok(c) => {
            println!(
                "{}: valid (generation {}, role {:?})",
                file.display(),
                c.generation,
                c.machine.role
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            eprintln!("{}", errs.render(&file.display().to_string()));
            Ok(ExitCode::from(1))
        }
    }
}

pub fn sign(key: &Path, file: &Path) -> Result<ExitCode> {
    let key = load_private(key)?;
    let bytes = read_capped(file)?;
    if let Err(errs) = MachineConfig::parse(&bytes) {
        eprintln!("{}", errs.render(&file.display().to_string()));
        bail!("refusing to sign an invalid config");
    }
    let block = sshsig::sign(&key, CONFIG_NAMESPACE, &bytes);
    let sig = sig_path(file);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&sig)
        .with_context(|| format!("opening {}", sig.display()))?;
    f.write_all(block.as_bytes())
        .with_context(|| format!("writing {}", sig.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", sig.display()))?;
    println!(
        "{} signed by {} -> {}",
        file.display(),
        key.public().fingerprint(),
        sig.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify(
    trust: &Path,
    threshold: usize,
    current_generation: u64,
    sig: Option<&Path>,
    file: &Path,
) -> Result<ExitCode> {
    let keys_text =
        std::fs::read_to_string(trust).with_context(|| format!("reading {}", trust.display()))?;
    let admins = parse_key_list(&keys_text)
        .map_err(|(line, e)| anyhow::anyhow!("{}:{line}: {e}", trust.display()))?;
    if admins.is_empty() {
        bail!("{} holds no keys", trust.display());
    }
    let policy = TrustRoots::new(admins, Vec::new(), threshold)
        .map_err(|e| anyhow::anyhow!("{} with --threshold: {e}", trust.display()))?;
    let doc = read_capped(file)?;
    let sig_file = sig.map(Path::to_path_buf).unwrap_or_else(|| sig_path(file));
    let sigs = read_capped(&sig_file)?;
    match verify_and_parse(
        &doc,
        &sigs,
        &Admission::offline(&policy, current_generation),
    ) {
        Ok(v) => {
            println!("{}: OK, generation {}", file.display(), v.config.generation);
            for s in v.signers {
                println!("signed by {s}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SignedConfigError::Invalid(errs)) => {
            eprintln!("{}", errs.render(&file.display().to_string()));
            eprintln!("error: signatures are valid but the config is not");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}

pub fn diff(old: &Path, new: &Path) -> Result<ExitCode> {
    let parse = |p: &Path| -> Result<MachineConfig> {
        MachineConfig::parse(&read_capped(p)?).map_err(|e| {
            anyhow::anyhow!(
                "{} is invalid:\n{}",
                p.display(),
                e.render(&p.display().to_string())
            )
        })
    };
    let (a, b) = (parse(old)?, parse(new)?);
    let changes = basalt_api::diff::diff(&a, &b);
    if changes.is_empty() {
        println!("no changes");
    }
    for c in changes {
        println!("{c}");
    }
    Ok(ExitCode::SUCCESS)
}
