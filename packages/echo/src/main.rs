//! A minimal HTTP/1.1 server for tests of the node's container runtime:
//! every request is answered `200 OK` with the request line, the hostname
//! (the pod's, in a container) and a fixed body, then the connection is
//! closed. std only, so the static binary is the whole image.
//!
//! The port is the first argument, else `$PORT`, else 8080.
//!
//! With `$FETCH=<ip>:<port>` it is also a client: once a second it sends
//! `GET /` there and logs one line, `fetch <n> <target> ok <hostname>` or
//! `fetch <n> <target> error <reason>`, so a test reads connectivity from
//! the pod's log (`kubectl logs`), with no shell in the image.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// The fixed part of every answer, for tests to look for.
const BODY: &str = "basalt echo\n";
/// A request head longer than this is refused (nothing legitimate here
/// sends more).
const MAX_HEAD: u64 = 16 * 1024;

fn main() -> ExitCode {
    let port = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .unwrap_or_else(|| "8080".into());
    let port: u16 = match port.parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("echo: bad port `{port}`: {e}");
            return ExitCode::from(2);
        }
    };
    // Dual-stack where the host has IPv6, else IPv4 only.
    let listener =
        TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: listen on port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("echo: listening on port {port}");
    if let Ok(target) = std::env::var("FETCH") {
        std::thread::spawn(move || fetch_forever(&target));
    }
    for conn in listener.incoming() {
        match conn {
            // One thread a connection: a slow client never holds up others.
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream) {
                        eprintln!("echo: {e}");
                    }
                });
            }
            Err(e) => eprintln!("echo: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head, up to the empty line; the body (if any) is
    // not looked at.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
    }
    let body = answer(request_line.trim_end(), &hostname());
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// How long one fetch may take: a policy that drops packets shows as a
/// timeout, not a hang.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

fn fetch_forever(target: &str) {
    for n in 1u64.. {
        match fetch(target) {
            Ok(host) => println!("fetch {n} {target} ok {host}"),
            Err(e) => println!("fetch {n} {target} error {e}"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// One `GET /` to `target`: the answering echo's hostname.
fn fetch(target: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = target
        .parse()
        .map_err(|e| format!("`{target}` is not <ip>:<port>: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(FETCH_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!(
            "GET /from/{} HTTP/1.1\r\nHost: {target}\r\n\r\n",
            hostname()
        )
        .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    out.lines()
        .find_map(|l| l.strip_prefix("hostname: "))
        .map(str::to_owned)
        .ok_or_else(|| format!("no echo answer: {:?}", out.lines().next().unwrap_or("")))
}

fn answer(request_line: &str, hostname: &str) -> String {
    format!("request: {request_line}\nhostname: {hostname}\n{BODY}")
}

/// The UTS hostname (no libc call needed: /proc has it).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_request_line_hostname_and_body() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            serve(s).unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /hello?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        server.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("request: GET /hello?x=1 HTTP/1.1\n"), "{out}");
        assert!(
            out.contains(&format!("hostname: {}\n", hostname())),
            "{out}"
        );
        assert!(out.ends_with(BODY), "{out}");
    }

    #[test]
    fn fetch_reports_the_answering_hostname_or_why_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            serve(s).unwrap();
        });
        assert_eq!(fetch(&addr.to_string()), Ok(hostname()));
        server.join().unwrap();
        // Nobody listens there any more.
        assert!(fetch(&addr.to_string()).is_err());
        assert!(fetch("echo:80").unwrap_err().contains("is not <ip>:<port>"));
    }
}
