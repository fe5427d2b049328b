//! The same Nix-written cache served over HTTP on 127.0.0.1: downloads run in parallel but never
//! more than asked, and a second fetch with the same cache directory downloads nothing.

mod nix_support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image_builder::nix::{BinaryCache, TrustedKeys};
use nix_support::{describe_tree, fixture};

/// Serves files of a directory; counts requests per path and the peak of concurrent NAR requests.
struct Server {
    url: String,
    requests: Arc<Mutex<BTreeMap<String, usize>>>,
    peak_nar_in_flight: Arc<AtomicUsize>,
}

impl Server {
    fn start(root: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(BTreeMap::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, f, p) = (requests.clone(), in_flight.clone(), peak.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, r, f, p) = (root.clone(), r.clone(), f.clone(), p.clone());
                std::thread::spawn(move || serve(stream, &root, &r, &f, &p));
            }
        });
        Self {
            url,
            requests,
            peak_nar_in_flight: peak,
        }
    }

    fn count(&self, prefix: &str) -> usize {
        let requests = self.requests.lock().expect("lock");
        requests
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    requests: &Mutex<BTreeMap<String, usize>>,
    in_flight: &AtomicUsize,
    peak: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let Some(path) = nix_support::read_request_path(&mut reader) else {
        return;
    };
    *requests
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    let is_nar = path.starts_with("/nar/");
    if is_nar {
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        // Long enough that parallel workers overlap, so the peak shows the real bound.
        std::thread::sleep(Duration::from_millis(150));
    }
    let file = root.join(path.trim_start_matches('/'));
    let mut stream = stream;
    let _ = match fs::read(&file) {
        Ok(body) if !path.contains("..") => stream
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|()| stream.write_all(&body)),
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
    if is_nar {
        in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn http_cache_parallel_bounded_and_cached() {
    let fx = fixture();
    let server = Server::start(fx.caches["xz"].clone());
    let work = tempfile::tempdir().expect("tempdir");
    let cache_dir = work.path().join("cache-dir");
    let keys = || TrustedKeys::parse([fx.public_key.as_str()]).expect("key");

    let cache = BinaryCache::open(&server.url, keys(), &cache_dir).expect("open");
    let inputs = cache
        .fetch_closure(std::slice::from_ref(&fx.main), 2)
        .expect("fetch over http");
    assert_eq!(inputs.len(), 6);
    assert_eq!(server.count("/nar/"), 6, "{:?}", server.requests);
    assert_eq!(
        server.count("/") - server.count("/nar/") - server.count("/nix-cache-info"),
        6
    );
    let peak = server.peak_nar_in_flight.load(Ordering::SeqCst);
    assert_eq!(
        peak, 2,
        "six 150 ms downloads with two workers overlap exactly two at a time"
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

    // A second run with the same cache directory reuses narinfos (re-verified) and NARs.
    let before = server.count("/");
    let again = BinaryCache::open(&server.url, keys(), &cache_dir).expect("reopen");
    let second = again
        .fetch_closure(std::slice::from_ref(&fx.main), 4)
        .expect("second fetch");
    assert_eq!(second, inputs);
    let new_requests = server.count("/") - before;
    assert_eq!(
        new_requests, 1,
        "only nix-cache-info: {:?}",
        server.requests
    );

    // Cached narinfos are checked again: distrusting the key makes the cached ones fail too,
    // and the fresh copy fails the same way.
    let other = "someone-else-1:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=";
    let distrust = BinaryCache::open(
        &server.url,
        TrustedKeys::parse([other]).expect("k"),
        &cache_dir,
    )
    .expect("open");
    let e = distrust
        .fetch_closure(std::slice::from_ref(&fx.main), 2)
        .expect_err("untrusted");
    assert!(e.to_string().contains("not signed by a trusted key"), "{e}");
}

#[test]
fn http_errors_name_the_url() {
    let fx = fixture();
    let server = Server::start(fx.caches["xz"].clone());
    let work = tempfile::tempdir().expect("tempdir");
    let keys = TrustedKeys::parse([fx.public_key.as_str()]).expect("key");
    let cache = BinaryCache::open(&format!("{}/", server.url), keys, work.path()).expect("open");
    let absent =
        image_builder::nix::parse_store_path("/nix/store/00000000000000000000000000000000-absent")
            .expect("p");
    let e = cache.fetch(&[absent], 1).expect_err("absent");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "{}/00000000000000000000000000000000.narinfo",
            server.url
        )),
        "{msg}"
    );

    // Nothing listens on this port once the listener is dropped.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let keys = TrustedKeys::parse([fx.public_key.as_str()]).expect("key");
    let e = BinaryCache::open(&url, keys, work.path())
        .err()
        .expect("connection refused");
    assert!(e.to_string().contains(&url), "{e}");
}
