//! The upgrade spool: a directory machined owns where an uploaded bundle
//! is written as it arrives (it may be gigabytes; it never sits in memory),
//! read back for verification and by the slot writer, and removed when the
//! request is done, whatever its outcome.

use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The file name of the one bundle being received.
const BUNDLE: &str = "bundle.tar";

/// One bundle on its way in. Dropping it removes the file.
pub struct SpoolFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

/// Create the spool directory (0700) and an empty bundle file in it (0600),
/// removing whatever an interrupted upload left there first. One upload at
/// a time: the caller holds the node's upgrade lock.
pub async fn create(dir: &Path) -> io::Result<SpoolFile> {
    tokio::fs::create_dir_all(dir).await?;
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await?;
    }
    clear(dir).await?;
    let path = dir.join(BUNDLE);
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .await?;
    Ok(SpoolFile {
        path,
        file: Some(file),
    })
}

impl SpoolFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(chunk).await,
            None => Err(io::Error::other("spool file already finished")),
        }
    }

    /// All data written: flush and close the writer (readers open the path).
    pub async fn finish(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush().await?;
        }
        Ok(())
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

/// Removes everything in the spool directory `dir` (what an upload cut off
/// by a crash or power loss left: on a disk boot the spool is on EPHEMERAL,
/// so it would otherwise hold its gigabytes until the next upload). A
/// missing directory is already clear. Returns the paths removed.
pub async fn clear(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    while let Some(e) = entries.next_entry().await? {
        let p = e.path();
        if e.file_type().await?.is_dir() {
            tokio::fs::remove_dir_all(&p).await?;
        } else {
            tokio::fs::remove_file(&p).await?;
        }
        removed.push(p);
    }
    Ok(removed)
}

/// A spooled bundle, for reading.
pub fn open_read(path: &Path) -> io::Result<impl io::Read + io::Seek + use<>> {
    std::fs::File::open(path).map(io::BufReader::new)
}

#[cfg(test)]
mod tests {
    use super::{clear, create};

    #[tokio::test]
    async fn clear_empties_the_spool_and_accepts_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        assert!(
            clear(&spool)
                .await
                .expect("a missing spool is clear")
                .is_empty()
        );
        std::fs::create_dir_all(spool.join("partial")).expect("mkdir");
        std::fs::write(spool.join("bundle.tar"), b"cut off").expect("write");
        std::fs::write(spool.join("partial/x"), b"x").expect("write");
        let mut removed = clear(&spool).await.expect("clear");
        removed.sort();
        assert_eq!(removed, [spool.join("bundle.tar"), spool.join("partial")]);
        assert_eq!(std::fs::read_dir(&spool).expect("read").count(), 0);
        // An upload after a clear starts from an empty file.
        let f = create(&spool).await.expect("create");
        assert_eq!(std::fs::metadata(f.path()).expect("bundle").len(), 0);
    }
}
