//! The Prometheus recorder. Metric names and handles live in
//! [`crate::metrics`] (below every module that records them) and are
//! re-exported here for the paths that still name them through `admin`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::consistency;
pub use crate::metrics::*;

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

/// The metric label of a consistency level; eventual reads are not counted
/// by level, so they have none.
impl TryFrom<consistency::Level> for crate::metrics::Level {
    type Error = ();

    fn try_from(level: consistency::Level) -> Result<Self, ()> {
        match level {
            consistency::Level::Eventual => Err(()),
            consistency::Level::Session => Ok(crate::metrics::Level::Session),
            consistency::Level::Global => Ok(crate::metrics::Level::Global),
            consistency::Level::Bounded(_) => Ok(crate::metrics::Level::Bounded),
        }
    }
}
