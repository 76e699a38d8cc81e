//! Metric names (documented constants; label values are fixed strings) and
//! the Prometheus recorder.

use std::sync::OnceLock;

use metrics::Counter;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Client connections accepted (counter).
pub const CLIENT_CONNECTIONS: &str = "causeway_client_connections_total";
/// Client connections open now (gauge).
pub const CLIENT_CONNECTIONS_OPEN: &str = "causeway_client_connections_open";
/// Logins refused, label `reason` (counter).
pub const LOGIN_FAILURES: &str = "causeway_login_failures_total";
/// Commands received from clients, label `command` (counter).
pub const COMMANDS: &str = "causeway_commands_total";
/// Routing decisions, labels `target` and `reason` (counter).
pub const ROUTE_DECISIONS: &str = "causeway_route_decisions_total";
/// Errors sent to clients, label `kind` (counter).
pub const CLIENT_ERRORS: &str = "causeway_client_errors_total";
/// Backend connections opened, label `backend` (counter).
pub const BACKEND_CONNECTS: &str = "causeway_backend_connects_total";
/// Backend connections lost in the middle of a reply, label `backend` (counter).
pub const BACKEND_LOST: &str = "causeway_backend_lost_total";
/// Account reloads from the primary (counter).
pub const ACCOUNT_RELOADS: &str = "causeway_account_reloads_total";

/// Replication position reads sent to each backend, label `backend` (counter).
pub const POSITION_POLLS: &str = "causeway_position_polls_total";
/// Primary position reads made because reads asked for a fresh one
/// (global level, missing write positions) (counter).
pub const POSITION_REQUESTS: &str = "causeway_position_requests_total";
/// Replica lag in seconds, labels `backend` and `source` (`positions`:
/// from the primary's position history; `seconds_behind_master`) (gauge).
pub const REPLICA_LAG: &str = "causeway_replica_lag_seconds";
/// Reads under a consistency level other than eventual, labels `level` and
/// `served` (`replica`, `replica_after_wait`, `primary`,
/// `primary_after_timeout`, `error`) (counter).
pub const CONSISTENCY_READS: &str = "causeway_consistency_reads_total";
/// Time reads spent waiting for a replica to reach their position, label
/// `level` (summary, seconds).
pub const CONSISTENCY_WAIT: &str = "causeway_consistency_wait_seconds";

/// Backend connections kept by the session-level pool now (gauge).
pub const SESSION_POOL_IDLE: &str = "causeway_session_pool_idle";
/// Sessions that took a pooled backend connection instead of opening one,
/// label `backend` (counter).
pub const SESSION_POOL_REUSES: &str = "causeway_session_pool_reuses_total";

/// Backend connections of the transaction-level pool, labels `backend` and
/// `state` (`idle`, `busy`) (gauge).
pub const TXN_POOL_CONNECTIONS: &str = "causeway_txn_pool_connections";
/// Statements that found every connection of a backend in use and queued,
/// label `backend` (counter).
pub const TXN_POOL_WAITS: &str = "causeway_txn_pool_waits_total";
/// Queued statements that gave up (ERROR 9001), label `backend` (counter).
pub const TXN_POOL_TIMEOUTS: &str = "causeway_txn_pool_timeouts_total";
/// Sessions pinned to a backend connection, label `reason` (counter).
pub const PINS: &str = "causeway_pins_total";
/// Sessions pinned now (gauge).
pub const PINNED_SESSIONS: &str = "causeway_pinned_sessions";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (the `metrics` crate
/// has one global recorder) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding
            // program; then this handle simply renders nothing of ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Handles of the counters bumped on every statement, registered once so
/// the hot path does no registry lookup.
pub struct HotCounters {
    commands: Vec<(&'static str, Counter)>,
    route: Vec<(&'static str, &'static str, Counter)>,
}

impl HotCounters {
    pub fn new(
        command_labels: &[&'static str],
        route_reasons: &[(&'static str, &'static str)],
    ) -> HotCounters {
        HotCounters {
            commands: command_labels
                .iter()
                .map(|l| (*l, metrics::counter!(COMMANDS, "command" => *l)))
                .collect(),
            route: route_reasons
                .iter()
                .map(|(t, r)| {
                    (
                        *t,
                        *r,
                        metrics::counter!(ROUTE_DECISIONS, "target" => *t, "reason" => *r),
                    )
                })
                .collect(),
        }
    }

    pub fn command(&self, label: &'static str) {
        match self.commands.iter().find(|(l, _)| *l == label) {
            Some((_, c)) => c.increment(1),
            None => metrics::counter!(COMMANDS, "command" => label).increment(1),
        }
    }

    pub fn route(&self, target: &'static str, reason: &'static str) {
        match self
            .route
            .iter()
            .find(|(t, r, _)| *r == reason && *t == target)
        {
            Some((_, _, c)) => c.increment(1),
            None => metrics::counter!(ROUTE_DECISIONS, "target" => target, "reason" => reason)
                .increment(1),
        }
    }
}
