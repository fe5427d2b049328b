//! basaltctl as a library: the node API client and config generation,
//! shared with machined's and the QEMU tests so they exercise exactly what
//! operators run.

pub mod client;
pub mod kube;
pub mod pki;
pub mod template;
