//! The packaged containerd 2 supervised as machined runs it: ready once
//! `ctr version` answers on its socket, and restarted after it is killed.

// A test may unwrap: a failure is the test failing (machined/Cargo.toml
// denies it in PID 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod packaged;

use machined::containerd;
use machined::supervisor::{Supervisor, SupervisorConfig, init_reaper, spawn_reaped};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Everything found by running a command, found before the reaper is
/// installed: once it owns waitpid(-1), a plain `Command::output` (as the
/// package-cache lookup runs `go env`) would lose its child's exit. The
/// tests of this binary run in parallel, so both go through here first.
struct Found {
    containerd: tempfile::TempDir,
    pause: PathBuf,
    echo: PathBuf,
}

fn found() -> &'static Found {
    static FOUND: OnceLock<Found> = OnceLock::new();
    FOUND.get_or_init(|| Found {
        containerd: packaged::containerd_bin_dir(),
        pause: packaged::static_binary("pause"),
        echo: packaged::static_binary("echo"),
    })
}

#[test]
fn supervised_containerd_answers_and_is_restarted_after_a_kill() {
    let bins = &found().containerd;
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join(containerd::CONFIG.trim_start_matches('/'));
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, containerd::config(t.path())).unwrap();
    let sock = t.path().join(containerd::SOCKET.trim_start_matches('/'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        init_reaper().unwrap();
        let sup = Supervisor::new(SupervisorConfig::default()).unwrap();
        sup.start(vec![containerd::service(t.path(), bins.path())])
            .unwrap();
        sup.wait_ready("containerd", Duration::from_secs(60))
            .await
            .unwrap();
        let version = |sock: &std::path::Path| {
            // Through the supervisor's reaper: it owns waitpid(-1).
            let mut cmd = Command::new(bins.path().join("ctr"));
            cmd.args(["--address", sock.to_str().unwrap(), "version"]);
            cmd.stdout(std::process::Stdio::piped());
            spawn_reaped(&mut cmd).unwrap()
        };
        let (mut child, exit) = version(&sock);
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(exit.await.unwrap().success());
        assert!(out.contains("Server:") && out.contains("v2.4.2"), "{out}");

        let first = sup.status("containerd").unwrap().pid.unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(first as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = sup.status("containerd").unwrap();
            if s.restarts >= 1 && s.ready && s.pid.is_some_and(|p| p != first) {
                break;
            }
            assert!(Instant::now() < deadline, "containerd not restarted: {s:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sup.stop_all().await;
    });
}

/// `ctr args` through the reaper (this binary installed it); its stdout.
async fn ctr(bins: &std::path::Path, sock: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(bins.join("ctr"));
    cmd.arg("--address").arg(sock).args(args);
    cmd.stdout(std::process::Stdio::piped());
    let (mut child, exit) = spawn_reaped(&mut cmd).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    (exit.await.unwrap().success(), out)
}

fn bake(dir: &std::path::Path, name: &str, binary: &str) {
    let path = match binary {
        "pause" => &found().pause,
        _ => &found().echo,
    };
    let image = image_builder::oci::OciImage {
        name: name.into(),
        binary: path.clone(),
        path: format!("/{binary}"),
        entrypoint: vec![format!("/{binary}")],
        origin: "test".into(),
    };
    let out = dir.join(image_builder::oci::file_name(name));
    image_builder::oci::write(&image, 1_700_000_000, &out).unwrap();
}

/// What machined does at boot: once containerd is ready, every baked
/// archive is imported into k8s.io; again after a containerd restart, with
/// the same result; a broken archive is reported, the others still land.
#[test]
fn baked_archives_are_imported_once_containerd_is_ready() {
    use machined::controllers::images::{ImageImporter, ImagesController, ImportState};
    use machined::controllers::resources::ResourceState;
    const ECHO: &str = "registry.basalt.test/echo:1";
    let bins = &found().containerd;
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join(containerd::CONFIG.trim_start_matches('/'));
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, containerd::config(t.path())).unwrap();
    let sock = t.path().join(containerd::SOCKET.trim_start_matches('/'));
    let images = t
        .path()
        .join(basalt_api::image_layout::OCI_IMAGES_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&images).unwrap();
    bake(&images, containerd::PAUSE_IMAGE, "pause");
    bake(&images, ECHO, "echo");
    let importer = ImageImporter {
        host: machined::host::Host::dev(t.path()),
        dir: basalt_api::image_layout::OCI_IMAGES_DIR.into(),
        ctr: bins.path().join("ctr"),
        socket: sock.clone(),
        namespace: containerd::K8S_NAMESPACE.into(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        init_reaper().unwrap();
        let sup = Supervisor::new(SupervisorConfig::default()).unwrap();
        sup.start(vec![containerd::service(t.path(), bins.path())])
            .unwrap();
        // Started before containerd is ready: the controller waits for it.
        let controller =
            ImagesController::with_retries(Some(importer.clone()), 2, Duration::from_millis(200));
        let started = Instant::now();
        controller.run(&sup).await;
        eprintln!("imported 2 archives in {:?}", started.elapsed());
        let state = controller.state();
        assert_eq!(state.len(), 2, "{state:?}");
        assert!(
            state.values().all(|s| *s == ImportState::Imported),
            "{state:?}"
        );
        let listed = |out: &str| {
            let mut names: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
            names.sort();
            names
        };
        let (ok, first) = ctr(bins.path(), &sock, &["-n", "k8s.io", "images", "ls"]).await;
        assert!(ok);
        let (_, names) = ctr(bins.path(), &sock, &["-n", "k8s.io", "images", "ls", "-q"]).await;
        let names = listed(&names);
        // The CRI plugin indexed both too: it adds an image-id reference
        // (`sha256:<config digest>`) for each image it sees.
        let (ids, names): (Vec<_>, Vec<_>) = names.iter().partition(|n| n.starts_with("sha256:"));
        assert_eq!(names, [ECHO, containerd::PAUSE_IMAGE]);
        assert_eq!(ids.len(), 2, "{ids:?}");
        let resources = controller.resources();
        assert!(resources.iter().all(|r| r.in_sync), "{resources:?}");
        assert!(matches!(
            &resources[0].state,
            ResourceState::BakedImage {
                imported: true,
                error: None,
                ..
            }
        ));

        // containerd restarted (killed): importing again changes nothing.
        let pid = sup.status("containerd").unwrap().pid.unwrap();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while sup
            .status("containerd")
            .unwrap()
            .pid
            .is_none_or(|p| p == pid)
        {
            assert!(Instant::now() < deadline, "containerd not restarted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let again =
            ImagesController::with_retries(Some(importer.clone()), 2, Duration::from_millis(200));
        again.run(&sup).await;
        assert!(again.state().values().all(|s| *s == ImportState::Imported));
        let (_, second) = ctr(bins.path(), &sock, &["-n", "k8s.io", "images", "ls"]).await;
        // Same names, digests and sizes (the CREATED column aside).
        let columns = |out: &str| -> Vec<String> {
            out.lines()
                .map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    format!("{} {}", f[0], f.get(2).unwrap_or(&""))
                })
                .collect()
        };
        assert_eq!(columns(&first), columns(&second), "{first}\n{second}");

        // A broken archive fails with ctr's reason; the good ones still land.
        std::fs::write(images.join("broken.tar"), b"not a tar at all").unwrap();
        let broken = ImagesController::with_retries(Some(importer), 2, Duration::from_millis(200));
        broken.run(&sup).await;
        let state = broken.state();
        match &state[&images.join("broken.tar")] {
            ImportState::Failed(e) => {
                assert!(
                    e.contains("broken.tar") && e.contains("ctr images import"),
                    "{e}"
                )
            }
            other => panic!("broken.tar: {other:?}"),
        }
        assert_eq!(
            state
                .values()
                .filter(|s| **s == ImportState::Imported)
                .count(),
            2,
            "{state:?}"
        );
        let bad = broken
            .resources()
            .into_iter()
            .find(|r| r.id == "broken.tar")
            .unwrap();
        assert!(!bad.in_sync);
        eprintln!("broken archive reported as: {:?}", bad.state);
        sup.stop_all().await;
    });
}
