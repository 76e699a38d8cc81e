//! The per-statement plan: one immutable snapshot of topology, positions,
//! policy and configuration taken before a statement is routed, and the
//! plan computed from it (route, backend, consistency wait) that is carried
//! to execution.

use super::consistency::{Plan, Wait};
use super::Session;
use crate::classify::Class;
use crate::error::Error;
use crate::protocol::consts::status;
use crate::router::{self, Decision, Loads, Reason, SessionView, Target};

/// Everything one statement is planned from, taken once before it is
/// routed: the topology, the configuration and the policy that apply, and
/// the load and lag of every backend at that moment. `decide`,
/// `read_only_guard`, `level_for` and `plan_read` all read this one
/// snapshot, so a statement never sees a mix of two. The vectors are the
/// session's, lent for the statement ([`Session::snapshot`] and
/// [`Session::recycle`]), so taking a snapshot allocates nothing.
pub(super) struct Snapshot {
    pub topo: std::sync::Arc<crate::topology::Topology>,
    pub config: std::sync::Arc<crate::config::Config>,
    pub policy: std::sync::Arc<crate::config::Policy>,
    /// The decision's tick (round robin, tie-breaking, weights).
    pub tick: u64,
    /// Statements in flight per backend.
    pub outstanding: Vec<u64>,
    /// Position lag per backend, in milliseconds.
    pub lags: Vec<Option<u64>>,
    /// Scratch for `plan_read`: the candidates whose position is known.
    pub known: Vec<(usize, std::sync::Arc<crate::consistency::Sample>)>,
}

impl Snapshot {
    /// Takes a snapshot of `cluster` for a statement of `user` in
    /// `database`, filling `bufs`.
    pub fn take(
        cluster: &crate::cluster::Cluster,
        user: &str,
        database: Option<&str>,
        bufs: SnapshotBuffers,
    ) -> Snapshot {
        let config = cluster.config().clone();
        let policy = config.policy_for(user, database).clone();
        let mut outstanding = bufs.outstanding;
        let tick = cluster.loads(&mut outstanding);
        let mut lags = bufs.lags;
        cluster.positions().lags_ms(&mut lags);
        Snapshot {
            topo: cluster.topology(),
            config,
            policy,
            tick,
            outstanding,
            lags,
            known: bufs.known,
        }
    }

    /// The buffers, emptied, for the next statement.
    pub fn into_buffers(self) -> SnapshotBuffers {
        let mut known = self.known;
        known.clear();
        SnapshotBuffers {
            outstanding: self.outstanding,
            lags: self.lags,
            known,
        }
    }

    /// Where the router sends `class` for a session that looks like `view`.
    pub fn route(&self, class: &Class, view: &SessionView, sql: &str) -> Decision {
        router::route(
            class,
            view,
            &self.policy,
            &self.topo,
            self.loads(),
            sql,
            &|| router::digest(sql),
        )
    }

    pub fn loads(&self) -> Loads<'_> {
        Loads {
            outstanding: &self.outstanding,
            tick: self.tick,
            lag_ms: &self.lags,
        }
    }
}

/// The buffers a [`Snapshot`] borrows from its session between statements.
#[derive(Default)]
pub(super) struct SnapshotBuffers {
    outstanding: Vec<u64>,
    lags: Vec<Option<u64>>,
    known: Vec<(usize, std::sync::Arc<crate::consistency::Sample>)>,
}

/// A statement's plan: where it runs, why, and the wait before it.
/// Computed once from one [`Snapshot`], then carried to execution.
#[derive(Debug)]
pub(super) struct StatementPlan {
    /// The router's decision (after the read-only transaction guard).
    pub decision: Decision,
    /// The backend that runs it (after consistency).
    pub index: usize,
    /// The position wait before it, on a replica.
    pub wait: Option<Wait>,
    /// The router sent the statement to a replica.
    pub to_replica: bool,
}

impl StatementPlan {
    /// Whether the router sent the statement to a replica.
    pub fn routed_to_replica(&self) -> bool {
        self.to_replica
    }
}

impl Session {
    /// Takes the statement's snapshot (one per statement; give it back
    /// with [`Session::recycle`]).
    pub(super) fn snapshot(&mut self) -> Snapshot {
        let bufs = std::mem::take(&mut self.snapshot_buffers);
        Snapshot::take(
            &self.ctx.cluster,
            &self.account.user,
            self.database.as_deref(),
            bufs,
        )
    }

