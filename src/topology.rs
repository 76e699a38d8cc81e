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
    /// The servers it replicates from (`host:port` as its replication
    /// configuration names them, and the source's server id once known),
    /// as last accepted by the monitor.
    pub sources: Vec<Source>,
    /// What the monitor has accepted about the backend (flap damping: a
    /// change is accepted after `monitor.role_probes` agreeing checks).
    /// `None` until the first check.
    #[serde(skip)]
    pub accepted: Option<Observed>,
    /// A different observation and how many checks in a row agreed on it.
    #[serde(skip)]
    pub candidate: Option<(Observed, u32)>,
}

/// A server a backend replicates from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// `Master_Host:Master_Port`.
    pub address: String,
    /// `Master_Server_Id` (0 until the replica has connected once).
    pub server_id: u32,
}

/// One check's view of a backend, as far as roles go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub up: bool,
    /// `@@read_only` (false while down: not known).
    pub read_only: bool,
    pub sources: Vec<Source>,
}

impl Observed {
    /// Whether two checks agree: two failed checks always do.
    pub fn agrees(&self, other: &Observed) -> bool {
        if !self.up && !other.up {
            return true;
        }
        self == other
    }
}

impl BackendState {
    /// Takes one check's observation through flap damping: the accepted
    /// state changes once `needed` checks in a row agree on something new
    /// (the first check is accepted at once). Returns whether it changed.
    pub fn observe(&mut self, seen: Observed, needed: u32) -> bool {
        match &self.accepted {
            None => {
                self.accepted = Some(seen);
                self.candidate = None;
                return true;
            }
            Some(a) if a.agrees(&seen) => {
                // The same as accepted: keep details (server ids learned
                // later) without a change of state.
                self.accepted = Some(seen);
                self.candidate = None;
                return false;
            }
            Some(_) => {}
        }
        let count = match &self.candidate {
            Some((c, n)) if c.agrees(&seen) => n + 1,
            _ => 1,
        };
        if count >= needed.max(1) {
            self.accepted = Some(seen);
            self.candidate = None;
            true
        } else {
            self.candidate = Some((seen, count));
            false
        }
    }

    /// Marks the backend down at once on a statement's evidence (it
    /// stopped answering): the monitor must then see it pass its checks
    /// again before it gets traffic.
    pub fn force_down(&mut self, reason: String) {
        self.up = false;
        self.last_error = Some(reason);
        self.accepted = Some(Observed {
            up: false,
            read_only: false,
            sources: Vec::new(),
        });
        self.candidate = None;
    }

    /// Whether the accepted state says the backend takes writes.
    fn writable(&self) -> bool {
        self.accepted.as_ref().is_some_and(|a| a.up && !a.read_only)
    }
}

/// Who the primary is, as the servers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roles {
    /// Exactly one writable server that replicates from no other writable
    /// server.
    Primary(usize),
    /// No writable server (or none known yet).
    NoPrimary,
    /// More than one: writes go to none of them.
    SplitBrain(Vec<usize>),
}

/// Derives the primary from every backend's accepted state: the writable
/// servers that do not replicate from another writable server. A source is
/// matched to a backend by address, or by server id once the replica has
/// connected to it.
pub fn derive_roles(backends: &[BackendState]) -> Roles {
    let writable: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].writable())
        .collect();
    // The source's server id, as the replica last reported it.
    let source_index = |replica: &BackendState, s: &Source| {
        let id = replica
            .sources
            .iter()
            .find(|k| k.address == s.address)
            .map_or(s.server_id, |k| k.server_id);
        backends.iter().position(|b| {
            same_address(&b.address, &s.address) || (id != 0 && b.server_id == Some(id))
        })
    };
    let candidates: Vec<usize> = writable
        .iter()
        .copied()
        .filter(|&i| {
            let sources = backends[i]
                .accepted
                .as_ref()
                .map(|a| a.sources.as_slice())
                .unwrap_or_default();
            !sources
                .iter()
                .filter_map(|s| source_index(&backends[i], s))
                .any(|j| j != i && writable.contains(&j))
        })
        .collect();
    match candidates.as_slice() {
        [] => Roles::NoPrimary,
        [one] => Roles::Primary(*one),
        many => Roles::SplitBrain(many.to_vec()),
    }
}

/// `host:port` equality, with `localhost` and `127.0.0.1` the same host.
pub fn same_address(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let (h, p) = s.rsplit_once(':').unwrap_or((s, ""));
        let h = h.trim_start_matches('[').trim_end_matches(']');
        let h = if h.eq_ignore_ascii_case("localhost") || h == "::1" {
            "127.0.0.1"
        } else {
            h
        };
        (h.to_ascii_lowercase(), p.to_string())
    };
    norm(a) == norm(b)
}

