//! The QEMU harness: build (or reuse) the Debian-profile node image, boot it
//! under QEMU with the API forwarded to 127.0.0.1, and talk to it only as an
//! operator would, through basaltctl's client. QEMU is always killed: on
//! success, failure or panic (Drop kills its whole process group).

pub mod accel;
pub mod cluster;
pub mod image;
pub mod kubectl;
pub mod statedisk;
pub mod vm;

use basalt_api::sshkey::PrivateKey;

/// The admin key baked into test images as a trust root. Deterministic so
/// images are reusable across runs; never used outside tests.
pub fn admin_key() -> PrivateKey {
    PrivateKey::from_seed(&[0xad; 32], "qemu-tests-admin")
}

/// A reader key, and a key nobody trusts.
pub fn reader_key() -> PrivateKey {
    PrivateKey::from_seed(&[0x3e; 32], "qemu-tests-reader")
}

pub fn stranger_key() -> PrivateKey {
    PrivateKey::from_seed(&[0x99; 32], "qemu-tests-stranger")
}
