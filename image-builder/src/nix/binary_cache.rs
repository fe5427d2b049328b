//! Nix binary caches (`file://`, `http://`, `https://`): narinfo lookup, closure walk, verified NAR
//! downloads into a local cache directory.
//!
//! Cache directory layout (safe to share between caches and between runs):
//! - `narinfo/<16 hex of sha256(cache URL)>/<hash part>.narinfo`: narinfos as fetched; they are
//!   re-verified against the trusted keys every time they are used.
//! - `nar/<nix-base32 NAR hash>.nar`: uncompressed NARs whose hash and size matched the signed
//!   `NarHash`/`NarSize`. Keeping them uncompressed makes every later image build skip
//!   decompression; they are named by content, so two caches serving the same path share them.
//! - `tmp/`: downloads in progress; a failed download leaves nothing else behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use nix_derivation::{NixHash, NixHasher, StorePath};
use sha2::{Digest, Sha256};

use super::Error;
use super::input::{NarSource, NixInput};
use super::narinfo::{TrustedKeys, VerifiedNarInfo, verify_narinfo};
use super::parallel::try_map;
use super::store_path::{NIX_STORE_DIR, hash_part};

/// How to reach a binary cache, beyond its URL, keys and cache directory.
///
/// Built with [`CacheOptions::default`] and the methods below (the fields are public to read; new
/// ones may be added).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CacheOptions {
    /// PEM files of root certificates an `https://` cache may chain to, trusted in addition to
    /// the built-in (Mozilla) roots: for a private cache behind an internal CA. Each file may hold
    /// several certificates and must hold at least one. Read and checked for `http(s)://` URLs
    /// (an `http://` cache may redirect to `https://`); a `file://` cache ignores them.
    pub extra_roots: Vec<PathBuf>,
}

impl CacheOptions {
    /// Also trust the root certificates in the PEM file `pem`.
    #[must_use]
    pub fn extra_root(mut self, pem: impl Into<PathBuf>) -> Self {
        self.extra_roots.push(pem.into());
        self
    }

    /// Also trust the root certificates in each of the PEM files `pems`.
    #[must_use]
    pub fn extra_roots<I>(mut self, pems: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<PathBuf>,
    {
        self.extra_roots.extend(pems.into_iter().map(Into::into));
        self
    }
}

/// The certificates of the PEM file `path`, checked to be usable as trust anchors.
///
/// Fails, naming the file, if it cannot be read, is not PEM, holds no `CERTIFICATE` block, or one
/// of its certificates does not parse.
pub fn read_root_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    const ACTION: &str = "reading root certificates from";
    let invalid = |reason: String| {
        Error::io(
            ACTION,
            path,
            io::Error::new(io::ErrorKind::InvalidData, reason),
        )
    };
    let pem = fs::read(path).map_err(|e| Error::io(ACTION, path, e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| invalid(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no PEM `CERTIFICATE` block in it (expected one or more CA certificates)".to_owned(),
        ));
    }
    // reqwest only parses the DER when a client is built; do it now, alone, so a bad certificate
    // is blamed on its file. Building an async client needs no runtime and opens no connection.
    let mut check = reqwest::Client::builder().tls_built_in_root_certs(false);
    for cert in &certs {
        check = check.add_root_certificate(cert.clone());
    }
    check.build().map_err(|e| {
        let mut reason = "unusable certificate".to_owned();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            reason.push_str(&format!(": {s}"));
            source = s.source();
        }
        invalid(reason)
    })?;
    Ok(certs)
}

/// A binary cache plus the keys its narinfos must be signed with and where downloads are kept.
pub struct BinaryCache {
    /// The cache URL without query parameters, as shown in errors.
    url: String,
    transport: Transport,
    keys: TrustedKeys,
    cache_dir: PathBuf,
    narinfo_dir: PathBuf,
}

enum Transport {
    File {
        root: PathBuf,
    },
    Http {
        base: String,
        client: reqwest::blocking::Client,
    },
}

