use super::*;

const NIX_PATH: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-hello-1.0";
const NIX_KEY: &str = "cache.example-1:I9QwGBR2Vv54wNdXymTVd+/+rPC1JZc5K/feyR1oYvg=";

/// A minimal valid profile in `dir` whose `[nix]` section ends with `nix`; returns the text
/// (for line numbers) and the parse result.
fn with_nix(dir: &Path, nix: &str) -> (String, Result<Profile>) {
    std::fs::write(dir.join("vmlinuz"), b"not really a kernel").unwrap();
    std::fs::write(dir.join("machined"), b"").unwrap();
    let admin = basalt_api::sshkey::PrivateKey::from_seed(&[7; 32], "t")
        .public()
        .to_openssh();
    let text = format!(
        "name = \"t\"\n\n[kernel]\nimage = \"vmlinuz\"\n\n[machined]\npath = \"machined\"\n\n\
         [trust]\nadmins = [\"{admin}\"]\n\n[nix]\npaths = [\"{NIX_PATH}\"]\n{nix}"
    );
    let env = |_: &str| None::<String>;
    let options = LoadOptions {
        env: &env,
        machined: None,
    };
    let parsed = parse(&text, &dir.join("p.toml"), &options);
    (text, parsed)
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn nix_ca_certs_resolve_against_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_pem()).unwrap();
    let (_, parsed) = with_nix(
        dir.path(),
        &format!(
            "substituter = \"https://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n\
             cache_dir = \"cache\"\nca_certs = [\"ca.pem\"]\n"
        ),
    );
    let nix = parsed.unwrap().nix.unwrap();
    match nix.source {
        NixSource::BinaryCache { url, ca_certs, .. } => {
            assert_eq!(url, "https://cache.internal");
            assert_eq!(ca_certs, vec![dir.path().join("ca.pem")]);
        }
        other => panic!("{other:?}"),
    }

    // Without the key the list is empty, not an error.
    let (_, parsed) = with_nix(
        dir.path(),
        &format!(
            "substituter = \"https://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n"
        ),
    );
    match parsed.unwrap().nix.unwrap().source {
        NixSource::BinaryCache { ca_certs, .. } => assert!(ca_certs.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nix_ca_certs_are_strict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_pem()).unwrap();
    std::fs::write(dir.path().join("junk.pem"), "this is no certificate\n").unwrap();
    std::fs::write(
        dir.path().join("bad-der.pem"),
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let https = format!(
        "substituter = \"https://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n"
    );
    let err = |nix: &str| {
        let (text, parsed) = with_nix(dir.path(), nix);
        let line = text.lines().position(|l| l.starts_with("ca_cert")).unwrap() + 1;
        (line, parsed.unwrap_err().to_string())
    };

    let (line, e) = err(&format!(
        "{https}ca_certs = [\"ca.pem\", \"missing.pem\"]\n"
    ));
    assert!(
        e.contains(&format!("p.toml:{line}:"))
            && e.contains("nix.ca_certs[1]")
            && e.contains("missing.pem: no such file"),
        "{e}"
    );

    let (line, e) = err(&format!("{https}ca_certs = [\"junk.pem\"]\n"));
    assert!(
        e.contains(&format!("p.toml:{line}:13: nix.ca_certs[0]"))
            && e.contains("junk.pem")
            && e.contains("no PEM `CERTIFICATE` block"),
        "{e}"
    );

    let (_, e) = err(&format!("{https}ca_certs = [\"bad-der.pem\"]\n"));
    assert!(
        e.contains("nix.ca_certs[0]")
            && e.contains("bad-der.pem")
            && e.contains("unusable certificate"),
        "{e}"
    );

    let (line, e) = err(&format!(
        "substituter = \"http://cache.internal\"\ntrusted_public_keys = [\"{NIX_KEY}\"]\n\
         ca_certs = [\"ca.pem\"]\n"
    ));
    assert!(
        e.contains(&format!("p.toml:{line}:13: nix.ca_certs"))
            && e.contains("only an https:// substituter"),
        "{e}"
    );

    let (_, e) = err("store = \"/nix/store\"\nca_certs = [\"ca.pem\"]\n");
    assert!(
        e.contains("nix.ca_certs") && e.contains("a local store needs none"),
        "{e}"
    );

    let (line, e) = err(&format!("{https}ca_cert = \"ca.pem\"\n"));
    assert!(
        e.contains(&format!(
            "p.toml:{line}:1: nix.ca_cert: unknown field `ca_cert`"
        )) && e.contains("ca_certs"),
        "{e}"
    );
}

/// A minimal valid profile in `dir` followed by `extra`.
fn with_extra(dir: &Path, extra: &str) -> (String, Result<Profile>) {
    std::fs::write(dir.join("vmlinuz"), b"not really a kernel").unwrap();
    std::fs::write(dir.join("machined"), b"").unwrap();
    let admin = basalt_api::sshkey::PrivateKey::from_seed(&[7; 32], "t")
        .public()
        .to_openssh();
    let text = format!(
        "name = \"t\"\n\n[kernel]\nimage = \"vmlinuz\"\n\n[machined]\npath = \"machined\"\n\n\
         [trust]\nadmins = [\"{admin}\"]\n\n{extra}"
    );
    let env = |_: &str| None::<String>;
    let options = LoadOptions {
        env: &env,
        machined: None,
    };
    let parsed = parse(&text, &dir.join("p.toml"), &options);
    (text, parsed)
}

#[test]
fn oci_images_default_path_and_entrypoint_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pause"), b"").unwrap();
    let (_, parsed) = with_extra(
        dir.path(),
        "[[oci_images]]\nname = \"registry.k8s.io/pause:3.10.2\"\nbinary = \"pause\"\n\n\
         [[oci_images]]\nname = \"localhost/echo:1\"\nbinary = \"pause\"\npath = \"/bin/echo\"\n\
         entrypoint = [\"/bin/echo\", \"9090\"]\n",
    );
    let images = parsed.unwrap().oci_images;
    assert_eq!(images[0].binary, dir.path().join("pause"));
    assert_eq!(images[0].path, "/pause");
    assert_eq!(images[0].entrypoint, ["/pause"]);
    assert_eq!(images[1].path, "/bin/echo");
    assert_eq!(images[1].entrypoint, ["/bin/echo", "9090"]);
}

