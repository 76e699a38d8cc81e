//! Backend connections: connect and log in ([`conn`]). The session-level
//! and transaction-level pools build on this.
//!
//! May import `protocol`, `consistency` (server flavours), `config`, `error`; never `session`.

pub mod conn;
pub mod txn_pool;

pub use conn::{BackendConn, ConnectParams};
pub use txn_pool::TxnPool;
