//! Backend connections: connect and log in ([`conn`]), and the pools of
//! them ([`lease`]: per-backend fair queues, idle connections with the
//! state each was brought to, [`applied`]). The session-level pool (a
//! session keeps its connections until it ends) and the transaction-level
//! pool (one statement or transaction) are both a [`Pool`].
//!
//! May import what is below it in `src/lib.rs`'s order (`consistency` for
//! server flavours, `config`, `error`, `protocol`, `metrics`); never
//! `cluster` (the monitor's connections come from here), `admin` or
//! `session`.

pub mod applied;
pub mod conn;
pub mod lease;

pub use applied::{same_vars, Applied, Vars};
pub use conn::{BackendConn, ConnectParams};
pub use lease::{GroupKey, Lease, Pool};
