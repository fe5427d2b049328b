//! basaltctl as a library: the node API client, config generation, reads
//! of several nodes at once and support bundles, shared with machined's and
//! the QEMU tests so they exercise exactly what operators run.

pub mod client;
pub mod dashboard;
pub mod fanout;
pub mod kube;
pub mod pki;
pub mod promtext;
pub mod support;
pub mod template;
