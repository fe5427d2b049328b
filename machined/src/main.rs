//! The machined binary: PID 1 on a node, or `--dev-root DIR` for development.

use machined::devmode::{self, DevOptions};
use machined::server::Limits;
use std::net::SocketAddr;
use std::path::PathBuf;

fn usage() -> ! {
    eprintln!(
        "usage: machined --dev-root DIR [--listen ADDR:PORT]\n       (as PID 1 on a node: no arguments)"
    );
    std::process::exit(2)
}

fn main() {
    if std::process::id() == 1 {
        // PID 1 sets up its own console/kmsg logging after mounting /dev.
        machined::pid1::run()
    }
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut dev_root: Option<PathBuf> = None;
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], basalt_api::request::API_PORT));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dev-root" => dev_root = args.next().map(PathBuf::from),
            "--listen" => match args.next().and_then(|s| s.parse().ok()) {
                Some(l) => listen = l,
                None => usage(),
            },
            "--help" | "-h" => usage(),
            _ => usage(),
        }
    }
    let Some(root) = dev_root else {
        if std::process::id() == 1 {
            machined::pid1::run()
        }
        eprintln!("machined: not PID 1; for development use --dev-root DIR");
        std::process::exit(2)
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("machined: starting the runtime: {e}");
            std::process::exit(1)
        }
    };
    let result = rt.block_on(async move {
        let mut node = devmode::start(DevOptions {
            root,
            listen,
            limits: Limits::default(),
            services: Vec::new(),
        })
        .await?;
        println!(
            "machined (dev) API https://{} fingerprint {}",
            node.addr, node.fingerprint
        );
        tokio::select! {
            ev = node.power.recv() => tracing::info!("power event {ev:?}: exiting dev node"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        }
        anyhow::Ok(())
    });
    if let Err(e) = result {
        eprintln!("machined: {e:#}");
        std::process::exit(1)
    }
}
