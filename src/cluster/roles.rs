//! Who the primary is, as the cluster's servers say, and what depends on
//! it: statements for the primary wait while there is none (or while a
//! switchover holds writes), and are refused while more than one server
//! takes writes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::Cluster;
use crate::error::Error;
use crate::metrics as m;

/// What sessions wait on while there is no primary to send to.
pub(super) struct WriteGate {
    /// Holds in force (a switchover in progress).
    held: AtomicU32,
    /// Per backend: sessions using it as the primary (a command on its way
    /// there, or a transaction open there). A hold lets these finish and
    /// admits no new one; a switchover waits for them to reach zero.
    users: Box<[AtomicU64]>,
    /// Woken at every change of roles and every release of a hold.
    changed: Notify,
    /// Since when more than one server takes writes.
    split_since: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl WriteGate {
    pub(super) fn new(backends: usize) -> WriteGate {
        WriteGate {
            held: AtomicU32::new(0),
            users: (0..backends).map(|_| AtomicU64::new(0)).collect(),
            changed: Notify::new(),
            split_since: std::sync::Mutex::new(None),
        }
    }
}

/// A session's use of a backend as the primary, counted while it lives
/// (see [`Cluster::try_use_primary`]).
pub struct PrimaryUse {
    cluster: Arc<Cluster>,
    index: usize,
}

impl PrimaryUse {
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for PrimaryUse {
    fn drop(&mut self) {
        if let Some(u) = self.cluster.gate.users.get(self.index) {
            u.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Keeps new statements for the primary waiting until dropped (see
/// [`Cluster::hold_writes`]).
pub struct WriteHold<'a> {
    cluster: &'a Cluster,
}

impl Drop for WriteHold<'_> {
    fn drop(&mut self) {
        self.cluster.gate.held.fetch_sub(1, Ordering::SeqCst);
        self.cluster.gate.changed.notify_waiters();
    }
}

impl Cluster {
    /// Called by the monitor when the observed primary changed.
    pub(super) fn roles_changed(&self, primary: Option<usize>, split: &[usize], epoch: u64) {
        let topo = self.topology();
        let name = |i: usize| {
            topo.backends
                .get(i)
                .map_or_else(|| format!("#{i}"), |b| b.name.clone())
        };
        self.positions.set_primary(primary);
        {
            let mut since = self
                .gate
                .split_since
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *since = match (*since, split.is_empty()) {
                (_, true) => None,
                (Some(t), false) => Some(t),
                (None, false) => Some(tokio::time::Instant::now()),
            };
        }
        self.role_epoch.store(epoch, Ordering::SeqCst);
        metrics::counter!(m::ROLE_CHANGES).increment(1);
        metrics::gauge!(m::PRIMARY_KNOWN).set(primary.is_some() as u8 as f64);
        metrics::gauge!(m::SPLIT_BRAIN).set(!split.is_empty() as u8 as f64);
        match primary {
            Some(p) => tracing::warn!(primary = %name(p), epoch, "the primary is now {}", name(p)),
            None if !split.is_empty() => {
                let names: Vec<String> = split.iter().map(|&i| name(i)).collect();
                tracing::error!(writable = ?names, epoch,
                    "split brain: more than one server takes writes; writes are refused until one remains")
            }
            None => tracing::warn!(epoch, "the cluster has no primary; writes wait for one"),
        }
        self.gate.changed.notify_waiters();
    }

    /// Holds new statements for the primary (they wait, as while there is
    /// no primary) until the returned guard drops.
    pub fn hold_writes(&self) -> WriteHold<'_> {
        self.gate.held.fetch_add(1, Ordering::SeqCst);
        WriteHold { cluster: self }
    }

    /// Counts changes of the observed primary (the topology's
    /// `role_epoch`, readable without taking a snapshot).
    pub fn role_epoch(&self) -> u64 {
        self.role_epoch.load(Ordering::SeqCst)
    }

    pub fn writes_held(&self) -> bool {
        self.gate.held.load(Ordering::SeqCst) > 0
    }

    /// Starts a use of backend `index` as the primary, unless writes are
    /// held (then `None`: wait with [`Cluster::wait_for_primary`]). Counted
    /// before the hold is looked at, and a hold is raised before the count
    /// is read ([`Cluster::primary_users`]), so a switchover never misses
    /// a statement that got past its hold.
    pub fn try_use_primary(self: &Arc<Self>, index: usize) -> Option<PrimaryUse> {
        let u = self.use_primary(index);
        (!self.writes_held()).then_some(u)
    }

    /// Counts a use that already exists whatever the hold says: a
    /// transaction found open on backend `index`.
    pub fn use_primary(self: &Arc<Self>, index: usize) -> PrimaryUse {
        if let Some(u) = self.gate.users.get(index) {
            u.fetch_add(1, Ordering::SeqCst);
        }
        PrimaryUse {
            cluster: self.clone(),
            index,
        }
    }

    /// Sessions using backend `index` as the primary: commands on their
    /// way there and transactions open there.
    pub fn primary_users(&self, index: usize) -> u64 {
        self.gate
            .users
            .get(index)
            .map_or(0, |u| u.load(Ordering::SeqCst))
    }

    /// Marks backend `index` down at once on a statement's evidence; the
    /// monitor's checks must pass again (`monitor.role_probes` of them)
    /// before it gets traffic.
    pub fn mark_down(&self, index: usize, reason: String) {
        let mut changed = None;
        self.update_topology(|t| {
            if let Some(b) = t.backends.get_mut(index) {
                if b.up {
                    tracing::warn!(backend = %b.name, reason = %reason, "backend marked down");
                }
                b.force_down(reason);
            }
            if t.settle_roles() {
                changed = Some((t.primary, t.split_brain.clone(), t.role_epoch));
            }
        });
        if let Some((p, split, epoch)) = changed {
            self.roles_changed(p, &split, epoch);
        }
    }

    /// How long two writable servers must last to be a split brain rather
    /// than a switchover seen half-way (the new primary writable before the
    /// old one's read-only was confirmed): a few rounds of damped checks.
    fn split_confirmed(&self) -> bool {
        let m = &self.config.monitor;
        let window = Duration::from_millis(m.interval_ms * u64::from(m.role_probes + 1) * 2)
            .max(Duration::from_millis(500));
        self.gate
            .split_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() >= window)
    }

    /// A statement found backend `index` read-only (the server refused it
    /// with 1290): accepted at once, as the server's own word, so writes
    /// wait for the new primary instead of meeting the old one again.
    pub fn saw_read_only(&self, index: usize) {
        let mut changed = None;
        self.update_topology(|t| {
            if let Some(b) = t.backends.get_mut(index) {
                if let Some(a) = b.accepted.as_mut().filter(|a| a.up) {
                    a.read_only = true;
                    b.candidate = None;
                    b.read_only = Some(true);
                }
            }
            if t.settle_roles() {
                changed = Some((t.primary, t.split_brain.clone(), t.role_epoch));
            }
        });
        if let Some((p, split, epoch)) = changed {
            self.roles_changed(p, &split, epoch);
        }
        metrics::counter!(m::WRITE_HOLDS, "result" => "read_only_refusal").increment(1);
    }

    /// The primary to send a statement to: at once when there is one and
    /// no hold; else waits up to `timeouts.write_hold_ms` for one. While
    /// more than one server takes writes, fails as soon as that is
    /// confirmed (a moment of it is how a switchover may look).
    pub async fn wait_for_primary(&self) -> Result<usize, Error> {
        let limit = self.config.timeouts.write_hold();
        let deadline = tokio::time::Instant::now() + limit;
        let mut waited = false;
        loop {
            // Registered before looking, so no change is missed.
            let changed = self.gate.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let topo = self.topology();
            let expired = tokio::time::Instant::now() >= deadline;
            // While a switchover holds writes, two writable servers are a
            // step of it: wait with the others.
            if !topo.split_brain.is_empty()
                && (expired || (self.split_confirmed() && !self.writes_held()))
            {
                return Err(Error::SplitBrain {
                    servers: topo
                        .split_brain
                        .iter()
                        .filter_map(|&i| topo.backends.get(i).map(|b| b.name.clone()))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            if let (Some(p), false) = (topo.primary, self.writes_held()) {
                if waited {
                    metrics::counter!(m::WRITE_HOLDS, "result" => "released").increment(1);
                }
                return Ok(p);
            }
            if expired {
                metrics::counter!(m::WRITE_HOLDS, "result" => "timeout").increment(1);
                let reason = if self.writes_held() {
                    "a switchover is in progress".to_string()
                } else {
                    "no server takes writes (the primary is down or read-only)".to_string()
                };
                return Err(Error::NoPrimary {
                    waited_ms: limit.as_millis() as u64,
                    reason,
                });
            }
            waited = true;
            // Checks again now and then as well: a hold may be released
            // between the look and the registration of another waiter, and
            // a split brain becomes confirmed with time.
            let poll = tokio::time::sleep(Duration::from_millis(100));
            tokio::select! {
                _ = changed => {}
                _ = poll => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}
