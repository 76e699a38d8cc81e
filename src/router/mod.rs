//! Where a statement runs. Pure: [`route`] looks at plain data (the
//! statement's class, the session's view, the policy, the topology, the
//! backends' loads) and returns a [`Decision`]; it does no I/O and changes
//! nothing.
//!
//! Order of the rules (the first that applies wins):
//! 1. statements Causeway answers itself;
//! 2. hints (`/*FORCE_MASTER*/`, `/*FORCE_SLAVE*/`, `/* causeway: route=... */`);
//! 3. state that cannot move (pins) and a transaction bound to a backend;
//! 4. the policy's regex rules;
//! 5. the split itself: what may run on a replica, and which replica.
//!
//! When unsure, the primary: a misrouted statement may cost speed, never
//! correctness.
//!
//! May import `topology` (the snapshot's data, not the monitor), `config`,
//! `classify` and what is below them; never `cluster`, `pool` or above.

mod digest;
mod reason;
#[cfg(test)]
mod tests;

pub use digest::digest;
pub use reason::{Pin, Reason};

use crate::classify::{Class, Flags, Kind, RouteHint};
use crate::config::{LoadBalance, Policy, RuleOn};
use crate::topology::{Role, Topology};

/// The backend a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Causeway answers the statement itself.
    Local,
    /// Whichever backend is the primary when the statement runs.
    Primary,
    /// A backend by its index in the topology.
    Backend(usize),
}

impl Target {
    /// The topology index in `topo`: `None` for `Local`, and for `Primary`
    /// while the cluster has no primary.
    pub fn index(self, topo: &Topology) -> Option<usize> {
        match self {
            Target::Local => None,
            Target::Primary => topo.primary,
            Target::Backend(i) => Some(i),
        }
    }

    /// Whether the statement goes to a replica of `topo` (not the primary,
    /// not Causeway).
    pub fn is_replica(self, topo: &Topology) -> bool {
        matches!(self, Target::Backend(i) if !topo.is_primary(i))
    }
}

/// A routing decision. `reason`'s label is the metric label, the EXPLAIN
/// ROUTE text and what tests assert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
}

/// The decision while sessions do not yet split reads: the primary.
pub fn primary_only() -> Decision {
    Decision {
        target: Target::Primary,
        reason: Reason::PrimaryOnly,
    }
}

/// Transaction isolation level of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    #[default]
    RepeatableRead,
    Serializable,
}

impl Isolation {
    /// Parses `tx_isolation` / `transaction_isolation` values
    /// (`READ-COMMITTED`) and SQL spellings (`READ COMMITTED`).
    pub fn parse(v: &str) -> Option<Isolation> {
        let v = v
            .trim()
            .trim_matches('\'')
            .to_ascii_uppercase()
            .replace(' ', "-");
        Some(match v.as_str() {
            "READ-UNCOMMITTED" => Isolation::ReadUncommitted,
            "READ-COMMITTED" => Isolation::ReadCommitted,
            "REPEATABLE-READ" => Isolation::RepeatableRead,
            "SERIALIZABLE" => Isolation::Serializable,
            _ => return None,
        })
    }
}

/// What the router needs to know about the session.
#[derive(Debug, Clone, Default)]
pub struct SessionView {
    /// A transaction is open (server status flags, or a BEGIN just sent).
    pub in_transaction: bool,
    /// The open transaction has run something other than a plain read.
    pub transaction_written: bool,
    /// The backend the open transaction runs on, once chosen.
    pub transaction_backend: Option<usize>,
    pub isolation: Isolation,
    /// Why the session is pinned to the primary, if it is.
    pub pin: Option<Pin>,
    /// The statement names one of the session's temporary tables.
    pub uses_temporary_table: bool,
    /// User variables were assigned from data on the primary.
    pub user_vars_on_primary: bool,
    /// The read's consistency level is judged by replication positions
    /// (session, global, bounded): replicas are eligible by
    /// [`eligible_by_position`] rather than by replication health.
    pub by_position: bool,
}

