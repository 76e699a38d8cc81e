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

/// Handles of the counters bumped on every statement, registered once so
/// the hot path does no registry lookup. Superseded by
/// [`crate::metrics::Handles::command`] and [`crate::metrics::Handles::route`]
/// (same series); kept while sessions still hold one.
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
