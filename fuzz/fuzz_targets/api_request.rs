//! A signed API request as machined sees it: the method, the request
//! target, the `x-basalt-nonce` and `x-basalt-signature` header values and
//! the body, checked by `machined::auth::authenticate` and routed by
//! `basalt_api::route::Route::parse`, with the JSON body types of the routes
//! that take one (`POST /v1/apply`, `POST /v1/kubeconfig`).
//!
//! Input: `MODE TAMPER AT` (three bytes), then `METHOD\nTARGET\nNONCE\nSIGNATURE\n`
//! and the body (the rest, any bytes). MODE % 4 picks who signs:
//! 0 = nobody here, the NONCE and SIGNATURE lines are the headers as sent;
//! 1, 2, 3 = this target issues a nonce and signs the request with the
//! trusted admin key, the trusted reader key or an untrusted key (the two
//! header lines are ignored). TAMPER % 6 then changes one field after
//! signing (nothing, method, target, body, nonce, signature) at byte AT.
//!
//! Properties:
//! - nothing panics, whatever the headers and body;
//! - a request with fuzzer-made headers never authenticates (nonces are
//!   MACed under a key that never leaves the node);
//! - a request signed here authenticates exactly when it is unmodified and
//!   the key is trusted, with the key's role; it then cannot be replayed; a
//!   modified request is refused and does not use up the nonce (the
//!   unmodified one still authenticates afterwards);
//! - a route that parses has the method it was parsed from and re-renders
//!   to a request target that parses to the same route;
//! - a body that parses as `ApplyRequest` or `KubeconfigRequest`
//!   serializes to JSON that parses to the same value (same JSON), and
//!   `KubeconfigRequest::check` gives the same verdict on both.
#![no_main]

use basalt_api::request;
use basalt_api::route::Route;
use basalt_api::rpc::{ApplyRequest, KubeconfigRequest};
use basalt_api::sshkey::PrivateKey;
use basalt_api::trust::TrustRoots;
use libfuzzer_sys::fuzz_target;
use machined::auth::{self, AuthError, Nonces, Role};
use std::sync::LazyLock;

struct Keys {
    admin: PrivateKey,
    reader: PrivateKey,
    stranger: PrivateKey,
    roots: TrustRoots,
}

/// The node's trust policy: one admin, one reader, threshold 1.
static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let admin = PrivateKey::from_seed(&[1; 32], "fuzz-admin");
    let reader = PrivateKey::from_seed(&[3; 32], "fuzz-reader");
    let stranger = PrivateKey::from_seed(&[5; 32], "fuzz-stranger");
    let roots = TrustRoots::new(vec![admin.public()], vec![reader.public()], 1)
        .expect("one admin, one reader, threshold 1");
    Keys {
        admin,
        reader,
        stranger,
        roots,
    }
});

struct Request {
    method: String,
    target: String,
    nonce: String,
    signature: String,
    body: Vec<u8>,
}

/// Splits the input after the three control bytes; `None` without them.
fn split(data: &[u8]) -> Option<(u8, u8, u8, Request)> {
    let (&[mode, tamper, at], rest) = data.split_first_chunk::<3>()?;
    let mut fields = rest.splitn(5, |b| *b == b'\n');
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (method, target, nonce, signature) = (text(), text(), text(), text());
    let body = fields.next().unwrap_or_default().to_vec();
    Some((
        mode,
        tamper,
        at,
        Request {
            method,
            target,
            nonce,
            signature,
            body,
        },
    ))
}

fn authenticate(roots: &TrustRoots, nonces: &Nonces, r: &Request) -> Result<Role, AuthError> {
    auth::authenticate(
        roots,
        nonces,
        Some(&r.nonce),
        Some(&r.signature),
        &r.method,
        &r.target,
        &r.body,
    )
    .map(|caller| caller.role)
}

/// Changes one byte of `s` at `at` (or appends one): never a no-op.
fn change_text(s: &mut String, at: u8) {
    let mut bytes = std::mem::take(s).into_bytes();
    change_bytes(&mut bytes, at);
    *s = String::from_utf8_lossy(&bytes).into_owned();
}

