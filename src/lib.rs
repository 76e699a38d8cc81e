//! Causeway: a MySQL-protocol read/write-splitting proxy.
//!
//! Modules, top to bottom; a module imports only modules after it in this
//! list (`tests/layers.rs` reads the list below and checks every
//! `crate::` path in `src/` against it):
//!
//! layers: app, session, admin, cluster, pool, router, topology, config, consistency, error, playground, classify, position, protocol, metrics
//!
//! - `app` wires everything; `session` runs one client connection;
//! - `admin` serves `/metrics` and `/status` (reads `cluster`);
//! - `cluster` runs the monitor (its connections come from `pool`) and
//!   publishes the `topology` snapshot the `router` decides on;
//! - `config` reads `consistency::Level` from policy files; `error` maps
//!   errors to ERR packets (`protocol`);
//! - `playground` starts local MariaDB clusters for users and tests;
//! - `classify`, `position`, `protocol` and `metrics` (metric names and
//!   handles registered once) import nothing from the crate.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod classify;
pub mod cluster;
pub mod config;
pub mod consistency;
pub mod error;
pub mod metrics;
pub mod playground;
pub mod pool;
pub mod position;
pub mod protocol;
pub mod router;
pub mod session;
pub mod topology;

pub use error::Error;
