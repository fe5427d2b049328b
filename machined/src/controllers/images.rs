//! The images controller: the OCI archives baked into the node image
//! ([`OCI_IMAGES_DIR`]: the pause image, test workloads) imported into
//! containerd's CRI namespace once containerd is ready, so a node never
//! needs a registry for them.
//!
//! The import is the image's own `ctr images import`, run as a one-shot
//! through the supervisor's reaper ([`crate::supervisor::run_once`]): it
//! is the importer containerd ships and tests, it needs no second
//! containerd client in PID 1, and what it leaves in containerd is exactly
//! what an operator's `ctr images import` would. An import is idempotent:
//! the archives are content-addressed, so importing one again (after a
//! containerd restart, or a retry) rewrites the same image record with the
//! same digest.
//!
//! Each archive is a resource (`GET /v1/resources`, concern `images`):
//! pending, imported, or failed with ctr's message; failures are retried
//! with backoff and logged.

use super::resources::{Concern, Resource, ResourceState};
use crate::host::Host;
use crate::supervisor::{OneShotError, Supervisor, run_once};
use basalt_api::image_layout::OCI_IMAGES_DIR;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// An import of a few MB takes well under a second; this bounds a ctr
/// stuck on a wedged containerd.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a failed import is tried in all, and the first pause between
/// tries (doubled each time).
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// How long to wait for containerd to become ready before each round.
const CONTAINERD_READY_WAIT: Duration = Duration::from_secs(600);
/// ctr's output kept in an error (its last bytes: the reason is at the end).
const OUTPUT_TAIL: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("listing the baked images: {0}")]
    List(#[from] crate::host::HostError),
    #[error("ctr images import {archive}: {source}")]
    Run {
        archive: PathBuf,
        #[source]
        source: OneShotError,
    },
    #[error("ctr images import {archive} failed ({status}): {output}")]
    Failed {
        archive: PathBuf,
        status: String,
        output: String,
    },
}

/// Imports archives with the image's ctr into one containerd namespace.
#[derive(Clone)]
pub struct ImageImporter {
    /// Maps the node paths below (a dev root in tests).
    pub host: Host,
    /// Node path of the archives (`*.tar`, imported in name order).
    pub dir: String,
    pub ctr: PathBuf,
    /// containerd's socket.
    pub socket: PathBuf,
    pub namespace: String,
}

impl ImageImporter {
    /// The node's: the image's archives and ctr, containerd's socket, the
    /// CRI namespace.
    pub fn node(host: &Host) -> Self {
        ImageImporter {
            host: host.clone(),
            dir: OCI_IMAGES_DIR.into(),
            ctr: Path::new(crate::containerd::BIN_DIR).join("ctr"),
            socket: host.path(crate::containerd::SOCKET),
            namespace: crate::containerd::K8S_NAMESPACE.into(),
        }
    }

    /// The archives to import (host paths), sorted; none when the image
    /// bakes none (the directory does not exist).
    pub fn archives(&self) -> Result<Vec<PathBuf>, ImportError> {
        let dir = self.host.path(&self.dir);
        Ok(self
            .host
            .list_dir(&self.dir)?
            .into_iter()
            .filter(|n| n.ends_with(".tar"))
            .map(|n| dir.join(n))
            .collect())
    }

    /// `ctr --address <socket> -n <namespace> images import <archive>`.
    pub async fn import(&self, archive: &Path) -> Result<(), ImportError> {
        let argv: Vec<String> = [
            self.ctr.display().to_string(),
            "--address".into(),
            self.socket.display().to_string(),
            "-n".into(),
            self.namespace.clone(),
            "images".into(),
            "import".into(),
            archive.display().to_string(),
        ]
        .into();
        let done = run_once(&argv, IMPORT_TIMEOUT)
            .await
            .map_err(|source| ImportError::Run {
                archive: archive.to_owned(),
                source,
            })?;
        if done.exit.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&done.output);
        let text = text.trim();
        let tail = text
            .char_indices()
            .rev()
            .nth(OUTPUT_TAIL)
            .map_or(text, |(i, _)| &text[i..]);
        Err(ImportError::Failed {
            archive: archive.to_owned(),
            status: done.exit.to_string(),
            output: tail.to_owned(),
        })
    }
}

