//! Causeway: a MySQL-protocol read/write-splitting proxy.
//!
//! Modules, top to bottom; imports point down only:
//! `app` (wiring) → `session` → `admin` → `pool` → `cluster` →
//! `router` → `consistency` → `position` / `protocol` → `config` → `error`
//! (`config` reads `consistency::Level` from policy files).
//! `protocol` and `position` import nothing from the crate; `playground`
//! starts local MariaDB clusters for users and tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod classify;
pub mod cluster;
pub mod config;
pub mod consistency;
pub mod error;
pub mod playground;
pub mod pool;
pub mod position;
pub mod protocol;
pub mod router;
pub mod session;

pub use error::Error;
