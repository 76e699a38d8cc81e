//! The admin side: the Prometheus recorder and the HTTP endpoint (metric
//! names and handles live in `crate::metrics`, below every recorder).
//! In-band admin statements (SHOW PROCESSLIST, EXPLAIN ROUTE) come with the
//! router.
//!
//! May import `cluster` and what is below it; never `session` or `app`.

pub mod http;
pub mod metrics;
