//! The Nix-written cache served over TLS on 127.0.0.1, with a server certificate issued by a
//! throwaway CA made here: trusting that CA (through the API or a profile's `[nix] ca_certs`)
//! fetches and unpacks the closure exactly like Nix; not trusting it, or a certificate for another
//! name, is refused before any request is sent, with an error naming the URL and the certificate
//! problem, and nothing is written.

mod nix_support;

use std::fs;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image_builder::nix::{BinaryCache, CacheOptions, NixInput, TrustedKeys};
use image_builder::profile::{LoadOptions, NixSettings};
use nix_support::{describe_tree, fixture, list_all};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throwaway certificate authority; its certificate is written to `pem`.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-sign CA");
        let pem = dir.join(format!("{name}-ca.pem"));
        fs::write(&pem, cert.pem()).expect("write CA");
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names` (IP addresses or DNS names) and its key.
    fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "binary cache");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
    }
}

/// Serves the files of a directory over HTTPS; records each request path and each failed
/// handshake.
struct TlsServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    handshake_failures: Arc<Mutex<Vec<String>>>,
}

impl TlsServer {
    fn start(
        root: PathBuf,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (r, f) = (requests.clone(), failures.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, config, r, f) = (root.clone(), config.clone(), r.clone(), f.clone());
                std::thread::spawn(move || serve(stream, config, &root, &r, &f));
            }
        });
        Self {
            port,
            requests,
            handshake_failures: failures,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }

    fn handshake_failures(&self) -> Vec<String> {
        self.handshake_failures.lock().expect("lock").clone()
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    root: &Path,
    requests: &Mutex<Vec<String>>,
    failures: &Mutex<Vec<String>>,
) {
    let conn = rustls::ServerConnection::new(config).expect("server connection");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            failures.lock().expect("lock").push(e.to_string());
            return;
        }
    }
    let mut reader = BufReader::new(tls);
    let Some(path) = nix_support::read_request_path(&mut reader) else {
        return;
    };
    requests.lock().expect("lock").push(path.clone());
    let tls = reader.get_mut();
    let file = root.join(path.trim_start_matches('/'));
    let _ = match fs::read(&file) {
        Ok(body) if !path.contains("..") => tls
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|()| tls.write_all(&body)),
        _ => tls
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The error and its causes, as the CLI prints them (`error: {:#}` of an anyhow error).
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

fn keys() -> TrustedKeys {
    TrustedKeys::parse([fixture().public_key.as_str()]).expect("key")
}

fn summary(inputs: &[NixInput]) -> Vec<(String, String, u64)> {
    inputs
        .iter()
        .map(|i| (i.store_path.to_string(), i.nar_hash_sri(), i.nar_size))
        .collect()
}

/// The `[nix]` settings of a minimal profile in `dir` fetching the fixture's closure from `url`,
/// with `extra` appended to the section.
fn profile_nix(dir: &Path, url: &str, cache_dir: &Path, extra: &str) -> NixSettings {
    fs::write(dir.join("vmlinuz"), b"not a kernel").expect("kernel");
    fs::write(dir.join("machined"), b"").expect("machined");
    let admin = basalt_api::sshkey::PrivateKey::from_seed(&[7; 32], "admin@test")
        .public()
        .to_openssh();
    let fx = fixture();
    let text = format!(
        "name = \"https\"\n\n[kernel]\nimage = \"vmlinuz\"\n\n[machined]\npath = \"machined\"\n\n\
         [trust]\nadmins = [\"{admin}\"]\n\n[nix]\npaths = [\"{}\"]\nsubstituter = \"{url}\"\n\
         trusted_public_keys = [\"{}\"]\ncache_dir = \"{}\"\n{extra}",
        fx.main,
        fx.public_key,
        cache_dir.display()
    );
    let file = dir.join("profile.toml");
    fs::write(&file, &text).expect("profile");
    let profile = image_builder::profile::load(&file, &LoadOptions::default()).expect("profile");
    profile.nix.expect("[nix]")
}

#[test]
fn https_cache_behind_a_private_ca() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(work.path(), "private");
    let (chain_der, key) = ca.leaf(&["127.0.0.1", "localhost"]);
    let server = TlsServer::start(fx.caches["xz"].clone(), chain_der, key);

    let cache_dir = work.path().join("cache-dir");
    let options = CacheOptions::default().extra_root(&ca.pem);
    let cache =
        BinaryCache::open_with(&server.url(), keys(), &cache_dir, &options).expect("open https");
    let inputs = cache
        .fetch_closure(std::slice::from_ref(&fx.main), 2)
        .expect("fetch over https");
    assert_eq!(inputs.len(), 6);
    let want: Vec<String> = fx.closure().iter().map(ToString::to_string).collect();
    let got: Vec<String> = inputs.iter().map(|i| i.store_path.to_string()).collect();
    assert_eq!(got, want);
    let nar_requests = server
        .requests()
        .iter()
        .filter(|p| p.starts_with("/nar/"))
        .count();
    assert_eq!(nar_requests, 6, "{:?}", server.requests());
    assert!(
        server.handshake_failures().is_empty(),
        "{:?}",
        server.handshake_failures()
    );

    let image = work.path().join("image");
    fs::create_dir(&image).expect("image");
    for input in &inputs {
        input.unpack_into(&image).expect("unpack");
        let theirs = work.path().join(input.store_path.to_basename());
        fx.restore_with_nix(&input.store_path, &theirs);
        let ours = image.join("nix/store").join(input.store_path.to_basename());
        assert_eq!(describe_tree(&ours), describe_tree(&theirs));
    }

    // The same through a profile: `[nix] ca_certs` (relative to the profile) reaches the client.
    fs::copy(&ca.pem, work.path().join("ca.pem")).expect("copy CA");
    let profile_cache = work.path().join("profile-cache");
    let settings = profile_nix(
        work.path(),
        &server.url(),
        &profile_cache,
        "ca_certs = [\"ca.pem\"]\n",
    );
    let before = server.requests().len();
    let from_profile = image_builder::nix_inputs::collect(&settings).expect("collect over https");
    assert_eq!(summary(&from_profile), summary(&inputs));
    assert_eq!(
        server.requests().len() - before,
        13,
        "nix-cache-info, 6 narinfos, 6 NARs: {:?}",
        server.requests()
    );
}