impl BinaryCache {
    /// Open the cache at `url` and check its `nix-cache-info` (when it has one) serves `/nix/store`.
    ///
    /// An HTTP(S) cache uses a blocking client: call this from ordinary threads, not from inside
    /// an async runtime. `https://` caches must present a certificate for the URL's host that
    /// chains to a built-in (Mozilla) root; see [`BinaryCache::open_with`] to trust more roots.
    ///
    /// Nothing is written under `cache_dir` unless the cache answers as a valid Nix cache.
    pub fn open(url: &str, keys: TrustedKeys, cache_dir: &Path) -> Result<Self, Error> {
        Self::open_with(url, keys, cache_dir, &CacheOptions::default())
    }

    /// [`BinaryCache::open`] with `options`, e.g. extra root certificates for a cache behind a
    /// private CA.
    pub fn open_with(
        url: &str,
        keys: TrustedKeys,
        cache_dir: &Path,
        options: &CacheOptions,
    ) -> Result<Self, Error> {
        let unsupported = |reason: &str| Error::UnsupportedCacheUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if keys.is_empty() {
            return Err(unsupported(
                "no trusted public keys given; refusing unsigned inputs",
            ));
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        if !query.is_empty() {
            tracing::warn!(url, "ignoring binary cache URL parameters {query:?}");
        }
        let base = base.trim_end_matches('/');
        let transport = if let Some(path) = base.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(unsupported("a file:// URL needs an absolute path"));
            }
            Transport::File {
                root: PathBuf::from(path),
            }
        } else if base.starts_with("http://") || base.starts_with("https://") {
            let mut builder = reqwest::blocking::Client::builder()
                .user_agent(concat!("basalt-image-builder/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                // The blocking client applies this to the response head and to each body read,
                // not to the whole transfer: a large NAR on a slow link is fine, a dead peer is not.
                .timeout(Duration::from_secs(120));
            // Server certificates are always checked in full (chain, validity, host name); there
            // is no switch to turn that off, only extra roots to trust a private CA.
            for pem in &options.extra_roots {
                for cert in read_root_certificates(pem)? {
                    builder = builder.add_root_certificate(cert);
                }
            }
            let client = builder.build().map_err(|e| Error::Http {
                url: url.to_owned(),
                source: Box::new(e),
            })?;
            Transport::Http {
                base: base.to_owned(),
                client,
            }
        } else {
            return Err(unsupported("expected file://, http:// or https://"));
        };
        let url_digest = Sha256::digest(base.as_bytes());
        let url_key: String = url_digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let cache = Self {
            url: base.to_owned(),
            transport,
            keys,
            cache_dir: cache_dir.to_owned(),
            narinfo_dir: cache_dir.join("narinfo").join(url_key),
        };
        // Ask the cache first: a URL that does not answer (refused, TLS failure, wrong store)
        // leaves the cache directory as it was.
        cache.check_cache_info()?;
        for dir in [
            &cache.narinfo_dir,
            &cache.cache_dir.join("nar"),
            &cache.tmp_dir(),
        ] {
            fs::create_dir_all(dir).map_err(|e| Error::io("creating cache directory", dir, e))?;
        }
        Ok(cache)
    }

    /// The cache URL (without query parameters).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetch exactly `paths` (no references followed), `parallelism` downloads at a time.
    pub fn fetch(&self, paths: &[StorePath], parallelism: usize) -> Result<Vec<NixInput>, Error> {
        let wanted: BTreeSet<StorePath> = paths.iter().cloned().collect();
        let wanted: Vec<StorePath> = wanted.into_iter().collect();
        let infos = try_map(&wanted, parallelism, |p| self.narinfo(p))?;
        self.fetch_nars(infos, parallelism)
    }

    /// Fetch `paths` and everything they reference, transitively (their closure), following the
    /// signed `References:` of each narinfo.
    pub fn fetch_closure(
        &self,
        paths: &[StorePath],
        parallelism: usize,
    ) -> Result<Vec<NixInput>, Error> {
        let infos = self.closure(paths, parallelism)?;
        self.fetch_nars(infos.into_values().collect(), parallelism)
    }

    /// Verified narinfos of the closure of `paths`, walked breadth-first so each level's lookups
    /// run in parallel.
    pub fn closure(
        &self,
        paths: &[StorePath],
        parallelism: usize,
    ) -> Result<BTreeMap<StorePath, VerifiedNarInfo>, Error> {
        let mut infos: BTreeMap<StorePath, VerifiedNarInfo> = BTreeMap::new();
        let mut frontier: BTreeSet<StorePath> = paths.iter().cloned().collect();
        while !frontier.is_empty() {
            let level: Vec<StorePath> = frontier.into_iter().collect();
            let found = try_map(&level, parallelism, |p| self.narinfo(p))?;
            frontier = BTreeSet::new();
            for info in found {
                for r in &info.references {
                    if !infos.contains_key(r) && !level.contains(r) {
                        frontier.insert(r.clone());
                    }
                }
                infos.insert(info.store_path.clone(), info);
            }
        }
        tracing::debug!(cache = %self.url, paths = infos.len(), "resolved closure");
        Ok(infos)
    }

    /// The verified narinfo of `path`, from the local cache directory when it has one that still
    /// verifies under the trusted keys, otherwise from the cache.
    pub fn narinfo(&self, path: &StorePath) -> Result<VerifiedNarInfo, Error> {
        let name = format!("{}.narinfo", hash_part(path));
        let local = self.narinfo_dir.join(&name);
        if let Ok(text) = fs::read(&local) {
            match verify_narinfo(&text, &local.display().to_string(), path, &self.keys) {
                Ok(info) => return Ok(info),
                Err(e) => tracing::info!(error = %e, "cached narinfo unusable, fetching again"),
            }
        }
        let url = self.url_of(&name);
        let Some(mut reader) = self.get(&name)? else {
            return Err(Error::NotInCache {
                store_path: path.to_string(),
                cache: self.url.clone(),
                url,
            });
        };
        let mut text = Vec::new();
        reader
            .by_ref()
            .take(nix_narinfo::MAX_NARINFO_SIZE as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|e| self.read_err(&url, e))?;
        let info = verify_narinfo(&text, &url, path, &self.keys)?;
        self.write_atomically(&local, &text)?;
        tracing::debug!(path = %path, signed_by = %info.signed_by, "narinfo verified");
        Ok(info)
    }

    fn fetch_nars(
        &self,
        infos: Vec<VerifiedNarInfo>,
        parallelism: usize,
    ) -> Result<Vec<NixInput>, Error> {
        let todo: u64 = infos
            .iter()
            .filter(|i| !self.nar_is_cached(i))
            .map(|i| i.file_size.unwrap_or(i.nar_size))
            .sum();
        let progress = if io::stderr().is_terminal() && todo > 0 {
            let bar = ProgressBar::new(todo);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
            ) {
                bar.set_style(style);
            }
            bar.set_message(format!("fetching from {}", self.url));
            bar
        } else {
            ProgressBar::hidden()
        };
        let result = try_map(&infos, parallelism, |info| self.fetch_nar(info, &progress));
        progress.finish_and_clear();
        let mut inputs = result?;
        inputs.sort_by(|a, b| a.store_path.cmp(&b.store_path));
        Ok(inputs)
    }