/// One immutable snapshot of the cluster. Backends keep the index of their
/// place in the configuration; which one is the primary is `primary`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Topology {
    pub backends: Vec<BackendState>,
    /// The observed primary: `None` while there is none, or while more
    /// than one server takes writes (`split_brain`).
    pub primary: Option<usize>,
    /// The writable servers while more than one is (empty otherwise).
    pub split_brain: Vec<usize>,
    /// Counts changes of `primary`.
    pub role_epoch: u64,
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
            sources: Vec::new(),
            accepted: None,
            candidate: None,
        };
        // The configured primary is the first guess, until the monitor
        // has heard from the servers.
        let primary = cfg.cluster.primary.as_ref().map(|_| 0);
        let backends = cfg
            .cluster
            .backends()
            .into_iter()
            .enumerate()
            .map(|(i, (_, b))| {
                mk(
                    b,
                    if Some(i) == primary {
                        Role::Primary
                    } else {
                        Role::Replica
                    },
                )
            })
            .collect();
        Topology {
            backends,
            primary,
            split_brain: Vec::new(),
            role_epoch: 0,
            greeting_version: DEFAULT_GREETING.into(),
        }
    }

    /// Publishes the roles the backends' accepted states give. Until
    /// every backend has been checked once, a primary is only replaced by
    /// a clear one (the configured guess stands meanwhile). Returns whether
    /// the primary (or the set of servers in a split brain) changed.
    pub fn settle_roles(&mut self) -> bool {
        let all_seen = self.backends.iter().all(|b| b.accepted.is_some());
        let roles = derive_roles(&self.backends);
        let (primary, split) = match roles {
            Roles::Primary(i) => (Some(i), Vec::new()),
            Roles::NoPrimary if !all_seen => return false,
            Roles::NoPrimary => (None, Vec::new()),
            Roles::SplitBrain(v) => (None, v),
        };
        let split_changed = self.split_brain != split;
        self.split_brain = split;
        for (i, b) in self.backends.iter_mut().enumerate() {
            b.role = if Some(i) == primary {
                Role::Primary
            } else {
                Role::Replica
            };
        }
        if primary == self.primary {
            return split_changed;
        }
        self.primary = primary;
        self.role_epoch += 1;
        true
    }

    /// Whether backend `i` is the primary.
    pub fn is_primary(&self, i: usize) -> bool {
        self.primary == Some(i)
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

    pub fn primary(&self) -> Option<&BackendState> {
        self.backends.get(self.primary?)
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
            sources: Vec::new(),
            accepted: None,
            candidate: None,
        }
    }

    fn seen(up: bool, read_only: bool, sources: &[&str]) -> Observed {
        Observed {
            up,
            read_only,
            sources: sources
                .iter()
                .map(|a| Source {
                    address: a.to_string(),
                    server_id: 0,
                })
                .collect(),
        }
    }

    fn cluster(states: &[Observed]) -> Vec<BackendState> {
        states
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let mut b = state(None);
                b.address = format!("127.0.0.1:{}", 3300 + i);
                b.accepted = Some(o.clone());
                b
            })
            .collect()
    }

    #[test]
    fn the_primary_is_the_one_writable_server_no_writable_server_feeds() {
        let p = "localhost:3300";
        let normal = cluster(&[
            seen(true, false, &[]),
            seen(true, true, &[p]),
            seen(true, true, &[p]),
        ]);
        assert_eq!(derive_roles(&normal), Roles::Primary(0));
        // A replica left writable by mistake still replicates from the
        // writable primary: not a second primary.
        let sloppy = cluster(&[
            seen(true, false, &[]),
            seen(true, false, &["127.0.0.1:3300"]),
            seen(true, true, &[p]),
        ]);
        assert_eq!(derive_roles(&sloppy), Roles::Primary(0));
        // Switched over: 1 promoted, 0 read-only and re-pointed.
        let switched = cluster(&[
            seen(true, true, &["127.0.0.1:3301"]),
            seen(true, false, &[]),
            seen(true, true, &["127.0.0.1:3301"]),
        ]);
        assert_eq!(derive_roles(&switched), Roles::Primary(1));
        let none = cluster(&[
            seen(false, false, &[]),
            seen(true, true, &[p]),
            seen(true, true, &[p]),
        ]);
        assert_eq!(derive_roles(&none), Roles::NoPrimary);
        let two = cluster(&[
            seen(true, false, &[]),
            seen(true, false, &[]),
            seen(true, true, &[p]),
        ]);
        assert_eq!(derive_roles(&two), Roles::SplitBrain(vec![0, 1]));
    }

    #[test]
    fn a_change_is_accepted_after_enough_agreeing_checks() {
        let mut b = state(None);
        assert!(b.observe(seen(true, false, &[]), 3), "first check at once");
        assert!(!b.observe(seen(false, false, &[]), 3));
        assert!(!b.observe(seen(true, false, &[]), 3), "flap resets");
        assert!(!b.observe(seen(false, false, &[]), 3));
        assert!(!b.observe(seen(false, true, &[]), 3), "two downs agree");
        assert!(b.observe(seen(false, false, &[]), 3));
        assert!(!b.accepted.as_ref().unwrap().up);
        b.force_down("hung".into());
        assert!(!b.observe(seen(true, true, &[]), 2));
        assert!(b.observe(seen(true, true, &[]), 2), "back after 2 checks");
    }

    #[test]
    fn settling_keeps_the_guess_until_every_backend_was_seen() {
        let mut t = Topology {
            backends: cluster(&[seen(true, true, &[]), seen(true, true, &[])]),
            primary: Some(0),
            split_brain: Vec::new(),
            role_epoch: 0,
            greeting_version: DEFAULT_GREETING.into(),
        };
        t.backends[1].accepted = None;
        assert!(!t.settle_roles());
        assert_eq!(t.primary, Some(0));
        t.backends[1].accepted = Some(seen(true, false, &[]));
        assert!(t.settle_roles());
        assert_eq!((t.primary, t.role_epoch), (Some(1), 1));
        assert_eq!(t.backends[1].role, Role::Primary);
        t.backends[0].accepted = Some(seen(true, false, &[]));
        assert!(t.settle_roles());
        assert_eq!(t.primary, None);
        assert_eq!(t.split_brain, vec![0, 1]);
    }

    #[test]
    fn extended_capabilities_are_offered_only_as_far_as_every_backend_has_them() {
        let topo = |exts: &[Option<u32>]| Topology {
            backends: exts.iter().map(|e| state(*e)).collect(),
            primary: Some(0),
            split_brain: Vec::new(),
            role_epoch: 0,
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
