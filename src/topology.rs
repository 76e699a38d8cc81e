//! The plain data the monitor publishes: what is known about each backend,
//! as one immutable [`Topology`] snapshot. No I/O and no behaviour beyond
//! lookups, so the router can decide on it without knowing the monitor.
//!
//! May import `config`; never `cluster`, `router` or anything above.

use crate::config::{BackendConfig, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
}

/// What the monitor last learned about one backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendState {
    pub name: String,
    pub address: String,
    pub role: Role,
    pub up: bool,
    pub read_only: Option<bool>,
    pub server_id: Option<u32>,
    /// `@@version`.
    pub version: Option<String>,
    pub last_error: Option<String>,
    /// Replicas: `Seconds_Behind_Master` (None while not replicating).
    pub lag_s: Option<u64>,
    /// Replicas: both replication threads running.
    pub replicating: Option<bool>,
    /// Seconds since the epoch of the last check.
    pub checked_at: Option<f64>,
    pub consecutive_failures: u32,
}

/// One immutable snapshot of the cluster. `backends[0]` is the primary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Topology {
    pub backends: Vec<BackendState>,
    /// The version string the primary greets with; Causeway greets clients
    /// with it so they enable the right features.
    pub greeting_version: String,
}

impl Topology {
    /// Every configured backend, none checked yet.
    pub fn from_config(cfg: &Config) -> Topology {
        let mk = |b: &BackendConfig, role| BackendState {
            name: b.name.clone(),
            address: b.address.clone(),
            role,
            up: false,
            read_only: None,
            server_id: None,
            version: None,
            last_error: None,
            lag_s: None,
            replicating: None,
            checked_at: None,
            consecutive_failures: 0,
        };
        let mut backends = vec![mk(&cfg.cluster.primary, Role::Primary)];
        backends.extend(cfg.cluster.replicas.iter().map(|r| mk(r, Role::Replica)));
        Topology {
            backends,
            greeting_version: DEFAULT_GREETING.into(),
        }
    }

    pub fn primary(&self) -> &BackendState {
        &self.backends[0]
    }

    /// Index of the backend called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

/// Used until the primary has been reached once.
const DEFAULT_GREETING: &str = "5.5.5-10.11.0-MariaDB-causeway";