#[test]
fn https_cache_with_an_untrusted_ca_is_refused() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(work.path(), "unknown");
    let (chain_der, key) = ca.leaf(&["127.0.0.1", "localhost"]);
    let server = TlsServer::start(fx.caches["xz"].clone(), chain_der, key);
    let url = server.url();
    let cache_dir = work.path().join("cache-dir");

    let e = BinaryCache::open(&url, keys(), &cache_dir)
        .err()
        .expect("a certificate from an unknown CA must be refused");
    let top = e.to_string();
    assert!(top.contains(&format!("{url}/nix-cache-info")), "{top}");
    // The one-line message itself names the certificate problem.
    assert!(
        top.contains("invalid peer certificate: UnknownIssuer"),
        "{top}"
    );
    let full = chain(e);
    assert!(
        full.contains("invalid peer certificate") && full.contains("UnknownIssuer"),
        "{full}"
    );

    // Another CA than the server's does not help either.
    let other = TestCa::new(work.path(), "other");
    let options = CacheOptions::default().extra_root(&other.pem);
    let e = BinaryCache::open_with(&url, keys(), &cache_dir, &options)
        .err()
        .expect("still unknown");
    assert!(chain(e).contains("UnknownIssuer"));

    // Through a profile without `ca_certs`: the build's error names the URL and the problem.
    let profile_cache = work.path().join("profile-cache");
    let settings = profile_nix(work.path(), &url, &profile_cache, "");
    let e = image_builder::nix_inputs::collect(&settings).expect_err("refused");
    let full = chain(e);
    assert!(
        full.contains(&format!("{url}/nix-cache-info"))
            && full.contains("invalid peer certificate"),
        "{full}"
    );

    // Refused during the handshake: not one request reached the server, nothing was written.
    assert_eq!(server.requests(), Vec::<String>::new());
    // The server thread logs a failed handshake just after the client gives
    // up on it: allow it a moment to record the last one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while server.handshake_failures().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.handshake_failures().len(), 3);
    assert!(!cache_dir.exists(), "{:?}", list_all(&cache_dir));
    assert!(!profile_cache.exists(), "{:?}", list_all(&profile_cache));
}

#[test]
fn https_certificate_for_another_name_is_refused() {
    let fx = fixture();
    let work = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(work.path(), "private");
    let options = CacheOptions::default().extra_root(&ca.pem);
    let cache_dir = work.path().join("cache-dir");

    let (chain_der, key) = ca.leaf(&["cache.example.org"]);
    let server = TlsServer::start(fx.caches["xz"].clone(), chain_der, key);
    let url = server.url();
    let e = BinaryCache::open_with(&url, keys(), &cache_dir, &options)
        .err()
        .expect("a certificate for another name must be refused");
    let full = chain(e);
    assert!(
        full.contains(&format!("{url}/nix-cache-info"))
            && full.contains("certificate not valid for name")
            && full.contains("127.0.0.1"),
        "{full}"
    );
    assert_eq!(server.requests(), Vec::<String>::new());
    assert!(!cache_dir.exists(), "{:?}", list_all(&cache_dir));

    // A certificate for `localhost` only: refused for the address, accepted for the name.
    let (chain_der, key) = ca.leaf(&["localhost"]);
    let server = TlsServer::start(fx.caches["xz"].clone(), chain_der, key);
    let e = BinaryCache::open_with(&server.url(), keys(), &cache_dir, &options)
        .err()
        .expect("127.0.0.1 is not localhost for certificate purposes");
    assert!(
        chain(e).contains("certificate not valid for name"),
        "wrong error"
    );
    assert!(!cache_dir.exists(), "{:?}", list_all(&cache_dir));
    let by_name = format!("https://localhost:{}", server.port);
    let cache = BinaryCache::open_with(&by_name, keys(), &cache_dir, &options).expect("localhost");
    let inputs = cache
        .fetch_closure(std::slice::from_ref(&fx.main), 2)
        .expect("fetch from localhost");
    assert_eq!(inputs.len(), 6);
}
