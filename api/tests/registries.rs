//! `machine.registries`: mirrors per upstream host, strictly checked, each
//! error at its TOML path and line.

mod cases;

use basalt_api::config::MachineConfig;
use cases::worker;

fn with(section: &str) -> String {
    format!("{}\n{section}", worker())
}

#[test]
fn mirrors_parse_per_upstream_host() {
    let doc = with(
        "[machine.registries.mirrors.\"docker.io\"]\n\
         endpoints = [\"http://10.0.2.2:5000\", \"https://mirror.example.org/v2-cache\"]\n\
         skip_verify = true\n\
         ca = \"\"\"\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\"\"\"\n\n\
         [machine.registries.mirrors._default]\n\
         endpoints = [\"http://registry.internal:5000\"]\n",
    );
    let c = MachineConfig::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{}", e.render("w")));
    let m = &c.machine.registries.mirrors;
    assert_eq!(m.len(), 2);
    assert_eq!(m["docker.io"].endpoints[0], "http://10.0.2.2:5000");
    assert!(m["docker.io"].skip_verify);
    assert!(m["docker.io"].ca.as_ref().unwrap().contains("MIIB"));
    assert!(!m["_default"].skip_verify && m["_default"].ca.is_none());
    // No section: no mirrors.
    let plain = MachineConfig::parse(worker().as_bytes()).unwrap();
    assert!(plain.machine.registries.mirrors.is_empty());
}

#[test]
fn bad_mirrors_are_rejected_with_path_and_line() {
    for (section, path, message, line_text) in [
        (
            "[machine.registries.mirrors.\"docker io\"]\nendpoints = [\"http://a:1\"]\n",
            "machine.registries.mirrors.\"docker io\"",
            "is not a registry host",
            "docker io",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = []\n",
            "machine.registries.mirrors.\"docker.io\".endpoints",
            "list at least one mirror",
            "endpoints = []",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://ok:5000\", \"10.0.2.2:5000\"]\n",
            "machine.registries.mirrors.\"docker.io\".endpoints[1]",
            "must start with http:// or https://",
            "10.0.2.2:5000",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://a:99999\"]\n",
            "machine.registries.mirrors.\"docker.io\".endpoints[0]",
            "is not a host name or IPv4 address",
            "a:99999",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://a/x\\\"y\"]\n",
            "machine.registries.mirrors.\"docker.io\".endpoints[0]",
            "the path may hold only",
            "http://a/x",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"https://a\"]\nca = \"not pem\"\n",
            "machine.registries.mirrors.\"docker.io\".ca",
            "expected PEM certificates",
            "not pem",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://a\"]\nca = \"-----BEGIN CERTIFICATE-----\\nx\\n-----END CERTIFICATE-----\"\n",
            "machine.registries.mirrors.\"docker.io\".ca",
            "no https:// endpoint would use this CA",
            "ca = ",
        ),
        (
            "[machine.registries.mirrors.\"docker.io\"]\nendpoints = [\"http://a\"]\nskip_tls = true\n",
            "machine.registries.mirrors.\"docker.io\"",
            "unknown key; expected one of `endpoints`, `skip_verify`, `ca`",
            "skip_tls",
        ),
        (
            "[machine.registries]\nmirror = {}\n",
            "machine.registries",
            "unknown key",
            "mirror = ",
        ),
    ] {
        let doc = with(section);
        let errs = MachineConfig::parse(doc.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{section}"));
        let hit = errs
            .0
            .iter()
            .find(|e| e.path.to_string().starts_with(path) && e.message.contains(message))
            .unwrap_or_else(|| {
                panic!(
                    "{section}\nwanted {path}: …{message}…, got:\n{}",
                    errs.render("w")
                )
            });
        let line = doc.lines().position(|l| l.contains(line_text)).unwrap() + 1;
        assert_eq!(hit.line, line, "{section}\n{}", errs.render("w"));
    }
}

/// Registry credentials go into CRI drop-ins through `machine.files`; the
/// node must know them as secrets (containerd prints its CRI config).
#[test]
fn registry_credentials_in_cri_drop_ins_are_found() {
    let file = |path: &str, content: &str| {
        format!("[[machine.files]]\npath = \"{path}\"\ncontent = '''\n{content}'''\n")
    };
    let auth = "[plugins.\"io.containerd.cri.v1.images\".registry.configs.\"r.example.org\".auth]\n\
                username = \"bot\"\npassword = \"hunter2-registry\"\n\
                [plugins.\"io.containerd.grpc.v1.cri\".registry.auths.\"https://gcr.io\"]\n\
                identitytoken = \"gcr-identity-token\"\n";
    let doc = format!(
        "{}\n{}{}{}",
        worker(),
        file("/etc/cri/conf.d/20-auth.toml", auth),
        file("/etc/cri/conf.d/30-not-toml.toml", "password = \n"),
        file("/var/lib/app/password.toml", "password = \"elsewhere\"\n"),
    );
    let c = MachineConfig::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{}", e.render("w")));
    let mut found = c.registry_credentials();
    found.sort();
    assert_eq!(found, ["bot", "gcr-identity-token", "hunter2-registry"]);
}