    fn nar_path(&self, info: &VerifiedNarInfo) -> PathBuf {
        let hash = info.nar_hash.to_nix_nixbase32_string();
        let hash = hash.trim_start_matches("sha256:");
        self.cache_dir.join("nar").join(format!("{hash}.nar"))
    }

    fn nar_is_cached(&self, info: &VerifiedNarInfo) -> bool {
        // The size is a cheap sanity check; the hash is verified again on every unpack.
        fs::metadata(self.nar_path(info)).is_ok_and(|m| m.len() == info.nar_size)
    }

    fn fetch_nar(&self, info: &VerifiedNarInfo, progress: &ProgressBar) -> Result<NixInput, Error> {
        let nar_file = self.nar_path(info);
        let input = NixInput {
            store_path: info.store_path.clone(),
            nar_hash: info.nar_hash.clone(),
            nar_size: info.nar_size,
            references: Some(info.references.clone()),
            source: NarSource::NarFile(nar_file.clone()),
        };
        if self.nar_is_cached(info) {
            tracing::debug!(path = %info.store_path, file = %nar_file.display(), "NAR already cached");
            return Ok(input);
        }
        let store_path = info.store_path.to_string();
        if !matches!(info.compression.as_str(), "none" | "xz" | "zstd") {
            return Err(Error::UnsupportedCompression {
                store_path,
                url: self.url_of(&info.url),
                compression: info.compression.clone(),
            });
        }
        let url = self.url_of(&info.url);
        let Some(mut reader) = self.get(&info.url)? else {
            return Err(Error::NotInCache {
                store_path,
                cache: self.url.clone(),
                url,
            });
        };

        // Download completely, then check FileHash/FileSize before decompressing, so a corrupted
        // file is reported as such rather than as whatever the decompressor trips over.
        let (compressed, size) = self.download_checked(info, &mut reader, &url, progress)?;
        let (nar, nar_size) = self.decompress_checked(info, compressed, &url)?;
        nar.persist(&nar_file)
            .map_err(|e| Error::io("storing", &nar_file, e.error))?;
        tracing::info!(path = %info.store_path, url = %url, bytes = size, nar_bytes = nar_size, "fetched NAR");
        Ok(input)
    }