fn change_bytes(b: &mut Vec<u8>, at: u8) {
    match b.get_mut(usize::from(at)) {
        // Stay ASCII so a text field stays the same length and changed.
        Some(x) => *x = if *x == b'A' { b'B' } else { b'A' },
        None => b.push(b'A'),
    }
}

fn check_signed(
    roots: &TrustRoots,
    signer: &PrivateKey,
    role: Option<Role>,
    tamper: u8,
    at: u8,
    mut r: Request,
) {
    let nonces = Nonces::new(auth::NONCE_TTL).expect("randomness");
    r.nonce = nonces.issue().expect("randomness");
    r.signature = request::sign(signer, &r.method, &r.target, &r.body, &r.nonce);
    let mut changed = Request {
        method: r.method.clone(),
        target: r.target.clone(),
        nonce: r.nonce.clone(),
        signature: r.signature.clone(),
        body: r.body.clone(),
    };
    match tamper % 6 {
        0 => {}
        1 => change_text(&mut changed.method, at),
        2 => change_text(&mut changed.target, at),
        3 => change_bytes(&mut changed.body, at),
        4 => change_text(&mut changed.nonce, at),
        _ => change_text(&mut changed.signature, at),
    }
    let untouched = tamper % 6 == 0;
    let outcome = authenticate(roots, &nonces, &changed);
    match (untouched, role, &outcome) {
        (true, Some(want), Ok(got)) => assert_eq!(*got, want, "the signer's role"),
        (true, None, Err(AuthError::UnknownKey(_))) => {}
        (false, _, Err(_)) => {}
        (u, w, o) => panic!("unmodified={u} role={w:?}: {o:?}"),
    }
    if let Some(want) = role {
        if untouched {
            assert_eq!(
                authenticate(roots, &nonces, &r),
                Err(AuthError::UnknownNonce),
                "a replay is refused"
            );
        } else {
            assert_eq!(
                authenticate(roots, &nonces, &r),
                Ok(want),
                "a refused request left the nonce usable"
            );
        }
    }
}

fn check_route(method: &str, target: &str) {
    if let Ok(route) = Route::parse(method, target) {
        assert_eq!(route.method().as_str(), method);
        let rendered = route.path_and_query();
        assert_eq!(
            Route::parse(method, &rendered),
            Ok(route),
            "{method} {target} renders as {rendered}"
        );
    }
}

fn check_bodies(body: &[u8]) {
    if let Ok(apply) = serde_json::from_slice::<ApplyRequest>(body) {
        let json = serde_json::to_vec(&apply).expect("serialize");
        let again: ApplyRequest = serde_json::from_slice(&json).expect("re-parse");
        assert_eq!(serde_json::to_vec(&again).expect("serialize"), json);
    }
    if let Ok(kube) = serde_json::from_slice::<KubeconfigRequest>(body) {
        let json = serde_json::to_vec(&kube).expect("serialize");
        let again: KubeconfigRequest = serde_json::from_slice(&json).expect("re-parse");
        assert_eq!(again, kube);
        assert_eq!(again.check(), kube.check());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, tamper, at, r)) = split(data) else {
        return;
    };
    let Keys {
        admin,
        reader,
        stranger,
        roots,
    } = &*KEYS;
    check_route(&r.method, &r.target);
    check_bodies(&r.body);
    match mode % 4 {
        0 => {
            let nonces = Nonces::new(auth::NONCE_TTL).expect("randomness");
            let outcome = authenticate(roots, &nonces, &r);
            assert!(
                outcome.is_err(),
                "forged request authenticated: {outcome:?}"
            );
            if let Ok(sig) = request::verify(&r.signature, &r.method, &r.target, &r.body, &r.nonce)
            {
                assert_eq!(sig.namespace, request::API_NAMESPACE);
                let mut body = r.body.clone();
                change_bytes(&mut body, at);
                assert!(
                    request::verify(&r.signature, &r.method, &r.target, &body, &r.nonce).is_err()
                );
            }
        }
        1 => check_signed(roots, admin, Some(Role::Admin), tamper, at, r),
        2 => check_signed(roots, reader, Some(Role::Reader), tamper, at, r),
        _ => check_signed(roots, stranger, None, tamper, at, r),
    }
});
