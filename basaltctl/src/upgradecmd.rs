//! `basaltctl upgrade …` and `basaltctl rollback`: build, sign, check and
//! send signed A/B upgrade bundles (format: `basalt_api::upgrade`).

use crate::keys::load_private;
use crate::nodecmd::{NodeArgs, Session};
use anyhow::{Context, Result, bail};
use basalt_api::route::Route;
use basalt_api::rpc::{RollbackResponse, UpgradeResponse};
use basalt_api::sshsig;
use basalt_api::trust::TrustRoots;
use basalt_api::upgrade::bundle::{PayloadSource, write_bundle};
use basalt_api::upgrade::manifest::{Arch, DEFAULT_ARCH, Format, Payload};
use basalt_api::upgrade::{
    BundleReader, Head, Manifest, Payloads, Sha256Digest, UPGRADE_NAMESPACE, Version,
};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `basaltctl upgrade`: send a bundle, or one of the subcommands.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct UpgradeArgs {
    #[command(subcommand)]
    cmd: Option<UpgradeCmd>,
    /// The signed bundle to send to --node.
    #[arg(required = true)]
    bundle: Option<PathBuf>,
    /// Write the inactive slot now, switch to it at the next reboot.
    #[arg(long)]
    stage: bool,
    /// How long the upload may take, e.g. 30m.
    #[arg(long, default_value = "30m", value_parser = basaltctl::kube::parse_duration)]
    timeout: Duration,
}

#[derive(clap::Subcommand)]
enum UpgradeCmd {
    /// Build an unsigned bundle from a UKI and a root image.
    Create {
        #[arg(long)]
        uki: PathBuf,
        #[arg(long)]
        root: PathBuf,
        /// The image version the UKI's .osrel carries, e.g. 0.3.0.
        #[arg(long)]
        version: String,
        /// Monotonic counter: nodes refuse one at or below what they installed.
        #[arg(long)]
        counter: u64,
        #[arg(long, default_value = DEFAULT_ARCH)]
        arch: String,
        /// Where to write the bundle; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a signature by --key (or BASALT_KEY) to BUNDLE, rewriting it in
    /// place; admins sign in turn for a k-of-n threshold.
    Sign { bundle: PathBuf },
    /// Check BUNDLE offline against trust roots (trust.toml: admins,
    /// threshold) and print its manifest.
    Verify {
        #[arg(long)]
        trust: PathBuf,
        bundle: PathBuf,
    },
}

pub fn run(args: &NodeArgs, upgrade: UpgradeArgs) -> Result<()> {
    match upgrade.cmd {
        Some(UpgradeCmd::Create {
            uki,
            root,
            version,
            counter,
            arch,
            out,
        }) => create(&uki, &root, &version, counter, &arch, &out),
        Some(UpgradeCmd::Sign { bundle }) => match &args.key {
            Some(key) => sign(key, &bundle),
            None => bail!("no signing key: use --key PATH or set BASALT_KEY"),
        },
        Some(UpgradeCmd::Verify { trust, bundle }) => verify(&trust, &bundle),
        None => match upgrade.bundle {
            Some(bundle) => send(args, &bundle, upgrade.stage, upgrade.timeout),
            None => bail!("give a BUNDLE to send, or a subcommand (create, sign, verify)"),
        },
    }
}

/// SOURCE_DATE_EPOCH, or 0: the members' mtime, so the same inputs give
/// the same bundle.
fn mtime() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(0),
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

fn payload(path: &Path) -> Result<Payload> {
    let (sha256, size) = Sha256Digest::of_reader(BufReader::new(open(path)?))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Payload { size, sha256 })
}