/// Where one archive's import stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportState {
    Pending,
    Imported,
    Failed(String),
}

pub struct ImagesController {
    importer: Option<ImageImporter>,
    /// Archive path → its import, for the resources.
    state: std::sync::Mutex<BTreeMap<PathBuf, ImportState>>,
    started: AtomicBool,
    attempts: u32,
    first_retry: Duration,
}

impl ImagesController {
    /// `None`: a machine that imports nothing (dev mode, tests).
    pub fn new(importer: Option<ImageImporter>) -> Arc<Self> {
        Self::with_retries(importer, ATTEMPTS, FIRST_RETRY)
    }

    /// Tries each import up to `attempts` times, pausing `first_retry`,
    /// then twice as long each time (tests shorten it).
    pub fn with_retries(
        importer: Option<ImageImporter>,
        attempts: u32,
        first_retry: Duration,
    ) -> Arc<Self> {
        Arc::new(ImagesController {
            importer,
            state: std::sync::Mutex::new(BTreeMap::new()),
            started: AtomicBool::new(false),
            attempts: attempts.max(1),
            first_retry,
        })
    }

    fn set(&self, archive: &Path, s: ImportState) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(archive.to_owned(), s);
    }

    /// Once per boot, after the services started: wait for containerd, then
    /// import every archive (in the background).
    pub fn start(self: &Arc<Self>, supervisor: Supervisor) {
        if self.importer.is_none() || self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run(&supervisor).await });
    }

    /// Imports every archive, retrying failures with backoff; each round
    /// first waits for containerd (it may be restarting).
    pub async fn run(&self, supervisor: &Supervisor) {
        let Some(importer) = &self.importer else {
            return;
        };
        let archives = match importer.archives() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("baked images: {e}");
                return;
            }
        };
        for a in &archives {
            self.set(a, ImportState::Pending);
        }
        let mut todo = archives;
        let mut pause = self.first_retry;
        for attempt in 1..=self.attempts {
            if todo.is_empty() {
                return;
            }
            if let Err(e) = supervisor
                .wait_ready("containerd", CONTAINERD_READY_WAIT)
                .await
            {
                tracing::warn!("baked images: waiting for containerd: {e}");
                continue;
            }
            let mut failed = Vec::new();
            for archive in todo {
                match importer.import(&archive).await {
                    Ok(()) => {
                        tracing::info!(archive = %archive.display(), "baked image imported");
                        self.set(&archive, ImportState::Imported);
                    }
                    Err(e) => {
                        tracing::error!(attempt, "baked image: {e}");
                        self.set(&archive, ImportState::Failed(e.to_string()));
                        failed.push(archive);
                    }
                }
            }
            todo = failed;
            if !todo.is_empty() && attempt < self.attempts {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        if !todo.is_empty() {
            tracing::error!(
                "baked images: {} archive(s) not imported after {} attempts",
                todo.len(),
                self.attempts
            );
        }
    }

    /// Each archive's import, as the API lists it.
    pub fn state(&self) -> BTreeMap<PathBuf, ImportState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.state()
            .into_iter()
            .map(|(archive, s)| {
                let id = archive
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let (imported, error) = match s {
                    ImportState::Pending => (false, None),
                    ImportState::Imported => (true, None),
                    ImportState::Failed(e) => (false, Some(e)),
                };
                Resource::new(
                    Concern::Images,
                    id,
                    imported,
                    ResourceState::BakedImage {
                        archive: archive.display().to_string(),
                        imported,
                        error,
                    },
                )
            })
            .collect()
    }
}