#[test]
fn bad_oci_images_point_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pause"), b"").unwrap();
    for (extra, want) in [
        (
            "[[oci_images]]\nname = \"pause:3.10.2\"\nbinary = \"pause\"\n",
            "p.toml:13:8: oci_images[0].name: `pause:3.10.2` has no registry host",
        ),
        (
            "[[oci_images]]\nname = \"registry.k8s.io/pause\"\nbinary = \"pause\"\n",
            "oci_images[0].name: `registry.k8s.io/pause` has no tag",
        ),
        (
            "[[oci_images]]\nname = \"registry.k8s.io/pause:1\"\nbinary = \"nope\"\n",
            "p.toml:14:10: oci_images[0].binary: ",
        ),
        (
            "[[oci_images]]\nname = \"registry.k8s.io/pause:1\"\nbinary = \"pause\"\npath = \"pause\"\n",
            "oci_images[0].path: expected an absolute file path",
        ),
        (
            "[[oci_images]]\nname = \"registry.k8s.io/pause:1\"\nbinary = \"pause\"\nentrypoint = []\n",
            "oci_images[0].entrypoint: expected at least the program",
        ),
        (
            "[[oci_images]]\nname = \"a.io/x:1\"\nbinary = \"pause\"\n\n\
             [[oci_images]]\nname = \"a.io/x:1\"\nbinary = \"pause\"\n",
            "oci_images[1].name: `a.io/x:1` would be archived as a.io_x_1.tar, like oci_images[0]",
        ),
        (
            "[[oci_images]]\nname = \"a.io/x:1\"\nbinary = \"pause\"\ncmd = []\n",
            "unknown field `cmd`",
        ),
    ] {
        let (_, parsed) = with_extra(dir.path(), extra);
        let e = parsed.unwrap_err().to_string();
        assert!(e.contains(want), "{extra}\n→ {e}\nwanted {want}");
    }
}
