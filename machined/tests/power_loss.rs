//! Power loss at any moment of an apply, and a full STATE disk.
//!
//! A node boots on a [`CrashFs`] STATE (an in-memory disk that keeps only
//! what was synced), applies a config, and the power is cut after every
//! possible number of filesystem steps of the next apply. The disk as it
//! comes back, under each assumption of what the kernel had flushed on its
//! own, is booted again: it must hold exactly the old config or exactly
//! the new one, and the same TLS identity, and take the next apply.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../api/tests/cases/mod.rs"]
mod cases;

use basalt_api::rpc::{ApplyMode, ApplyRequest};
use machined::host::Host;
use machined::host::crashfs::{CrashFs, Survives};
use machined::host::durable::DurableFs;
use machined::node::{ApplyError, BootParts, Node};
use machined::state::StateStore;
use machined::supervisor::{Supervisor, SupervisorConfig};
use machined::tls::Identity;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

const STATE: &str = "/var/lib/basalt/state";
/// The generations on STATE before the cut (two, so the cut apply also
/// prunes the oldest), the one being applied, the one applied after.
const OLD: u64 = 2;
const NEW: u64 = 3;
const NEXT: u64 = 4;

fn doc(generation: u64) -> String {
    cases::edit(
        &cases::worker(),
        "generation = 1",
        &format!("generation = {generation}"),
    )
}

fn request(generation: u64, mode: ApplyMode) -> ApplyRequest {
    let doc = doc(generation);
    ApplyRequest {
        signatures: cases::sign(1, &doc),
        config: doc,
        mode,
        dry_run: false,
        try_timeout_secs: None,
    }
}

fn sha(generation: u64) -> String {
    Sha256::digest(doc(generation).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A booted node on `fs` (its host files in `root`), as PID 1 boots one:
/// STATE opened, the TLS identity loaded or made, the config loaded.
struct Booted {
    node: Arc<Node>,
    fingerprint: String,
}

fn boot(fs: &CrashFs, root: &Path) -> Booted {
    let fs: Arc<dyn DurableFs> = Arc::new(fs.clone());
    let state = StateStore::open_on(Arc::clone(&fs), STATE, false).unwrap();
    let identity = Identity::load_or_create(&*fs, &Path::new(STATE).join("tls"), "node").unwrap();
    let (power, _) = tokio::sync::mpsc::unbounded_channel();
    let node = Node::boot(BootParts {
        host: Host::dev(root),
        supervisor: Supervisor::new(SupervisorConfig {
            cgroup_root: None,
            log_lines: 10,
        })
        .unwrap(),
        services: Vec::new(),
        images: None,
        state,
        image_trust: cases::policy(&[1], &[], 1),
        boot_id: "boot".into(),
        tls_fingerprint: identity.fingerprint(),
        nonces: machined::auth::Nonces::new(machined::auth::NONCE_TTL).unwrap(),
        power,
    });
    Booted {
        node,
        fingerprint: identity.fingerprint(),
    }
}

/// The disk after a first boot and applies up to generation [`OLD`], with
/// only what was synced: the starting point of every crash.
async fn first_disk() -> (CrashFs, String) {
    let root = tempfile::tempdir().unwrap();
    let fs = CrashFs::new();
    let first = boot(&fs, root.path());
    for generation in 1..=OLD {
        first
            .node
            .apply(request(generation, ApplyMode::NoReboot))
            .await
            .unwrap();
    }
    let disk = fs.after_power_cut(Survives::Synced);
    let again = boot(&disk, root.path());
    let s = again.node.status().await;
    assert_eq!(
        (s.generation, s.config_sha256.as_deref()),
        (OLD, Some(sha(OLD).as_str())),
        "the applies were not synced whole"
    );
    assert_eq!(
        again.fingerprint, first.fingerprint,
        "the identity was not synced"
    );
    (disk, first.fingerprint)
}

/// Cut the power after every step of an apply of generation [`NEW`] in `mode`,
/// boot what each of [`Survives`] leaves, check it. Returns how many of
/// the recovered nodes came back with the old and with the new config.
async fn cut_everywhere(mode: ApplyMode) -> (usize, usize) {
    let (disk, fingerprint) = first_disk().await;
    let root = tempfile::tempdir().unwrap();
    // How many steps the whole apply takes, uninterrupted.
    let fs = disk.after_power_cut(Survives::Everything);
    let node = boot(&fs, root.path()).node;
    let before = fs.steps();
    node.apply(request(NEW, mode)).await.unwrap();
    let total = fs.steps() - before;
    assert!(total >= 8, "an apply of a few steps only? {:?}", fs.log());
    println!("{mode:?}: an apply takes {total} steps: {:#?}", fs.log());

    let (mut old, mut new) = (0, 0);
    for n in 0..=total {
        for survives in [
            Survives::Synced,
            Survives::EntriesNotData,
            Survives::Everything,
        ] {
            let fs = disk.after_power_cut(Survives::Everything);
            let node = boot(&fs, root.path()).node;
            fs.cut_power_after(n);
            let result = node.apply(request(NEW, mode)).await;
            assert_eq!(result.is_ok(), n == total, "cut after {n}: {result:?}");
            let after = fs.after_power_cut(survives);
            let tree = after.tree();
            let what = format!("cut after step {n} of {total} ({survives:?}), STATE: {tree:#?}");

            let rebooted = boot(&after, root.path());
            assert_eq!(rebooted.fingerprint, fingerprint, "{what}");
            let s = rebooted.node.status().await;
            match s.generation {
                OLD => old += 1,
                NEW => new += 1,
                g => panic!("generation {g}: {what}"),
            }
            assert_eq!(
                s.config_sha256.as_deref(),
                Some(sha(s.generation).as_str()),
                "{what}"
            );
            // The node goes on: the next apply is taken and kept.
            rebooted
                .node
                .apply(request(NEXT, ApplyMode::NoReboot))
                .await
                .unwrap_or_else(|e| panic!("next apply: {e}: {what}"));
            let s = boot(&after.after_power_cut(Survives::Synced), root.path())
                .node
                .status()
                .await;
            assert_eq!(s.generation, NEXT, "{what}");
        }
    }
    (old, new)
}

#[tokio::test]
async fn power_loss_at_any_step_of_an_apply_keeps_old_or_new_config_and_identity() {
    let (old, new) = cut_everywhere(ApplyMode::NoReboot).await;
    println!("recovered: {old} with the old config, {new} with the new");
    assert!(old > 0 && new > 0, "old {old}, new {new}");
}

/// A staged apply is promoted at the next boot: a cut anywhere, during the
/// staging or after, boots into the old or the new config.
#[tokio::test]
async fn power_loss_at_any_step_of_a_staged_apply_keeps_old_or_new_config_and_identity() {
    let (old, new) = cut_everywhere(ApplyMode::Staged).await;
    println!("recovered: {old} with the old config, {new} with the new");
    assert!(old > 0 && new > 0, "old {old}, new {new}");
}

/// A STATE disk with room for the first config but not for a second copy:
/// the apply is refused as out of space (507), nothing changes, the node
/// keeps serving and the identity and old config survive a reboot.
#[tokio::test]
async fn a_full_state_disk_refuses_the_apply_and_keeps_the_old_config() {
    let (disk, fingerprint) = first_disk().await;
    let room = 512;
    let used = disk.used();
    let full = disk
        .after_power_cut(Survives::Everything)
        .with_capacity(used + room);
    assert!(
        doc(NEW).len() > room as usize,
        "the new config must not fit in the {room} bytes left"
    );
    let root = tempfile::tempdir().unwrap();
    let node = boot(&full, root.path()).node;
    let err = node
        .apply(request(NEW, ApplyMode::NoReboot))
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::State(_)), "{err:?}");
    assert_eq!(err.status(), 507, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("no space left"), "{msg}");
    assert!(msg.contains("not persisted"), "{msg}");
    let s = node.status().await;
    assert_eq!(
        (s.generation, s.config_sha256.as_deref()),
        (OLD, Some(sha(OLD).as_str()))
    );
    // Still serving: a dry run plans against the running config.
    let mut dry = request(NEW, ApplyMode::NoReboot);
    dry.dry_run = true;
    node.apply(dry).await.unwrap();
    assert!(full.used() <= used + room, "{:#?}", full.tree());

    let rebooted = boot(&full.after_power_cut(Survives::Synced), root.path());
    assert_eq!(rebooted.fingerprint, fingerprint);
    let s = rebooted.node.status().await;
    assert_eq!(
        (s.generation, s.config_sha256.as_deref()),
        (OLD, Some(sha(OLD).as_str()))
    );
}

