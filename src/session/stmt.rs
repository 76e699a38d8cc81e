//! Binary-protocol prepared statements that follow the routing.
//!
//! The client sees one statement id, Causeway's own. The statement is
//! prepared on the primary when the client asks (that reply carries the
//! metadata the client needs); each execution is routed like the same SQL
//! sent as text — a read-only SELECT may execute on a replica — and the
//! statement is prepared there on first use. Parameter types sent with one
//! execution are remembered and re-sent to a backend that has not seen them.
//! COM_STMT_CLOSE closes it everywhere.

use crate::classify::{classify, Class};
use crate::error::{Error, ServerError};
use crate::protocol::consts::com;
use crate::protocol::reply::Expect;

use super::plan::{Snapshot, StatementPlan};
use super::{Flow, Session};

#[derive(Debug, Clone)]
pub struct PsEntry {
    /// The COM_STMT_PREPARE payload, to prepare elsewhere.
    pub(super) prepare: Vec<u8>,
    /// The statement's text as prepared (the client's bytes, calls
    /// Causeway answers already replaced).
    pub(super) sql: Vec<u8>,
    pub(super) class: Class,
    pub(super) params: u16,
    /// The backend's statement id, per topology index.
    pub(super) ids: Vec<Option<u32>>,
    /// Whether each backend has been sent the parameter types.
    pub(super) types_sent: Vec<bool>,
    /// The last parameter types block a client sent.
    pub(super) types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA went to the primary: execute there.
    pub(super) long_data: bool,
    /// Where the last execution opened a cursor.
    pub(super) cursor_backend: usize,
    /// The statement's bytes as the client sent them (SHOW PROCESSLIST's
    /// Info while it executes).
    pub(super) text: bytes::Bytes,
}

impl PsEntry {
    /// The statement's bytes as the client sent them.
    pub(super) fn text(&self) -> &bytes::Bytes {
        &self.text
    }
}

pub(super) fn unknown(id: u32, what: &str) -> Error {
    Error::Server(ServerError {
        code: 1243,
        sql_state: *b"HY000",
        message: format!("Unknown prepared statement handler ({id}) given to {what}"),
    })
}

/// `payload` with the statement id (bytes 1..5) replaced.
pub(super) fn with_id(payload: &[u8], id: u32) -> Vec<u8> {
    let mut v = payload.to_vec();
    if let Some(b) = v.get_mut(1..5) {
        b.copy_from_slice(&id.to_le_bytes());
    }
    v
}

impl Session {
    pub(super) async fn stmt_prepare(&mut self, sql: &[u8], raw: &[u8]) -> Flow {
        // A prepared KILL would run on a backend with the client's id.
        if crate::classify::has_kill(&String::from_utf8_lossy(sql)) {
            return self.fail(1, &Error::KillUnsupported).await;
        }
        let id = self.stmts.next_id;
        self.stmts.last_prepared = None;
        self.stmts.last_client_id = None;
        // The prepared text, as every backend gets it: `CONNECTION_ID()`
        // is the session's id wherever it executes.
        let rewritten = crate::classify::substitute_connection_id(sql, self.id).map(|mut v| {
            v.insert(0, com::STMT_PREPARE);
            v
        });
        let (sql, raw) = match &rewritten {
            Some(v) => (v.get(1..).unwrap_or(&[]), v.as_slice()),
            None => (sql, raw),
        };
        // On the primary; while there is none (or it is down) on a backend
        // that is up: a prepare changes no data, and executes prepare again
        // where they run.
        let at = self.prepare_backend();
        let flow = self
            .run(at, raw, Expect::Prepare, None, Some(id), None)
            .await;
        if let Some(p) = self.stmts.last_prepared.take() {
            if self.conns.pooled {
                self.cache_statement(at, raw.to_vec(), p.stmt_id).await;
            }
            self.stmts.next_id = self.stmts.next_id.wrapping_add(1).max(1);
            self.stmts.last_client_id = Some(id);
            let n = self.conns.open.len();
            let text = sql.to_vec();
            let mut ids = vec![None; n];
            ids[at] = Some(p.stmt_id);
            // The prepare carried no parameter types: the first execute on
            // each backend, the primary included, must carry them.
            let types_sent = vec![false; n];
            self.stmts.by_id.insert(
                id,
                PsEntry {
                    prepare: raw.to_vec(),
                    class: classify(&String::from_utf8_lossy(&text)),
                    sql: text,
                    params: p.params,
                    ids,
                    types_sent,
                    types: None,
                    long_data: false,
                    cursor_backend: at,
                    text: bytes::Bytes::copy_from_slice(sql),
                },
            );
        }
        flow
    }