    /// Keeps a finished statement's buffers for the next one.
    pub(super) fn recycle(&mut self, snap: Snapshot) {
        self.snapshot_buffers = snap.into_buffers();
    }

    /// Plans a statement from `snap`: route, the read-only transaction
    /// guard, then consistency for reads on replicas. `Ok(None)`: Causeway
    /// answers it itself. An error comes with whether it may have taken
    /// state only a lost connection had (then report it as such).
    pub(super) async fn plan(
        &mut self,
        snap: &mut Snapshot,
        class: &Class,
        text: &[u8],
        listed: bool,
    ) -> Result<Option<StatementPlan>, (Error, bool)> {
        let mut decision = self.decide(snap, class, text);
        match self.read_only_guard(snap, &decision, class, text).await {
            Ok(Some(d)) => decision = d,
            Ok(None) => {}
            Err(e) => return Err((e, true)),
        }
        if listed && decision.reason != Reason::TransactionBound {
            decision = Decision {
                target: Target::Primary,
                reason: Reason::Processlist,
            };
        }
        if decision.target == Target::Local {
            return Ok(None);
        }
        self.plan_decided(snap, decision, class)
            .await
            .map(Some)
            .map_err(|e| (e, false))
    }

    /// Consistency for a decision: where a read the router sent to a
    /// replica runs, and the wait before it.
    pub(super) async fn plan_decided(
        &mut self,
        snap: &mut Snapshot,
        decision: Decision,
        class: &Class,
    ) -> Result<StatementPlan, Error> {
        let to_replica = decision.target.is_replica(&snap.topo);
        let routed = match decision.target.index(&snap.topo) {
            Some(i) if to_replica || decision.target != Target::Primary => i,
            // The primary: the session's own, once it follows the
            // cluster's (waits while there is none).
            _ => self.primary_now().await?,
        };
        let plan = if to_replica && decision.reason != Reason::TransactionBound {
            self.plan_read(snap, routed, class, decision.reason.names_backend())
                .await
        } else {
            self.causal.planned_level = None;
            Plan::Run(routed)
        };
        let primary = self.primary;
        let (index, wait) = plan.into_target(primary)?;
        Ok(StatementPlan {
            decision,
            index,
            wait,
            to_replica,
        })
    }

    /// Counts a planned statement's route, and its read at a consistency
    /// level when it needed no wait.
    pub(super) fn count_route(&mut self, plan: &StatementPlan) {
        self.ctx.metrics.route(
            super::route_target(plan.index, self.primary),
            plan.decision.reason.label(),
        );
        if plan.wait.is_none() && plan.routed_to_replica() {
            self.count_plain(plan.index);
        }
    }

    pub(super) fn view(&self, sql: &[u8], by_position: bool) -> SessionView {
        let temp = !self.state.temp_tables.is_empty() && self.state.mentions_temp_table(sql);
        SessionView {
            in_transaction: self.txn.backend.is_some() || self.status & status::AUTOCOMMIT == 0,
            transaction_written: self.txn.written,
            transaction_backend: self.txn.backend.filter(|&b| !self.is_primary(b)),
            isolation: self.state.isolation(),
            pin: self.state.pin(),
            uses_temporary_table: temp,
            user_vars_on_primary: self.state.user_vars_on_primary,
            by_position,
        }
    }

    /// The router's decision for a statement, from the statement's snapshot.
    pub(super) fn decide(&self, snap: &Snapshot, class: &Class, sql: &[u8]) -> Decision {
        let level = self
            .level_for(snap, class)
            .unwrap_or(snap.policy.consistency.level);
        let view = self.view(sql, level != crate::consistency::Level::Eventual);
        let decision = snap.route(class, &view, &String::from_utf8_lossy(sql));
        // The characteristics `SET TRANSACTION` gave the next transaction
        // are on the primary connection.
        if self.held.next_transaction && decision.target.is_replica(&snap.topo) {
            return Decision {
                target: Target::Primary,
                reason: Reason::SetTransaction,
            };
        }
        decision
    }
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod snapshot_tests;