/// A staged config becomes current at the next boot, in a few steps of
/// its own: a cut at any of them boots into the old or the new config.
#[tokio::test]
async fn power_loss_while_a_staged_config_is_promoted_at_boot() {
    let (disk, fingerprint) = first_disk().await;
    let root = tempfile::tempdir().unwrap();
    let fs = disk.after_power_cut(Survives::Everything);
    boot(&fs, root.path())
        .node
        .apply(request(NEW, ApplyMode::Staged))
        .await
        .unwrap();
    let staged = fs.after_power_cut(Survives::Synced);
    // How many steps the promotion takes.
    let probe = staged.after_power_cut(Survives::Everything);
    let s = boot(&probe, root.path()).node.status().await;
    assert_eq!(s.generation, NEW);
    let total = probe.steps();
    assert!(total >= 4, "{:?}", probe.log());
    let mut seen = std::collections::BTreeSet::new();
    for n in 0..=total {
        for survives in [
            Survives::Synced,
            Survives::EntriesNotData,
            Survives::Everything,
        ] {
            let fs = staged.after_power_cut(Survives::Everything);
            fs.cut_power_after(n);
            let _ = boot(&fs, root.path());
            let after = fs.after_power_cut(survives);
            let what = format!(
                "cut after promotion step {n} of {total} ({survives:?}): {:#?}",
                after.tree()
            );
            let rebooted = boot(&after, root.path());
            assert_eq!(rebooted.fingerprint, fingerprint, "{what}");
            let s = rebooted.node.status().await;
            assert!(s.generation == OLD || s.generation == NEW, "{what}");
            assert_eq!(
                s.config_sha256.as_deref(),
                Some(sha(s.generation).as_str()),
                "{what}"
            );
            seen.insert(s.generation);
        }
    }
    // A staged config is kept until it is promoted: every cut boots into it.
    assert_eq!(seen, [NEW].into(), "a staged config was lost");
}
