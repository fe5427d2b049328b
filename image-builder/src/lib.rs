//! Assembles reproducible Basalt node images.
//!
//! A [`profile`] names the inputs; [`assemble::build`] turns it into an output
//! directory: `vmlinuz`, `initramfs.cpio.zst` (machined as `/init`, kernel
//! modules, `/etc/basalt/*`, and the read-only root image at
//! `/basalt/root.squashfs`) and `manifest.json`, and on request the
//! bootable [`media`]: a UKI, a whole disk (`disk.raw`) and an installer ISO.
//! [`inspect`] and [`verify`] read outputs back.

pub mod assemble;
pub mod disk;
pub mod elf;
pub mod error;
pub mod esp;
pub mod expand;
pub mod hash;
pub mod initrd;
pub mod inspect;
pub mod iso;
pub mod kernel;
pub mod kmod;
pub mod lexical_path;
pub mod manifest;
pub mod media;
pub mod nix;
pub mod nix_inputs;
pub mod oci;
pub mod package;
pub mod profile;
pub mod rootfs;
pub mod shells;
pub mod tree;
pub mod uki;
pub mod verify;

pub use assemble::{BuildOptions, BuildReport, build};
pub use error::{Error, Result};
pub use profile::{LoadOptions, Profile};
