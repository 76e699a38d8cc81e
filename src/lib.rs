//! Causeway: a MySQL-protocol read/write-splitting proxy.
//!
//! Module map and import direction: see `docs/architecture.md`. Lower
//! modules (`protocol`, `position`, `classify`) import nothing from the crate.
#![forbid(unsafe_code)]

pub mod protocol;
