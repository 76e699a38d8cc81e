//! The admin side: metric names and the recorder, the HTTP endpoint.
//! In-band admin statements (SHOW PROCESSLIST, EXPLAIN ROUTE) come with the
//! router.
//!
//! May import `cluster`, `config`, `error`; never `session`.

pub mod http;
pub mod metrics;