    /// Plans a COM_STMT_EXECUTE from the statement's snapshot (as
    /// [`Session::plan`] does a COM_QUERY).
    pub(super) async fn plan_execute(
        &mut self,
        snap: &mut Snapshot,
        e: &PsEntry,
    ) -> Result<StatementPlan, (Error, bool)> {
        let mut decision = if e.long_data {
            crate::router::Decision {
                target: crate::router::Target::Primary,
                reason: crate::router::Reason::LongData,
            }
        } else {
            self.decide(snap, &e.class, &e.sql)
        };
        if self.conns.pooled {
            // A pooled connection's own last insert id is another session's.
            self.held.wants_last_insert_id = crate::classify::reads_last_insert_id(&e.sql);
        }
        match self
            .read_only_guard(snap, &decision, &e.class, &e.sql)
            .await
        {
            Ok(Some(d)) => decision = d,
            Ok(None) => {}
            Err(err) => return Err((err, true)),
        }
        self.plan_decided(snap, decision, &e.class)
            .await
            .map_err(|err| (err, false))
    }

    /// A statement id as the client gave it: `-1` is the statement it
    /// prepared last (MariaDB's direct execution pipelines the execute
    /// behind the prepare, before it knows the id).
    pub(super) fn client_stmt_id(&self, id: u32) -> u32 {
        match (id, self.stmts.last_client_id) {
            (u32::MAX, Some(last)) => last,
            _ => id,
        }
    }