/// The backends' current load, and a per-decision counter for rotation.
#[derive(Debug, Clone, Copy)]
pub struct Loads<'a> {
    /// Statements in flight per backend (topology index).
    pub outstanding: &'a [u64],
    /// Increases by one per decision (round robin, tie-breaking, weights).
    pub tick: u64,
    /// Replica lag in milliseconds from replication positions, by topology
    /// index (`None` or missing: unknown).
    pub lag_ms: &'a [Option<u64>],
}

/// Routes one statement. `sql` is the statement text (for regex rules);
/// `digest` computes its normalised digest when a rule needs it.
pub fn route(
    class: &Class,
    view: &SessionView,
    policy: &Policy,
    topo: &Topology,
    loads: Loads<'_>,
    sql: &str,
    digest: &dyn Fn() -> String,
) -> Decision {
    let primary = |reason| Decision {
        target: Target::Primary,
        reason,
    };
    if class.kind == Kind::Admin {
        return Decision {
            target: Target::Local,
            reason: Reason::CausewayStatement,
        };
    }
    if let Some(h) = &class.hints.route {
        return match h {
            RouteHint::Primary => primary(Reason::HintPrimary),
            RouteHint::Replica => {
                match pick_replica(policy, topo, loads, false, view.by_position) {
                    Some(i) => Decision {
                        target: Target::Backend(i),
                        reason: Reason::HintReplica,
                    },
                    None => primary(Reason::HintReplicaUnavailable),
                }
            }
            RouteHint::Backend(name) => match topo.index_of(name) {
                Some(i) if topo.is_primary(i) => primary(Reason::HintBackend),
                Some(i) if usable(topo, i) => Decision {
                    target: Target::Backend(i),
                    reason: Reason::HintBackend,
                },
                _ => primary(Reason::HintBackendUnavailable),
            },
        };
    }
    if let Some(pin) = view.pin {
        return primary(Reason::Pinned(pin));
    }
    if let Some(b) = view.transaction_backend {
        if view.in_transaction {
            return Decision {
                target: Target::Backend(b),
                reason: Reason::TransactionBound,
            };
        }
    }
    for rule in &policy.rules {
        let Some(re) = &rule.regex else { continue };
        let hit = match rule.on {
            RuleOn::Text => re.is_match(sql),
            RuleOn::Digest => re.is_match(&digest()),
        };
        if hit {
            return match rule.target.as_str() {
                "primary" => primary(Reason::Rule),
                "replica" => match pick_replica(policy, topo, loads, false, view.by_position) {
                    Some(i) => Decision {
                        target: Target::Backend(i),
                        reason: Reason::Rule,
                    },
                    None => primary(Reason::RuleReplicaUnavailable),
                },
                name => match topo.index_of(name) {
                    Some(i) if topo.is_primary(i) => primary(Reason::Rule),
                    Some(i) if usable(topo, i) => Decision {
                        target: Target::Backend(i),
                        reason: Reason::Rule,
                    },
                    _ => primary(Reason::RuleBackendUnavailable),
                },
            };
        }
    }
    if !policy.routing.read_write_split {
        return primary(Reason::SplitOff);
    }
    match &class.kind {
        Kind::Begin {
            read_only: true, ..
        } if !view.in_transaction => {
            return match pick_replica(policy, topo, loads, false, view.by_position) {
                Some(i) => Decision {
                    target: Target::Backend(i),
                    reason: Reason::ReadOnlyTransaction,
                },
                None => primary(Reason::ReadOnlyTransactionNoReplica),
            };
        }
        Kind::Read => {}
        other => return primary(kind_reason(other)),
    }
    // A plain read from here on.
    if let Some(reason) = read_needs_primary(class, view) {
        return primary(reason);
    }
    if view.in_transaction {
        let isolation_ok = matches!(
            view.isolation,
            Isolation::ReadCommitted | Isolation::ReadUncommitted
        ) || policy.routing.transaction_split_repeatable_read;
        if !(policy.routing.transaction_split && isolation_ok && !view.transaction_written) {
            return primary(Reason::InTransaction);
        }
        // Only replicas: the session's primary connection is the transaction's.
        return match pick_replica(policy, topo, loads, false, view.by_position) {
            Some(i) if !topo.is_primary(i) => Decision {
                target: Target::Backend(i),
                reason: Reason::TransactionSplit,
            },
            _ => primary(Reason::TransactionSplitNoReplica),
        };
    }
    match pick_replica(
        policy,
        topo,
        loads,
        policy.routing.primary_accepts_reads,
        view.by_position,
    ) {
        Some(i) if topo.is_primary(i) => primary(Reason::ReadOnPrimary),
        Some(i) => Decision {
            target: Target::Backend(i),
            reason: Reason::Read,
        },
        None => primary(Reason::NoReplica),
    }
}

