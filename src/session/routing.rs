//! The split: classify a statement, ask the router where it runs, bring
//! that backend connection to the session's state, and learn from the
//! reply (session variables, database, transaction, temporary tables,
//! locks, user variables).

use crate::classify::{classify, Class, Flags, InReadOnly, Kind};
use crate::error::Error;
use crate::protocol::consts::{com, status};
use crate::protocol::reply::Expect;
use crate::router::{Decision, Reason, Target};

use super::plan::Snapshot;
use super::{drain_reply, Flow, Session};

impl Session {
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
        let stmt = Some((&class, text));
        let mut plan = plan;
        let mut attempts = super::retry::Attempts::default();
        let mut replayed = false;
        loop {
            self.count_route(&plan);
            let flow = match self
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
                    self.run(self.primary, raw, Expect::ResultSets, stmt, None, None)
                        .await
                }
                flow => flow,
            };
            let failure = match flow {
                Flow::Retry(failure) => failure,
                // The transaction ran again on the new primary: so does
                // the statement (at most once per command).
                Flow::Replay(failure) if !replayed => {
                    replayed = true;
                    if let Err(flow) = self.replay_transaction(*failure).await {
                        return flow;
                    }
                    let mut snap = self.snapshot();
                    let planned = self.plan(&mut snap, &class, text, listed.is_some()).await;
                    self.recycle(snap);
                    plan = match planned {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            return self
                                .fail(
                                    next,
                                    &Error::TransactionLost {
                                        backend: String::new(),
                                        reason: "the statement had nowhere to run after the replay"
                                            .into(),
                                    },
                                )
                                .await
                        }
                        Err((e, _)) => return self.fail(next, &e).await,
                    };
                    continue;
                }
                Flow::Replay(failure) => return self.fail(failure.seq, &failure.error).await,
                flow => return flow,
            };
            // The read ran nowhere the client can tell: plan it again (the
            // failed backend may be marked down by now).
            let mut snap = self.snapshot();
            let planned = self.plan(&mut snap, &class, text, listed.is_some()).await;
            self.recycle(snap);
            plan = match planned {
                Ok(Some(p)) => match self.next_run(&mut attempts, &failure, p) {
                    Some(p) => p,
                    None => return self.fail(failure.seq, &failure.error).await,
                },
                // Why it cannot run anywhere now (no primary, ...).
                Err((e, _)) => return self.fail(failure.seq, &e).await,
                Ok(None) => return self.fail(failure.seq, &failure.error).await,
            };
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
        let Some(index) = decision
            .target
            .index(&snap.topo)
            .filter(|&i| !self.is_primary(i))
        else {
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
            _ if !self.conns.pooled
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
            _ if !self.conns.pooled
                && class.flags.contains(Flags::USER_VAR_READ)
                && self.state.user_vars_on_primary =>
            {
                return on_primary(Reason::UserVariable)
            }
            // ... and so does the last insert id (pooled sessions set it
            // on whichever connection runs the statement).
            _ if !self.conns.pooled && crate::classify::reads_last_insert_id(text) => {
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
                self.conns.open[index] = None;
            }
            return Err(e);
        }
        self.txn.backend = None;
        self.txn.written = false;
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
            if self.conns.pooled {
                self.held.wants_last_insert_id = crate::classify::reads_last_insert_id(sql);
            }
            new = crate::classify::substitute_row_count(sql, self.held.row_count);
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
        if let Some(level) = self.causal.planned_level.take() {
            if level != crate::consistency::Level::Eventual {
                let served = if self.is_primary(index) {
                    crate::metrics::Served::Primary
                } else {
                    crate::metrics::Served::Replica
                };
                self.count_consistent(level, served);
            }
        }
    }

    /// Status bits the client must see as the session's own when a reply
    /// comes from a backend other than the one holding its transaction.
    pub(super) fn status_override(&self, index: usize) -> Option<(u16, u16)> {
        let mask = status::IN_TRANS | status::AUTOCOMMIT;
        (index != self.txn.backend.unwrap_or(0)).then_some((mask, self.status & mask))
    }
}