    /// The file as the cache serves it (compressed), in a temporary file,
    /// checked against the narinfo's FileSize and FileHash when it has them.
    fn download_checked(
        &self,
        info: &VerifiedNarInfo,
        reader: &mut dyn Read,
        url: &str,
        progress: &ProgressBar,
    ) -> Result<(tempfile::NamedTempFile, u64), Error> {
        let store_path = info.store_path.to_string();
        let mut compressed = self.temp_file()?;
        let algorithm = info
            .file_hash
            .as_ref()
            .map_or(nix_derivation::HashAlgorithm::Sha256, NixHash::algorithm);
        let mut hasher = NixHasher::new(algorithm);
        let mut size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(url, e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
            compressed
                .write_all(&buf[..n])
                .map_err(|e| Error::io("writing", compressed.path(), e))?;
            progress.inc(n as u64);
        }
        if let Some(expected) = info.file_size
            && expected != size
        {
            return Err(Error::SizeMismatch {
                store_path,
                url: url.to_owned(),
                what: "FileSize",
                expected,
                got: size,
            });
        }
        let got = hasher.finalize();
        if let Some(expected) = &info.file_hash
            && *expected != got
        {
            return Err(Error::HashMismatch {
                store_path,
                url: url.to_owned(),
                what: "FileHash",
                expected: expected.to_nix_nixbase32_string(),
                got: got.to_nix_nixbase32_string(),
            });
        }
        Ok((compressed, size))
    }