/// Why a plain read must still run on the primary, if it must.
fn read_needs_primary(class: &Class, view: &SessionView) -> Option<Reason> {
    let f = class.flags;
    if f.contains(Flags::LOCK_FN) {
        Some(Reason::LockFunction)
    } else if f.contains(Flags::SIDE_EFFECT_FN) {
        Some(Reason::SideEffectFunction)
    } else if f.contains(Flags::SELECT_INTO) || f.contains(Flags::USER_VAR_ASSIGN) {
        Some(Reason::AssignsUserVariable)
    } else if f.contains(Flags::LOCKING) {
        Some(Reason::LockingRead)
    } else if f.contains(Flags::CALC_FOUND_ROWS) {
        Some(Reason::CalcFoundRows)
    } else if f.contains(Flags::USER_VAR_READ) && view.user_vars_on_primary {
        Some(Reason::UserVariable)
    } else if view.uses_temporary_table {
        Some(Reason::TemporaryTable)
    } else {
        None
    }
}

/// The reason label for statements that always run on the primary.
pub fn kind_reason(kind: &Kind) -> Reason {
    match kind {
        Kind::Read => Reason::Read,
        Kind::Write => Reason::Write,
        Kind::LockingRead => Reason::LockingRead,
        Kind::Begin { .. } | Kind::Commit | Kind::Rollback | Kind::Savepoint | Kind::Xa => {
            Reason::TransactionControl
        }
        Kind::SetTransaction
        | Kind::SetAutocommit(_)
        | Kind::SetSession
        | Kind::SetUserVar
        | Kind::Use => Reason::SessionState,
        Kind::TempTable { .. } => Reason::TemporaryTable,
        Kind::LockTables | Kind::UnlockTables => Reason::LockTables,
        Kind::Prepare | Kind::Execute | Kind::Deallocate => Reason::TextPrepare,
        Kind::Call => Reason::Call,
        Kind::Show => Reason::Show,
        Kind::Kill => Reason::Kill,
        Kind::Admin => Reason::CausewayStatement,
        Kind::Unknown => Reason::Unknown,
    }
}

/// Whether replica `i` may take reads at eventual consistency: up,
/// replicating, within the lag limit (by `Seconds_Behind_Master` and, when
/// known, by its position). While the primary is down (or there is none) a
/// replica's threads cannot run: it keeps what it had, and serves reads
/// within the lag limit its position last showed.
fn qualifies(policy: &Policy, topo: &Topology, loads: Loads<'_>, i: usize) -> bool {
    let Some(b) = topo.backends.get(i) else {
        return false;
    };
    let max = policy.routing.max_replica_lag_ms;
    let primary_down = topo.primary().is_none_or(|p| !p.up);
    b.role == Role::Replica
        && b.up
        && (primary_down
            || (b.replicating == Some(true)
                && b.lag_s.is_some_and(|l| l.saturating_mul(1000) <= max)))
        && loads
            .lag_ms
            .get(i)
            .copied()
            .flatten()
            .is_none_or(|l| l <= max)
}

/// Whether replica `i` may take reads at a level judged by positions
/// (session, global, bounded): up and within the lag limit, by its position
/// lag when known, else by `Seconds_Behind_Master`. Whether its replication
/// threads run does not matter: its position says what it can serve.
pub fn eligible_by_position(policy: &Policy, topo: &Topology, loads: Loads<'_>, i: usize) -> bool {
    let Some(b) = topo.backends.get(i) else {
        return false;
    };
    let lag = loads
        .lag_ms
        .get(i)
        .copied()
        .flatten()
        .or(b.lag_s.map(|s| s.saturating_mul(1000)));
    b.role == Role::Replica && b.up && lag.is_some_and(|l| l <= policy.routing.max_replica_lag_ms)
}

