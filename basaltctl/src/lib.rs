//! basaltctl as a library: the node API client, shared with machined's
//! in-process tests so they exercise exactly what operators run.

pub mod client;
pub mod kube;
