//! The Go toolchain (and, for cgo, the C compiler) a package is built with.
//! Its identity is part of every cache key.

use super::PackageError;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Toolchain {
    go: PathBuf,
    /// `go1.26.8`.
    pub version: String,
    /// GOOS/GOARCH/GOAMD64 and, with cgo, the C compiler's version line.
    target: String,
}

impl Toolchain {
    /// `$BASALT_GO`, else `go` on PATH, else `/usr/local/go/bin/go`.
    pub fn detect(cgo: bool) -> Result<Toolchain, PackageError> {
        let go = std::env::var_os("BASALT_GO")
            .map(PathBuf::from)
            .or_else(|| which("go"))
            .unwrap_or_else(|| PathBuf::from("/usr/local/go/bin/go"));
        let mut t = Toolchain {
            go,
            version: String::new(),
            target: String::new(),
        };
        let env = t.run_in(
            Path::new("."),
            &["env", "GOVERSION", "GOOS", "GOARCH", "GOAMD64", "CC"],
        )?;
        let lines: Vec<&str> = env.lines().collect();
        let [version, goos, goarch, goamd64, cc] = lines[..] else {
            return Err(PackageError::Toolchain(format!(
                "`go env` printed {} lines, expected 5",
                lines.len()
            )));
        };
        t.version = version.to_owned();
        t.target = format!("{goos}/{goarch}/{goamd64}");
        if cgo {
            let out = Command::new(cc)
                .arg("--version")
                .output()
                .map_err(|e| PackageError::Toolchain(format!("run {cc} --version: {e}")))?;
            let first = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            t.target.push_str(&format!(" cc={first}"));
        }
        Ok(t)
    }

    /// What the cache key records of the toolchain.
    pub fn identity(&self) -> String {
        format!("{} {}", self.version, self.target)
    }

    /// `go` with the environment every Basalt build uses: this toolchain and
    /// no other (`GOTOOLCHAIN=local`), no user go.env or workspace, the lock
    /// read-only, paths and VCS state kept out of the binary.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.go);
        cmd.env("GOTOOLCHAIN", "local")
            .env("GOENV", "off")
            .env("GOWORK", "off")
            .env("GOFLAGS", "-mod=readonly -trimpath -buildvcs=false")
            .env("GOOS", "linux")
            .env("GOARCH", "amd64")
            .env("GOAMD64", "v1")
            .env_remove("GOEXPERIMENT")
            .env_remove("CGO_CFLAGS")
            .env_remove("CGO_LDFLAGS");
        cmd
    }

    /// Run a quick go subcommand in `dir` and return its stdout.
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Result<String, PackageError> {
        let out = self
            .command()
            .current_dir(dir)
            .args(args)
            .output()
            .map_err(|e| {
                PackageError::Toolchain(format!(
                    "run {} (set BASALT_GO or put Go on PATH): {e}",
                    self.go.display()
                ))
            })?;
        if !out.status.success() {
            return Err(PackageError::Toolchain(format!(
                "go {} in {}: {}",
                args.join(" "),
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        String::from_utf8(out.stdout).map_err(|_| {
            PackageError::Toolchain(format!("go {}: output is not UTF-8", args.join(" ")))
        })
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}
