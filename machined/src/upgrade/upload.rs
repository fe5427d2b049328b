//! An upgrade request's body, streamed into the spool and hashed as it
//! arrives: the request signature covers the body's sha256, so the caller
//! is authenticated once the last byte is in, without the bundle ever being
//! held in memory.

use crate::host::spool::{self, SpoolFile};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

/// A body spooled in full.
pub struct Spooled {
    pub file: SpoolFile,
    pub sha256: [u8; 32],
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upgrade bundle over {limit} bytes (the node's limit for an upload)")]
    TooLarge { limit: u64 },
    #[error("upgrade upload took over {0:?}; the node gave up receiving it")]
    TimedOut(Duration),
    #[error("reading the upgrade upload: {0}")]
    Read(String),
    #[error("spooling the upgrade upload to {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
}

impl UploadError {
    pub fn status(&self) -> u16 {
        match self {
            UploadError::TooLarge { .. } => 413,
            UploadError::TimedOut(_) => 408,
            UploadError::Read(_) => 400,
            UploadError::Spool { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                507
            }
            UploadError::Spool { .. } => 500,
        }
    }
}

/// Write `body` to a fresh spool file in `dir`: at most `limit` bytes,
/// within `timeout`. On any error the partial file is gone.
pub async fn receive(
    body: Incoming,
    dir: &Path,
    limit: u64,
    timeout: Duration,
) -> Result<Spooled, UploadError> {
    let spool_err = |source| UploadError::Spool {
        dir: dir.display().to_string(),
        source,
    };
    let file = spool::create(dir).await.map_err(spool_err)?;
    match tokio::time::timeout(timeout, fill(body, file, limit, dir)).await {
        Ok(r) => r,
        Err(_) => Err(UploadError::TimedOut(timeout)),
    }
}

async fn fill(
    mut body: Incoming,
    mut file: SpoolFile,
    limit: u64,
    dir: &Path,
) -> Result<Spooled, UploadError> {
    let spool_err = |source| UploadError::Spool {
        dir: dir.display().to_string(),
        source,
    };
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UploadError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len() as u64;
        if len > limit {
            return Err(UploadError::TooLarge { limit });
        }
        hasher.update(&data);
        file.write(&data).await.map_err(spool_err)?;
    }
    file.finish().await.map_err(spool_err)?;
    Ok(Spooled {
        file,
        sha256: hasher.finalize().into(),
        len,
    })
}
