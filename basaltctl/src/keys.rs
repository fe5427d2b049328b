//! `basaltctl keys`: ed25519 signing keys in OpenSSH format.

use anyhow::{Context, Result, bail};
use basalt_api::sshkey::PrivateKey;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn pub_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

pub fn gen_key(out: &Path, comment: &str) -> Result<ExitCode> {
    let pub_out = pub_path(out);
    for p in [out, pub_out.as_path()] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    let key = PrivateKey::generate(comment)?;
    write_new(out, 0o600, key.to_openssh()?.as_bytes())?;
    write_new(
        &pub_out,
        0o644,
        format!("{}\n", key.public().to_openssh()).as_bytes(),
    )?;
    println!("{}", key.public().fingerprint());
    Ok(ExitCode::SUCCESS)
}

/// Create a file that must not exist yet, with `mode` from the start (no window
/// where a private key is world-readable).
pub fn write_new(path: &Path, mode: u32, data: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

pub fn load_private(path: &Path) -> Result<PrivateKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    PrivateKey::from_openssh(&text).with_context(|| format!("key {}", path.display()))
}
