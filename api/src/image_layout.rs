//! The contract between an image and its PID 1: where image-builder puts
//! what machined reads. Both sides name these paths only through this module,
//! so the two can never disagree about where a file lives.

/// machined itself, the initramfs' PID 1.
pub const INIT: &str = "/init";

/// The image's trust roots, a [`crate::trust::TrustTable`] in TOML
/// (read with [`crate::trust::TrustRoots::from_toml`]).
pub const TRUST_ROOTS: &str = "/etc/basalt/trust.toml";

/// The image's floor for configs, a [`crate::scope::ImagePolicy`] in TOML:
/// the lowest generation it accepts and its build time.
pub const IMAGE_POLICY: &str = "/etc/basalt/image-policy.toml";

/// An optional config baked into the image, applied at first boot.
pub const BAKED_CONFIG: &str = "/etc/basalt/config.toml";

/// The baked config's detached SSHSIG signatures.
pub const BAKED_CONFIG_SIGNATURES: &str = "/etc/basalt/config.toml.sig";

/// Kernel modules to load at boot: one absolute `.ko` path a line,
/// dependencies first.
pub const MODULES_LIST: &str = "/etc/basalt/modules.load";

/// Where modules live in the initramfs: under the merged-/usr path, so a
/// `/lib` → `usr/lib` symlink (brought by a dynamic `/init`) never collides
/// with them.
pub const MODULES_ROOT: &str = "/usr/lib/modules";

/// File name of the read-only root image (also an output artifact).
pub const ROOT_IMAGE_NAME: &str = "root.squashfs";

/// The read-only root image inside the initramfs, which machined mounts and
/// switches into (overridable with `basalt.root=`).
pub const ROOT_IMAGE: &str = "/basalt/root.squashfs";

/// The installer's payload, only in the ISO's initramfs: the first bytes of
/// `disk.raw` up to root slot A (protective MBR, primary GPT, the ESP with
/// systemd-boot and the disk's UKI), zstd-compressed. machined writes it to
/// the install disk, then the root image ([`ROOT_IMAGE`]) into slot A, then
/// the backup GPT at the end of that disk (see [`crate::disk_layout`]).
pub const INSTALL_DISK_HEAD: &str = "/basalt/install/disk-head.img.zst";

/// OCI image-layout archives baked into the root image (the pause image,
/// test workloads), one `<reference with [^A-Za-z0-9._-] as _>.tar` each;
/// machined imports every one into containerd's `k8s.io` namespace at boot.
pub const OCI_IMAGES_DIR: &str = "/usr/share/basalt/images";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_image_is_named_by_its_file_name() {
        assert!(ROOT_IMAGE.ends_with(&format!("/{ROOT_IMAGE_NAME}")));
        assert!(BAKED_CONFIG_SIGNATURES.starts_with(BAKED_CONFIG));
    }
}