fn create(
    uki: &Path,
    root: &Path,
    version: &str,
    counter: u64,
    arch: &str,
    out: &Path,
) -> Result<()> {
    let manifest = Manifest {
        format: Format,
        version: Version::try_from(version.to_string())
            .map_err(|e| anyhow::anyhow!("--version: {e}"))?,
        counter,
        arch: Arch::try_from(arch.to_string()).map_err(|e| anyhow::anyhow!("--arch: {e}"))?,
        uki: payload(uki)?,
        root: payload(root)?,
    };
    let text = manifest.to_toml();
    // What the node will parse: refuse what it would refuse (counter 0).
    Manifest::parse(text.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mtime = mtime()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {} (refusing to overwrite)", out.display()))?;
    let written = (|| {
        let mut w = std::io::BufWriter::new(&mut f);
        let (mut u, mut r) = (BufReader::new(open(uki)?), BufReader::new(open(root)?));
        write_bundle(
            &mut w,
            text.as_bytes(),
            b"",
            PayloadSource {
                reader: &mut u,
                size: manifest.uki.size,
            },
            PayloadSource {
                reader: &mut r,
                size: manifest.root.size,
            },
            mtime,
        )?;
        w.flush()?;
        drop(w);
        f.sync_all()?;
        anyhow::Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(out);
        return Err(e.context(format!("writing {}", out.display())));
    }
    println!(
        "{}: unsigned bundle {} (counter {}, {})",
        out.display(),
        manifest.version,
        manifest.counter,
        manifest.arch
    );
    Ok(())
}

/// Read a bundle and check its payloads against its manifest, signed or not.
fn read_checked(bundle: &Path) -> Result<(Head, Manifest, Payloads)> {
    let (reader, head) = BundleReader::open(BufReader::new(open(bundle)?))
        .with_context(|| bundle.display().to_string())?;
    let manifest = Manifest::parse(&head.manifest)
        .map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?;
    let payloads = reader
        .check_payloads(&manifest)
        .with_context(|| bundle.display().to_string())?;
    Ok((head, manifest, payloads))
}

fn sign(key: &Path, bundle: &Path) -> Result<()> {
    let key = load_private(key)?;
    // Vouch only for payloads that match the manifest.
    let (head, _, payloads) = read_checked(bundle)?;
    let mut signatures = head.signatures.clone();
    signatures.extend_from_slice(sshsig::sign(&key, UPGRADE_NAMESPACE, &head.manifest).as_bytes());
    let dir = bundle
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, bundle)?;
    let result = (|| {
        let (mut u, mut r) = (open(bundle)?, open(bundle)?);
        u.seek(SeekFrom::Start(payloads.uki.offset))?;
        r.seek(SeekFrom::Start(payloads.root.offset))?;
        let mut w = std::io::BufWriter::new(&mut tmp.1);
        write_bundle(
            &mut w,
            &head.manifest,
            &signatures,
            PayloadSource {
                reader: &mut BufReader::new(u).take(payloads.uki.size),
                size: payloads.uki.size,
            },
            PayloadSource {
                reader: &mut BufReader::new(r).take(payloads.root.size),
                size: payloads.root.size,
            },
            head.mtime,
        )?;
        w.flush()?;
        drop(w);
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, bundle)?;
        File::open(dir)?.sync_all()?;
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp.0);
        return Err(e.context(format!("rewriting {}", bundle.display())));
    }
    let count = sshsig::parse_blocks(&String::from_utf8_lossy(&signatures))
        .map(|b| b.len())
        .unwrap_or(0);
    println!(
        "{} signed by {} ({count} signature(s))",
        bundle.display(),
        key.public().fingerprint()
    );
    Ok(())
}

/// A new file next to `bundle` for the rewritten bundle.
fn tempfile_in(dir: &Path, bundle: &Path) -> Result<(PathBuf, File)> {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.join(format!(".{name}.signing.{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok((path, f))
}

fn verify(trust: &Path, bundle: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(trust).with_context(|| format!("reading {}", trust.display()))?;
    let roots =
        TrustRoots::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", trust.display()))?;
    let (reader, head) = BundleReader::open(BufReader::new(open(bundle)?))
        .with_context(|| bundle.display().to_string())?;
    let verified = roots
        .verify_upgrade(&head.manifest, &head.signatures)
        .map_err(|e| anyhow::anyhow!("{}: {e}", bundle.display()))?;
    let m = verified.manifest();
    reader
        .check_payloads(m)
        .with_context(|| bundle.display().to_string())?;
    println!("{}: OK", bundle.display());
    println!(
        "version {}\ncounter {}\narch {}",
        m.version, m.counter, m.arch
    );
    println!("uki.efi {} bytes sha256 {}", m.uki.size, m.uki.sha256);
    println!(
        "root.squashfs {} bytes sha256 {}",
        m.root.size, m.root.sha256
    );
    for s in verified.signers() {
        println!("signed by {s}");
    }
    Ok(())
}

fn send(args: &NodeArgs, bundle: &Path, stage: bool, timeout: Duration) -> Result<()> {
    let mut s = Session::open(args)?;
    let r: UpgradeResponse = s.upload(&Route::Upgrade { stage }, bundle, timeout)?;
    s.print(&r, |r| {
        let when = if r.rebooting {
            "rebooting into it now"
        } else {
            "it boots at the next reboot"
        };
        let mut out = format!(
            "upgrade {} (counter {}) written to slot {}; {when}\n",
            r.version, r.counter, r.slot
        );
        for signer in &r.signers {
            out.push_str(&format!("  signed by {signer}\n"));
        }
        out
    })
}

pub fn rollback(args: &NodeArgs) -> Result<()> {
    crate::nodecmd::show(args, &Route::Rollback, |r: &RollbackResponse| {
        format!(
            "rolled back: slot {} boots next{}",
            r.slot,
            if r.rebooting { "; rebooting" } else { "" }
        )
    })
}
