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
    /// The MariaDB extended capabilities its greeting offers.
    pub ext_capabilities: Option<u32>,
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
            ext_capabilities: None,
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

    /// The MariaDB extended capabilities every backend offers: what
    /// Causeway may offer its clients, so that any backend can serve them.
    /// None until every backend has greeted the monitor once (a client that
    /// negotiated one would otherwise meet a backend without it).
    pub fn ext_offers(&self) -> u32 {
        self.backends
            .iter()
            .try_fold(u32::MAX, |acc, b| b.ext_capabilities.map(|e| acc & e))
            .filter(|_| !self.backends.is_empty())
            .unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ext: Option<u32>) -> BackendState {
        BackendState {
            name: "b".into(),
            address: "127.0.0.1:1".into(),
            role: Role::Replica,
            up: true,
            read_only: None,
            server_id: None,
            version: None,
            ext_capabilities: ext,
            last_error: None,
            lag_s: None,
            replicating: None,
            checked_at: None,
            consecutive_failures: 0,
        }
    }

    #[test]
    fn extended_capabilities_are_offered_only_as_far_as_every_backend_has_them() {
        let topo = |exts: &[Option<u32>]| Topology {
            backends: exts.iter().map(|e| state(*e)).collect(),
            greeting_version: DEFAULT_GREETING.into(),
        };
        assert_eq!(topo(&[Some(0x1D), Some(0x0C)]).ext_offers(), 0x0C);
        assert_eq!(
            topo(&[Some(0x1D), None]).ext_offers(),
            0,
            "one not greeted yet"
        );
        assert_eq!(topo(&[Some(0x1D), Some(0)]).ext_offers(), 0);
        assert_eq!(topo(&[]).ext_offers(), 0);
    }
}
