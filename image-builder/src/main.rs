//! `image-builder`: build, inspect and verify Basalt node images.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use image_builder::assemble::{BuildOptions, DEFAULT_SOURCE_DATE_EPOCH};
use image_builder::inspect::ImageFormat;
use image_builder::profile::{self, LoadOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Build, inspect and verify reproducible Basalt node images.
///
/// Logs go to stderr; set RUST_LOG (e.g. `RUST_LOG=image_builder=debug`) for more.
#[derive(Parser)]
#[command(name = "image-builder", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the image a profile describes into an output directory.
    ///
    /// Writes vmlinuz, initramfs.cpio.zst (or .gz / plain, per the profile) and
    /// manifest.json. The build happens in a staging directory next to --out
    /// that is renamed into place at the end; a failed build leaves nothing.
    Build {
        /// The image profile (TOML), e.g. configs/images/debian.toml.
        #[arg(long, short)]
        profile: PathBuf,
        /// Output directory. Replaced if it holds a previous build.
        #[arg(long, short)]
        out: PathBuf,
        /// Clamp every timestamp to this (seconds since 1970). Defaults to
        /// $SOURCE_DATE_EPOCH, else 1.
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = DEFAULT_SOURCE_DATE_EPOCH)]
        source_date_epoch: u32,
        /// Use this machined binary as /init instead of the profile's
        /// `machined.path`.
        #[arg(long)]
        machined: Option<PathBuf>,
    },
    /// List an initramfs or a root image (squashfs) with each file's sha256.
    Inspect {
        /// initramfs.cpio[.zst|.gz] or root.squashfs.
        file: PathBuf,
        /// Print JSON records (the manifest's format) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Build upstream Go components from their pins in packages/ (or find
    /// them in the cache) and print where each landed.
    ///
    /// Each component folder holds go.mod, go.sum (the lock) and
    /// package.toml (the recipe). The cache key is the Go toolchain + go.mod
    /// + go.sum + recipe, so an unchanged component is a lookup.
    Package {
        /// Component names (folders under --packages); all when none given.
        names: Vec<String>,
        /// The folder holding one directory per component.
        #[arg(long, default_value = "packages")]
        packages: PathBuf,
        /// Where built components are kept. Defaults to
        /// $BASALT_PACKAGE_CACHE, else ~/.cache/basalt/packages.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Print each component's build record (JSON) instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Check a build directory against its manifest.json.
    ///
    /// Compares every output's sha256 and size, and every file inside the
    /// initramfs and its root image. Exits 1 listing each mismatch.
    Verify {
        /// A directory written by `image-builder build`.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("image_builder=info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: piped into a log file or
        // CI, escape codes are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Build {
            profile,
            out,
            source_date_epoch,
            machined,
        } => {
            let options = LoadOptions {
                env: &profile::process_env,
                machined,
            };
            let loaded = profile::load(&profile, &options)?;
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            });
            let on_step = |s: &str| {
                if let Some(b) = &bar {
                    b.set_message(s.to_string());
                }
            };
            let report = image_builder::build(
                &loaded,
                &out,
                &BuildOptions {
                    source_date_epoch,
                    on_step: Some(&on_step),
                },
            )
            .with_context(|| format!("building {}", profile.display()))?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            for o in &report.manifest.outputs {
                println!(
                    "{}  {:>12}  {}",
                    o.sha256,
                    o.size,
                    out.join(&o.name).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { file, json } => {
            let (format, records) = image_builder::inspect::inspect(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                let what = match format {
                    ImageFormat::Initramfs => "initramfs",
                    ImageFormat::Squashfs => "squashfs",
                };
                println!("# {} ({what}, {} entries)", file.display(), records.len());
                for r in &records {
                    println!("{}", r.line());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Package {
            names,
            packages,
            cache,
            json,
        } => build_packages(&names, &packages, cache, json),
        Command::Verify { dir } => {
            if !dir.is_dir() {
                bail!("{}: not a directory", dir.display());
            }
            let problems = image_builder::verify::verify(&dir)?;
            if problems.is_empty() {
                println!("{}: OK", dir.display());
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("MISMATCH {p}");
                }
                eprintln!("{}: {} mismatch(es)", dir.display(), problems.len());
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn build_packages(
    names: &[String],
    packages_dir: &std::path::Path,
    cache: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    use image_builder::package;
    let all = package::list(packages_dir)?;
    let chosen: Vec<&package::Recipe> = if names.is_empty() {
        all.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                all.iter().find(|r| &r.name == n).with_context(|| {
                    let known: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
                    format!(
                        "no component `{n}` in {} (known: {})",
                        packages_dir.display(),
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    let opts = package::BuildOptions {
        cache_dir: cache.unwrap_or_else(package::BuildOptions::default_cache_dir),
        go_cache: None,
        progress: std::io::stderr().is_terminal(),
    };
    for recipe in chosen {
        let started = std::time::Instant::now();
        let built = package::build(recipe, &opts)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&built.record)?);
        } else {
            println!(
                "{} {} {} ({:.1}s{})",
                built.record.component,
                built.record.version,
                built.dir.display(),
                started.elapsed().as_secs_f64(),
                if built.cached { ", cached" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