    pub(super) async fn stmt_execute(&mut self, id: u32, flags: u8, raw: &[u8], seq: u8) -> Flow {
        let id = self.client_stmt_id(id);
        let Some(e) = self.stmts.by_id.get(&id).cloned() else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_execute")).await;
        };
        let mut snap = self.snapshot();
        let planned = self.plan_execute(&mut snap, &e).await;
        self.recycle(snap);
        let plan = match planned {
            Ok(p) => p,
            Err((err, true)) => return self.fail_unless_lost(seq, &err).await,
            Err((err, false)) => return self.fail(seq, &err).await,
        };
        let mut plan = plan;
        let mut attempts = super::retry::Attempts::default();
        let mut replayed = false;
        loop {
            self.count_route(&plan);
            let flow = match self
                .execute_on(id, plan.index, flags, raw, seq, &e, plan.wait.as_ref())
                .await
            {
                Flow::Fallback => {
                    self.ctx.metrics.route(
                        crate::metrics::RouteTarget::Primary,
                        crate::router::Reason::ConsistencyFallback.label(),
                    );
                    let primary = match self.primary_now().await {
                        Ok(p) => p,
                        Err(err) => return self.fail(seq, &err).await,
                    };
                    self.execute_on(id, primary, flags, raw, seq, &e, None)
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
                    let planned = self.plan_execute(&mut snap, &e).await;
                    self.recycle(snap);
                    plan = match planned {
                        Ok(p) => p,
                        Err((err, _)) => return self.fail(seq, &err).await,
                    };
                    continue;
                }
                Flow::Replay(failure) => return self.fail(failure.seq, &failure.error).await,
                flow => return flow,
            };
            // As for text reads (`Session::query`): plan it again.
            let mut snap = self.snapshot();
            let planned = self.plan_execute(&mut snap, &e).await;
            self.recycle(snap);
            plan = match planned {
                Ok(p) => match self.next_run(&mut attempts, &failure, p) {
                    Some(p) => p,
                    None => return self.fail(failure.seq, &failure.error).await,
                },
                // Why it cannot run anywhere now (no primary, ...).
                Err((e, _)) => return self.fail(failure.seq, &e).await,
            };
        }
    }

    pub(super) async fn stmt_fetch(&mut self, id: u32, raw: &[u8], seq: u8) -> Flow {
        let Some(e) = self.stmts.by_id.get(&id) else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_fetch")).await;
        };
        let index = e.cursor_backend;
        let b = if self.conns.pooled {
            self.pooled_id(id, index)
        } else {
            e.ids.get(index).copied().flatten()
        };
        let Some(b) = b else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_fetch")).await;
        };
        let payload = with_id(raw, b);
        let flow = self
            .run(index, &payload, Expect::Fetch, None, None, None)
            .await;
        if self.conns.pooled {
            self.learn_fetch(index);
        }
        flow
    }

    pub(super) async fn stmt_reset(&mut self, id: u32, raw: &[u8], seq: u8) -> Flow {
        let Some(e) = self.stmts.by_id.get_mut(&id) else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_reset")).await;
        };
        e.long_data = false;
        if self.conns.pooled {
            return self.stmt_reset_pooled(id, raw, seq).await;
        }
        let ids = e.ids.clone();
        // The reply relayed is the primary's, else the first backend's
        // that has the statement; the others are reset quietly.
        let relay_at = Some(self.primary)
            .filter(|&p| matches!(ids.get(p), Some(Some(_))))
            .or_else(|| ids.iter().position(Option::is_some));
        for (i, b) in ids.iter().enumerate() {
            if Some(i) == relay_at {
                continue;
            }
            if let (Some(b), Some(Some(conn))) = (b, self.conns.open.get_mut(i)) {
                let ok = conn.send_command(&with_id(raw, *b)).await.is_ok()
                    && super::drain_reply(conn, Expect::Single).await.is_ok();
                if !ok {
                    self.conns.open[i] = None;
                }
            }
        }
        let Some((at, Some(b))) = relay_at.map(|i| (i, ids[i])) else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_reset")).await;
        };
        self.run(at, &with_id(raw, b), Expect::Single, None, None, None)
            .await
    }

    /// COM_STMT_RESET with the transaction pool: only a connection the
    /// session holds (a cursor, long data) has anything to reset.
    async fn stmt_reset_pooled(&mut self, id: u32, raw: &[u8], seq: u8) -> Flow {
        let held = self
            .held
            .cursor
            .filter(|(c, _)| *c == id)
            .map(|(_, b)| b)
            .or((self.held.long_data == Some(id)).then_some(self.primary));
        if self.held.cursor.is_some_and(|(c, _)| c == id) {
            self.held.cursor = None;
        }
        if self.held.long_data == Some(id) {
            self.held.long_data = None;
        }
        if let Some(index) = held {
            if let Some(b) = self.pooled_id(id, index) {
                return self
                    .run(index, &with_id(raw, b), Expect::Single, None, None, None)
                    .await;
            }
        }
        self.ok_or_close(seq).await
    }

    pub(super) async fn stmt_long_data(&mut self, id: u32, raw: &[u8]) -> Flow {
        // No reply, even on error: the error surfaces at execute time.
        if self.conns.pooled {
            if !self.stmts.by_id.contains_key(&id) {
                return Flow::Continue;
            }
            if let Some(e) = self.stmts.by_id.get_mut(&id) {
                e.long_data = true;
            }
            self.held.long_data = Some(id);
            let p = self.primary;
            match self.ensure_prepared(id, p).await {
                Ok(b) => {
                    if let Some(conn) = self.conns.open[p].as_mut() {
                        if conn.send_command(&with_id(raw, b)).await.is_err() {
                            self.conns.open[p] = None;
                        }
                    }
                }
                Err(_) => self.conns.open[p] = None,
            }
            return Flow::Continue;
        }
        let Some(e) = self.stmts.by_id.get_mut(&id) else {
            return Flow::Continue;
        };
        e.long_data = true;
        let p = self.primary;
        if let (Some(Some(b)), Some(Some(conn))) = (e.ids.get(p), self.conns.open.get_mut(p)) {
            if conn.send_command(&with_id(raw, *b)).await.is_err() {
                self.conns.open[p] = None;
            }
        }
        Flow::Continue
    }

    pub(super) async fn stmt_close(&mut self, id: u32) -> Flow {
        if self.conns.pooled {
            // Statements stay prepared on pooled connections for the next
            // session; only an open cursor or long data is ended.
            let held = self
                .held
                .cursor
                .filter(|(c, _)| *c == id)
                .map(|(_, b)| b)
                .or((self.held.long_data == Some(id)).then_some(self.primary));
            if let Some(index) = held {
                if let Some(b) = self.pooled_id(id, index) {
                    let mut p = vec![com::STMT_RESET];
                    p.extend_from_slice(&b.to_le_bytes());
                    if let Some(conn) = self.conns.open[index].as_mut() {
                        let ok = conn.send_command(&p).await.is_ok()
                            && super::drain_reply(conn, Expect::Single).await.is_ok();
                        if !ok {
                            self.conns.open[index] = None;
                        }
                    }
                }
                self.held.cursor = self.held.cursor.filter(|(c, _)| *c != id);
                if self.held.long_data == Some(id) {
                    self.held.long_data = None;
                }
            }
            self.stmts.by_id.remove(&id);
            return Flow::Continue;
        }
        let Some(e) = self.stmts.by_id.remove(&id) else {
            return Flow::Continue;
        };
        for (i, b) in e.ids.iter().enumerate() {
            if let (Some(b), Some(Some(conn))) = (b, self.conns.open.get_mut(i)) {
                let mut p = vec![com::STMT_CLOSE];
                p.extend_from_slice(&b.to_le_bytes());
                if conn.send_command(&p).await.is_err() {
                    self.conns.open[i] = None;
                }
            }
        }
        Flow::Continue
    }
}