    /// The NAR itself, decompressed from `compressed` into a temporary file
    /// and checked against NarSize and NarHash.
    fn decompress_checked(
        &self,
        info: &VerifiedNarInfo,
        mut compressed: tempfile::NamedTempFile,
        url: &str,
    ) -> Result<(tempfile::NamedTempFile, u64), Error> {
        let store_path = info.store_path.to_string();
        let decompress_err = |source: io::Error| Error::Decompress {
            store_path: store_path.clone(),
            url: url.to_owned(),
            compression: info.compression.clone(),
            source,
        };
        compressed
            .as_file_mut()
            .rewind()
            .map_err(|e| Error::io("rewinding", compressed.path(), e))?;
        let raw = compressed.as_file();
        let decompressed: Box<dyn Read> = match info.compression.as_str() {
            "xz" => Box::new(liblzma::read::XzDecoder::new(raw)),
            "zstd" => Box::new(zstd::stream::read::Decoder::new(raw).map_err(decompress_err)?),
            _ => Box::new(raw),
        };
        // Reading one byte past NarSize is enough to know the NAR is too long; a decompression
        // bomb stops there instead of filling the disk.
        let mut decompressed = decompressed.take(info.nar_size + 1);
        let mut nar = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut nar_size = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match decompressed.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(decompress_err(e)),
            };
            hasher.update(&buf[..n]);
            nar_size += n as u64;
            nar.write_all(&buf[..n])
                .map_err(|e| Error::io("writing", nar.path(), e))?;
        }
        if nar_size != info.nar_size {
            return Err(Error::SizeMismatch {
                store_path,
                url: url.to_owned(),
                what: "NarSize",
                expected: info.nar_size,
                got: nar_size,
            });
        }
        let got = NixHash::Sha256(hasher.finalize().into());
        if got != info.nar_hash {
            return Err(Error::HashMismatch {
                store_path,
                url: url.to_owned(),
                what: "NarHash",
                expected: info.nar_hash.to_nix_nixbase32_string(),
                got: got.to_nix_nixbase32_string(),
            });
        }
        Ok((nar, nar_size))
    }

    fn tmp_dir(&self) -> PathBuf {
        self.cache_dir.join("tmp")
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, Error> {
        let dir = self.tmp_dir();
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io("creating a file in", dir, e))
    }

    fn write_atomically(&self, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes)
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
        tmp.persist(dest)
            .map_err(|e| Error::io("storing", dest, e.error))?;
        Ok(())
    }

    fn check_cache_info(&self) -> Result<(), Error> {
        let Some(mut reader) = self.get("nix-cache-info")? else {
            tracing::warn!(cache = %self.url, "binary cache has no nix-cache-info");
            return Ok(());
        };
        let url = self.url_of("nix-cache-info");
        let mut text = String::new();
        reader
            .by_ref()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| self.read_err(&url, e))?;
        for line in text.lines() {
            if let Some(dir) = line.strip_prefix("StoreDir:") {
                let dir = dir.trim();
                if dir != NIX_STORE_DIR {
                    return Err(Error::WrongStoreDir {
                        cache: self.url.clone(),
                        store_dir: dir.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    fn url_of(&self, rel: &str) -> String {
        if rel.contains("://") {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.url)
        }
    }

    fn read_err(&self, url: &str, e: io::Error) -> Error {
        Error::Read {
            url: url.to_owned(),
            source: e,
        }
    }

    /// Open `rel` (relative to the cache, or an absolute URL a narinfo gave); `None` if absent.
    fn get(&self, rel: &str) -> Result<Option<Box<dyn Read + Send>>, Error> {
        match &self.transport {
            Transport::File { root } => {
                let relative = Path::new(rel);
                // A narinfo is not trusted until verified, and even then its URL is unsigned: it
                // must not make us read outside the cache directory.
                if rel.contains("://")
                    || relative
                        .components()
                        .any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(Error::UnsupportedCacheUrl {
                        url: self.url_of(rel),
                        reason: "a file:// cache may only name files inside itself".to_owned(),
                    });
                }
                let path = root.join(relative);
                match File::open(&path) {
                    Ok(f) => Ok(Some(Box::new(f))),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("opening", path, e)),
                }
            }
            Transport::Http { base, client } => {
                let url = if rel.contains("://") {
                    rel.to_owned()
                } else {
                    format!("{base}/{rel}")
                };
                let response = client.get(&url).send().map_err(|e| Error::Http {
                    url: url.clone(),
                    source: Box::new(e),
                })?;
                let status = response.status();
                if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(Error::HttpStatus {
                        url,
                        status: status.as_u16(),
                    });
                }
                Ok(Some(Box::new(response)))
            }
        }
    }
}
