//! Metric names (documented constants; label values are fixed strings) and
//! the Prometheus recorder.

use std::sync::OnceLock;

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
