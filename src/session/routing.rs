//! The split: classify a statement, ask the router where it runs, bring
//! that backend connection to the session's state, and learn from the
//! reply (session variables, database, transaction, temporary tables,
//! locks, user variables).

use crate::classify::{
    classify, names_collation, replayable_user_var_set, set_transaction, temp_table_changes, Class,
    Flags, InReadOnly, Kind,
};
use crate::error::Error;
use crate::protocol::consts::{com, status};
use crate::protocol::reply::Expect;
use crate::router::{self, Decision, Loads, Reason, SessionView, Target};

use super::consistency::{Plan, Wait};
use super::relay::ReplyInfo;
use super::{drain_reply, Flow, Session};

/// What a backend connection has been brought to.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pub version: u64,
    pub database: Option<String>,
    pub user_vars: usize,
    /// Multi-statements as last set by COM_SET_OPTION on the connection
    /// (`None`: as the login's capabilities said).
    pub multi_statements: Option<bool>,
}

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
}

impl StatementPlan {
    /// Whether the router sent the statement to a replica.
    pub fn routed_to_replica(&self) -> bool {
        self.decision.target.index().unwrap_or(0) > 0
    }
}

impl Session {
    /// Takes the statement's snapshot (one per statement; give it back
    /// with [`Session::recycle`]).
    pub(super) fn snapshot(&mut self) -> Snapshot {
        let bufs = std::mem::take(&mut self.snapshot_buffers);
        Snapshot::take(
            &self.ctx.cluster,
            &self.user,
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
        let routed = decision.target.index().unwrap_or(0);
        let plan = if routed > 0 && decision.reason != Reason::TransactionBound {
            self.plan_read(snap, routed, class, decision.reason.names_backend())
                .await
        } else {
            self.planned_level = None;
            Plan::Run(routed)
        };
        let (index, wait) = plan.into_target()?;
        Ok(StatementPlan {
            decision,
            index,
            wait,
        })
    }

    /// Counts a planned statement's route, and its read at a consistency
    /// level when it needed no wait.
    pub(super) fn count_route(&mut self, plan: &StatementPlan) {
        self.ctx.metrics.route(
            super::route_target(plan.index),
            plan.decision.reason.label(),
        );
        if plan.wait.is_none() && plan.routed_to_replica() {
            self.count_plain(plan.index);
        }
    }

    /// A COM_QUERY: classify, route, run. `sql` is the client's bytes:
    /// the classifier reads a UTF-8 copy for facts, but what runs anywhere
    /// is those bytes (rewritten calls spliced in).
    pub(super) async fn query(&mut self, sql: &[u8], raw: &[u8], next: u8) -> Flow {
        // `information_schema.PROCESSLIST` is the sessions' (as a derived
        // table, on the primary).
        let listed = self.processlist_rewrite(sql);
        let (sql, raw) = match &listed {
            Some(p) => (p.get(1..).unwrap_or_default(), p.as_slice()),
            None => (sql, raw),
        };
        let mut class = classify(&String::from_utf8_lossy(sql));
        // The connection's own row count, thread id (and, pooled, last
        // insert id) may be another statement's or session's: use the
        // session's.
        let rewritten;
        let (text, raw): (&[u8], &[u8]) = match self.session_functions(&class, sql) {
            Some(new) => {
                class = classify(&String::from_utf8_lossy(new.get(1..).unwrap_or(&[])));
                rewritten = new;
                (rewritten.get(1..).unwrap_or(&[]), rewritten.as_slice())
            }
            None => (sql, raw),
        };
        // KILL acts on Causeway's sessions: answered here, never sent on.
        if class.kind == Kind::Kill {
            return self.kill_sql(&String::from_utf8_lossy(text), next).await;
        }
        if class.flags.intersects(Flags::MULTI_STATEMENT)
            && crate::classify::has_kill(&String::from_utf8_lossy(text))
        {
            return self.fail(next, &Error::KillUnsupported).await;
        }
        if class.hints.route.is_none() && super::carry::is_diagnostics(&class, text) {
            return self.diagnostics(raw, &class, text).await;
        }
        let mut snap = self.snapshot();
        let planned = self.plan(&mut snap, &class, text, listed.is_some()).await;
        self.recycle(snap);
        let plan = match planned {
            Ok(Some(p)) => p,
            Ok(None) => {
                return self
                    .local_statement(&String::from_utf8_lossy(text), next)
                    .await
            }
            Err((e, true)) => return self.fail_unless_lost(next, &e).await,
            Err((e, false)) => return self.fail(next, &e).await,
        };
        self.count_route(&plan);
        let stmt = Some((&class, text));
        match self
            .run(
                plan.index,
                raw,
                Expect::ResultSets,
                stmt,
                None,
                plan.wait.as_ref(),
            )
            .await
        {
            Flow::Fallback => {
                self.ctx.metrics.route(
                    crate::metrics::RouteTarget::Primary,
                    Reason::ConsistencyFallback.label(),
                );
                self.run(0, raw, Expect::ResultSets, stmt, None, None).await
            }
            flow => flow,
        }
    }

    /// A `READ ONLY` transaction runs on a replica; what a direct
    /// connection does with a statement there that is not a read, Causeway
    /// must do too:
    /// - a data change or `CREATE TEMPORARY TABLE` fails with the server's
    ///   error for it (1792), not the replica's `read_only` error;
    /// - `BEGIN`, DDL, `LOCK TABLES` and `SET autocommit = 1` commit the
    ///   transaction first, then run where they belong (the primary, for a
    ///   read-write transaction);
    /// - statements on state that lives on the primary connection run
    ///   there: temporary tables, text prepares, `SET autocommit = 0`, and
    ///   without a pool user variables and the last insert id.
    ///
    /// Gives the new decision, if it changes.
    pub(super) async fn read_only_guard(
        &mut self,
        snap: &Snapshot,
        decision: &Decision,
        class: &Class,
        text: &[u8],
    ) -> Result<Option<Decision>, Error> {
        let Some(index) = decision.target.index().filter(|&i| i > 0) else {
            return Ok(None);
        };
        if decision.reason != Reason::TransactionBound {
            return Ok(None);
        }
        let temp = !self.state.temp_tables.is_empty() && self.state.mentions_temp_table(text);
        let on_primary = |reason| {
            Ok(Some(Decision {
                target: Target::Primary,
                reason,
            }))
        };
        let commit_first = match class.kind {
            Kind::Begin { .. } | Kind::LockTables | Kind::SetAutocommit(true) => true,
            Kind::TempTable { create: true } => return Err(Error::ReadOnlyTransaction),
            Kind::TempTable { .. } => return on_primary(Reason::TemporaryTable),
            // Session state that lives on the primary connection: text
            // prepares, and autocommit (replica connections keep it on).
            Kind::Prepare | Kind::Execute | Kind::Deallocate => {
                return on_primary(Reason::TextPrepare)
            }
            Kind::SetAutocommit(false) => return on_primary(Reason::SessionState),
            // Without a pool, user variables live on the connection that
            // set them: set them on the primary, which later reads use.
            _ if !self.tp
                && (class.kind == Kind::SetUserVar
                    || class
                        .flags
                        .intersects(Flags::USER_VAR_ASSIGN | Flags::SELECT_INTO))
                && crate::classify::in_read_only(text) != InReadOnly::DataChange =>
            {
                return on_primary(Reason::UserVariable)
            }
            // Writes, and multi-statements, by their first statement.
            Kind::Write | Kind::Unknown => match crate::classify::in_read_only(text) {
                InReadOnly::DataChange if temp => return on_primary(Reason::TemporaryTable),
                InReadOnly::DataChange => return Err(Error::ReadOnlyTransaction),
                InReadOnly::ImplicitCommit => true,
                InReadOnly::Other => false,
            },
            // Without a pool, user variables assigned from data exist on
            // the primary only.
            _ if !self.tp
                && class.flags.contains(Flags::USER_VAR_READ)
                && self.state.user_vars_on_primary =>
            {
                return on_primary(Reason::UserVariable)
            }
            // ... and so does the last insert id (pooled sessions set it
            // on whichever connection runs the statement).
            _ if !self.tp && crate::classify::reads_last_insert_id(text) => {
                return on_primary(Reason::LastInsertId)
            }
            _ if temp => return on_primary(Reason::TemporaryTable),
            _ => false,
        };
        if !commit_first {
            return Ok(None);
        }
        let conn = self.backend(index).await?;
        let committed = match conn.send_command(b"\x03COMMIT").await {
            Ok(()) => drain_reply(conn, Expect::Single).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            // A broken connection took the transaction with it.
            if !matches!(e, Error::Server(_)) {
                self.backends[index] = None;
            }
            return Err(e);
        }
        self.txn_backend = None;
        self.txn_written = false;
        self.status &= !status::IN_TRANS;
        Ok(Some(self.decide(snap, class, text)))
    }

    /// The COM_QUERY payload with `ROW_COUNT()` answered from the
    /// session's last statement (which may have run on another backend) and
    /// `CONNECTION_ID()` from the session's id, if it calls them; with a
    /// pool, notes whether it reads the last insert id.
    fn session_functions(&mut self, class: &Class, sql: &[u8]) -> Option<Vec<u8>> {
        // `KILL CONNECTION_ID()` names the session itself: Causeway
        // answers it, reading the call as the session's id.
        if class.kind == Kind::Kill {
            return None;
        }
        let mut new = None;
        if class.flags.contains(Flags::SIDE_EFFECT_FN) {
            if self.tp {
                self.ps.wants_last_insert_id = crate::classify::reads_last_insert_id(sql);
            }
            new = crate::classify::substitute_row_count(sql, self.ps.row_count);
        }
        let cur = new.as_deref().unwrap_or(sql);
        if let Some(n) = crate::classify::substitute_connection_id(cur, self.id) {
            new = Some(n);
        }
        new.map(|mut n| {
            n.insert(0, com::QUERY);
            n
        })
    }

    /// Counts a read the router sent to a replica that needed no wait, at
    /// a level other than eventual (the level its plan found).
    pub(super) fn count_plain(&mut self, index: usize) {
        if let Some(level) = self.planned_level.take() {
            if level != crate::consistency::Level::Eventual {
                let served = match index {
                    0 => crate::metrics::Served::Primary,
                    _ => crate::metrics::Served::Replica,
                };
                self.count_consistent(level, served);
            }
        }
    }

    pub(super) fn view(&self, sql: &[u8], by_position: bool) -> SessionView {
        let temp = !self.state.temp_tables.is_empty() && self.state.mentions_temp_table(sql);
        SessionView {
            in_transaction: self.txn_backend.is_some() || self.status & status::AUTOCOMMIT == 0,
            transaction_written: self.txn_written,
            transaction_backend: self.txn_backend.filter(|&b| b > 0),
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
        if self.ps.next_transaction && decision.target.index().is_some_and(|i| i > 0) {
            return Decision {
                target: Target::Primary,
                reason: Reason::SetTransaction,
            };
        }
        decision
    }

    /// Brings backend `index` to the session's database, variables and
    /// replayable user variables. Several statements may be needed; each
    /// reply is read before the next is sent.
    pub(super) async fn sync(&mut self, index: usize) -> Result<(), Error> {
        if self.tp {
            return self.sync_pooled(index).await;
        }
        // A new connection (first use, or one lost before) starts from
        // nothing: open it first, so what it must be brought to is
        // measured from there, not from the lost one.
        if self.backends.get(index).is_some_and(Option::is_none) {
            self.backend(index).await?;
        }
        // Compared in place, not cloned: an in-step connection (the usual
        // case) costs no allocation.
        let none = Synced::default();
        let synced = self.synced.get(index).unwrap_or(&none);
        let db_differs = synced.database != self.database;
        let (synced_version, synced_user_vars) = (synced.version, synced.user_vars);
        let set_option = self.set_option_for(synced);
        let mut pre: Vec<Vec<u8>> = Vec::new();
        if let Some(db) = self.database.as_deref().filter(|_| db_differs) {
            let mut p = vec![com::INIT_DB];
            p.extend_from_slice(db.as_bytes());
            pre.push(p);
        }
        if synced_version < self.state.version {
            if let Some(set) = self.state.sync_statement(index == 0) {
                let mut p = vec![com::QUERY];
                p.extend_from_slice(set.as_bytes());
                pre.push(p);
            }
        }
        if let Some(p) = set_option {
            pre.push(p);
        }
        for s in self.state.user_var_sets.iter().skip(synced_user_vars) {
            let mut p = vec![com::QUERY];
            p.extend_from_slice(s);
            pre.push(p);
        }
        if !pre.is_empty() {
            let conn = self.backend(index).await?;
            for p in &pre {
                conn.send_command(p).await?;
                drain_reply(conn, Expect::Single).await?;
            }
        }
        if let Some(s) = self.synced.get_mut(index) {
            s.version = self.state.version;
            if db_differs {
                s.database.clone_from(&self.database);
            }
            s.user_vars = self.state.user_var_sets.len();
            s.multi_statements = self.ps.multi_statements.or(s.multi_statements);
        }
        Ok(())
    }

    /// Learns from a reply of backend `index` to a statement of class `class`.
    pub(super) fn learn(&mut self, index: usize, info: &ReplyInfo, stmt: Option<(&Class, &[u8])>) {
        let st = info.status.unwrap_or(self.status);
        let was_written = self.txn_written;
        let owner = self.txn_backend.unwrap_or(0);
        // Autocommit is the primary connection's to say: replica
        // connections keep it on, even while one serves a READ ONLY
        // transaction.
        const AC: u16 = status::AUTOCOMMIT;
        if index == owner {
            self.status = if index == 0 {
                st
            } else {
                (st & !AC) | (self.status & AC)
            };
        } else if index == 0 {
            self.status = (self.status & !AC) | (st & AC);
        }
        // `SET TRANSACTION` without `SESSION` is for the next transaction
        // only: the values the server reports for it are not the session's.
        let one_shot: Vec<(String, String)>;
        let variables = match stmt {
            Some((c, sql))
                if c.kind == Kind::SetTransaction
                    && !c.flags.contains(Flags::GLOBAL)
                    && !set_transaction(sql).session =>
            {
                one_shot = info
                    .variables
                    .iter()
                    .filter(|(k, _)| !is_transaction_var(k))
                    .cloned()
                    .collect();
                &one_shot
            }
            _ => &info.variables,
        };
        if !variables.is_empty() && self.state.record_vars(variables) {
            if let Some(s) = self.synced.get_mut(index) {
                s.version = self.state.version;
            }
        }
        if let Some(db) = &info.schema {
            self.database = (!db.is_empty()).then(|| db.clone());
            if let Some(s) = self.synced.get_mut(index) {
                s.database = self.database.clone();
            }
        }
        // Whether the statement leaves the transaction read-only so far:
        // plain reads and statements that start it or only look around.
        let plain_read = stmt.is_some_and(|(c, _)| match c.kind {
            Kind::Read => !c.flags.intersects(Flags::PRIMARY_ONLY),
            Kind::Begin { .. } | Kind::Show | Kind::Use | Kind::SetTransaction => true,
            _ => false,
        });
        let in_trans = st & status::IN_TRANS != 0;
        match self.txn_backend {
            None if in_trans => {
                self.txn_backend = Some(index);
                self.txn_written = !plain_read;
            }
            Some(b) if b == index && !in_trans => {
                self.txn_backend = None;
                self.txn_written = false;
            }
            Some(b) if b == index && !plain_read => self.txn_written = true,
            _ => {}
        }
        let Some((class, sql)) = stmt else { return };
        if info.error {
            return;
        }
        // The characteristics `SET TRANSACTION` gave the next transaction
        // are used up by the first statement that succeeds in one: a read
        // of a table, a write, a transaction boundary. Reads of variables
        // and failed statements leave them for the next.
        let starts_transaction = match class.kind {
            Kind::Read => class
                .reads_table
                .unwrap_or_else(|| crate::classify::reads_a_table(sql)),
            Kind::Write
            | Kind::LockingRead
            | Kind::Begin { .. }
            | Kind::Commit
            | Kind::Rollback
            | Kind::Call
            | Kind::Unknown => true,
            _ => false,
        };
        if starts_transaction {
            self.ps.next_transaction = false;
        }
        self.learn_positions(
            index,
            class,
            was_written,
            info.last_gtid.is_some(),
            in_trans,
        );
        if matches!(class.kind, Kind::TempTable { .. })
            || class.flags.contains(Flags::MULTI_STATEMENT)
        {
            self.state.learn_temp_tables(temp_table_changes(sql));
        }
        match class.kind {
            Kind::LockTables => self.state.table_locks = true,
            Kind::UnlockTables | Kind::Begin { .. } => self.state.table_locks = false,
            // The transaction pool reads assigned values back instead.
            Kind::SetUserVar if self.tp => {}
            Kind::SetUserVar if replayable_user_var_set(sql) => {
                self.state.user_var_sets.push(sql.to_vec());
                if let Some(s) = self.synced.get_mut(index) {
                    s.user_vars = self.state.user_var_sets.len();
                }
            }
            Kind::SetUserVar => self.state.user_vars_on_primary = true,
            Kind::SetSession => {
                if let Some(c) = names_collation(sql) {
                    if self.state.set_collation(&c) {
                        if let Some(s) = self.synced.get_mut(index) {
                            s.version = self.state.version;
                        }
                    }
                }
            }
            Kind::SetTransaction if !class.flags.contains(Flags::GLOBAL) => {
                let st = set_transaction(sql);
                match st.isolation.filter(|_| st.session) {
                    // Only for the next transaction, and only on this connection.
                    None => self.ps.next_transaction = !st.session,
                    // The server does not report `SET SESSION TRANSACTION
                    // ISOLATION LEVEL` as a variable change; record it.
                    Some(level) => {
                        if self
                            .state
                            .record_vars(&[("tx_isolation".into(), level.into())])
                        {
                            if let Some(s) = self.synced.get_mut(index) {
                                s.version = self.state.version;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if !self.tp
            && class
                .flags
                .intersects(Flags::USER_VAR_ASSIGN | Flags::SELECT_INTO)
            && class.kind != Kind::SetUserVar
        {
            self.state.user_vars_on_primary = true;
        }
        if class.flags.contains(Flags::LOCK_FN) {
            self.learn_locks(sql);
        }
    }

    /// Status bits the client must see as the session's own when a reply
    /// comes from a backend other than the one holding its transaction.
    pub(super) fn status_override(&self, index: usize) -> Option<(u16, u16)> {
        let mask = status::IN_TRANS | status::AUTOCOMMIT;
        (index != self.txn_backend.unwrap_or(0)).then_some((mask, self.status & mask))
    }
}

/// The variables `SET TRANSACTION` changes.
fn is_transaction_var(name: &str) -> bool {
    [
        "tx_read_only",
        "tx_isolation",
        "transaction_read_only",
        "transaction_isolation",
    ]
    .iter()
    .any(|v| name.eq_ignore_ascii_case(v))
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod snapshot_tests;