/// Whether backend `i` is up (hints and rules naming a backend).
fn usable(topo: &Topology, i: usize) -> bool {
    topo.backends.get(i).is_some_and(|b| b.up)
}

/// Whether replica `i` may take reads now: by replication health at
/// eventual consistency, by position otherwise.
pub fn may_read(
    policy: &Policy,
    topo: &Topology,
    loads: Loads<'_>,
    i: usize,
    by_position: bool,
) -> bool {
    !topo.is_primary(i)
        && if by_position {
            eligible_by_position(policy, topo, loads, i)
        } else {
            qualifies(policy, topo, loads, i)
        }
}

/// Every replica that may take reads now (EXPLAIN ROUTE shows them): by
/// replication health at eventual consistency, by position otherwise.
pub fn qualifying_replicas(
    policy: &Policy,
    topo: &Topology,
    loads: Loads<'_>,
    by_position: bool,
) -> Vec<usize> {
    (0..topo.backends.len())
        .filter(|&i| {
            if by_position {
                eligible_by_position(policy, topo, loads, i)
            } else {
                qualifies(policy, topo, loads, i)
            }
        })
        .collect()
}

/// Picks a backend for a read among the qualifying replicas (and the
/// primary, when `with_primary` and it is up). Any number of replicas: the
/// candidates are walked, not copied into a list.
fn pick_replica(
    policy: &Policy,
    topo: &Topology,
    loads: Loads<'_>,
    with_primary: bool,
    by_position: bool,
) -> Option<usize> {
    let primary = with_primary && topo.primary().is_some_and(|p| p.up);
    let cands = (0..topo.backends.len()).filter(move |&i| {
        if topo.is_primary(i) {
            primary
        } else if by_position {
            eligible_by_position(policy, topo, loads, i)
        } else {
            qualifies(policy, topo, loads, i)
        }
    });
    pick_from(policy, topo, loads, cands)
}

/// Picks one of `cands` (topology indexes) by the policy's load balancing.
pub fn pick_among(
    policy: &Policy,
    topo: &Topology,
    loads: Loads<'_>,
    cands: &[usize],
) -> Option<usize> {
    pick_from(policy, topo, loads, cands.iter().copied())
}

/// [`pick_among`] over candidates given as an iterator (walked a few
/// times, so it must be cheap to clone), without collecting them.
pub fn pick_from<I>(policy: &Policy, topo: &Topology, loads: Loads<'_>, cands: I) -> Option<usize>
where
    I: Iterator<Item = usize> + Clone,
{
    let len = cands.clone().count();
    if len == 0 {
        return None;
    }
    let start = (loads.tick % len as u64) as usize;
    let at_start = cands.clone().nth(start);
    match policy.routing.load_balance {
        LoadBalance::RoundRobin => at_start,
        LoadBalance::LeastOutstanding => {
            // From `start` round the list: the first of the least busy wins.
            let rotated = cands.clone().skip(start).chain(cands.clone().take(start));
            rotated.min_by_key(|&i| loads.outstanding.get(i).copied().unwrap_or(0))
        }
        LoadBalance::Weighted => {
            let weight = |i: usize| {
                topo.backends
                    .get(i)
                    .and_then(|b| policy.routing.weights.get(&b.name))
                    .copied()
                    .unwrap_or(1) as u64
            };
            let total: u64 = cands.clone().map(weight).sum();
            if total == 0 {
                return at_start;
            }
            // A fixed permutation of the tick spreads picks by weight.
            let mut x = loads.tick.wrapping_mul(0x9E37_79B9_7F4A_7C15) % total;
            let mut last = None;
            for i in cands {
                let w = weight(i);
                if x < w {
                    return Some(i);
                }
                x -= w;
                last = Some(i);
            }
            last
        }
    }
}
