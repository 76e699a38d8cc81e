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

use super::routing::{Snapshot, StatementPlan};
use super::{Flow, Session};

#[derive(Debug, Clone)]
pub struct PsEntry {
    /// The COM_STMT_PREPARE payload, to prepare elsewhere.
    prepare: Vec<u8>,
    /// The statement's text as prepared (the client's bytes, calls
    /// Causeway answers already replaced).
    sql: Vec<u8>,
    class: Class,
    params: u16,
    /// The backend's statement id, per topology index.
    ids: Vec<Option<u32>>,
    /// Whether each backend has been sent the parameter types.
    types_sent: Vec<bool>,
    /// The last parameter types block a client sent.
    types: Option<Vec<u8>>,
    /// COM_STMT_SEND_LONG_DATA went to the primary: execute there.
    long_data: bool,
    /// Where the last execution opened a cursor.
    cursor_backend: usize,
    /// The statement's bytes as the client sent them (SHOW PROCESSLIST's
    /// Info while it executes).
    text: bytes::Bytes,
}

impl PsEntry {
    /// The statement's bytes as the client sent them.
    pub(super) fn text(&self) -> &bytes::Bytes {
        &self.text
    }
}

fn unknown(id: u32, what: &str) -> Error {
    Error::Server(ServerError {
        code: 1243,
        sql_state: *b"HY000",
        message: format!("Unknown prepared statement handler ({id}) given to {what}"),
    })
}

/// `payload` with the statement id (bytes 1..5) replaced.
fn with_id(payload: &[u8], id: u32) -> Vec<u8> {
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
        let id = self.next_stmt_id;
        self.last_prepared = None;
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
        let flow = self
            .run(0, raw, Expect::Prepare, None, Some(id), None)
            .await;
        if let Some(p) = self.last_prepared.take() {
            if self.tp {
                self.cache_statement(0, raw.to_vec(), p.stmt_id).await;
            }
            self.next_stmt_id = self.next_stmt_id.wrapping_add(1).max(1);
            let n = self.backends.len();
            let text = sql.to_vec();
            let mut ids = vec![None; n];
            ids[0] = Some(p.stmt_id);
            // The prepare carried no parameter types: the first execute on
            // each backend, the primary included, must carry them.
            let types_sent = vec![false; n];
            self.stmts.insert(
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
                    cursor_backend: 0,
                    text: bytes::Bytes::copy_from_slice(sql),
                },
            );
        }
        flow
    }

    /// Plans a COM_STMT_EXECUTE from the statement's snapshot (as
    /// [`Session::plan`] does a COM_QUERY).
    async fn plan_execute(
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
        if self.tp {
            // A pooled connection's own last insert id is another session's.
            self.ps.wants_last_insert_id = crate::classify::reads_last_insert_id(&e.sql);
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

    pub(super) async fn stmt_execute(&mut self, id: u32, flags: u8, raw: &[u8], seq: u8) -> Flow {
        let Some(e) = self.stmts.get(&id).cloned() else {
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
        self.count_route(&plan);
        let (index, wait) = (plan.index, plan.wait);
        let flow = self
            .execute_on(id, index, flags, raw, seq, &e, wait.as_ref())
            .await;
        match flow {
            Flow::Fallback => {
                self.ctx.metrics.route(
                    crate::metrics::RouteTarget::Primary,
                    crate::router::Reason::ConsistencyFallback.label(),
                );
                self.execute_on(id, 0, flags, raw, seq, &e, None).await
            }
            flow => flow,
        }
    }

    /// Runs COM_STMT_EXECUTE on backend `index`, preparing it there first.
    #[allow(clippy::too_many_arguments)]
    async fn execute_on(
        &mut self,
        id: u32,
        index: usize,
        flags: u8,
        raw: &[u8],
        seq: u8,
        e: &PsEntry,
        wait: Option<&super::consistency::Wait>,
    ) -> Flow {
        let backend_id = match self.ensure_prepared(id, index).await {
            Ok(b) => b,
            // A connection lost with what only it held (a READ ONLY
            // transaction on a replica, temporary tables, ...): the session
            // cannot go on without it.
            Err(err) if !matches!(err, Error::Server(_)) && self.held_state(index).is_some() => {
                self.backends[index] = None;
                let in_trans = self.txn_backend.is_some();
                return self.backend_failed(index, err, seq, false, in_trans).await;
            }
            // A replica that cannot be reached or brought to the session's
            // state: the primary runs the statement instead.
            Err(err) if index > 0 && !matches!(err, Error::Server(_)) => {
                tracing::warn!(session = self.id, backend = index, error = %err,
                    "could not prepare on a replica; using the primary");
                self.backends[index] = None;
                return Flow::Fallback;
            }
            Err(err) => return self.fail(seq, &err).await,
        };
        let payload = self.execute_payload(id, index, backend_id, raw);
        // CURSOR_TYPE_READ_ONLY: the only flag with which a server opens a cursor.
        let wants_cursor = flags & 1 != 0;
        let expect = if wants_cursor {
            Expect::ExecuteCursor
        } else {
            Expect::ResultSets
        };
        if wants_cursor {
            if let Some(e) = self.stmts.get_mut(&id) {
                e.cursor_backend = index;
            }
        }
        let flow = self
            .run(
                index,
                &payload,
                expect,
                Some((&e.class, &e.sql)),
                None,
                wait,
            )
            .await;
        if self.tp {
            // A stored program that FETCHed a cursor of its own leaves the
            // flag in its final status: only an execute that asked for a
            // cursor can have opened one.
            let cursor = wants_cursor
                && self.backends[index].as_ref().is_some_and(|c| {
                    c.status & crate::protocol::consts::status::CURSOR_EXISTS != 0
                });
            if cursor {
                self.ps.cursor = Some((id, index));
            } else if self.ps.cursor.is_some_and(|(c, _)| c == id) {
                self.ps.cursor = None;
            }
            if self.ps.long_data == Some(id) {
                self.ps.long_data = None;
            }
        }
        flow
    }

    /// Records a statement prepared on the pooled connection for backend
    /// `index`, closing any it displaces there.
    async fn cache_statement(&mut self, index: usize, prepare: Vec<u8>, id: u32) {
        let Some(conn) = self.backends.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let Some(p) = conn.pooled.as_mut() else {
            return;
        };
        for old in p.applied.add_stmt(prepare, id) {
            let mut close = vec![com::STMT_CLOSE];
            close.extend_from_slice(&old.to_le_bytes());
            if conn.send_command(&close).await.is_err() {
                self.backends[index] = None;
                return;
            }
        }
    }

    /// The statement's id on the pooled connection for backend `index`,
    /// preparing it there if that connection has not seen it.
    async fn ensure_prepared_pooled(
        &mut self,
        prepare: Vec<u8>,
        index: usize,
    ) -> Result<u32, Error> {
        self.sync(index).await?;
        let conn = self.backend(index).await?;
        if let Some(id) = conn.pooled.as_mut().and_then(|p| p.applied.stmt(&prepare)) {
            return Ok(id);
        }
        conn.send_command(&prepare).await?;
        let id = super::drain_reply(conn, Expect::Prepare)
            .await?
            .stmt_id
            .ok_or(Error::BackendProtocol {
                backend: conn.backend.clone(),
            })?;
        self.ps.fresh_prepare = true;
        self.cache_statement(index, prepare, id).await;
        Ok(id)
    }

    /// The server id of client statement `id` on the connection the
    /// session holds for backend `index` (transaction pool), if prepared there.
    fn pooled_id(&mut self, id: u32, index: usize) -> Option<u32> {
        let prepare = &self.stmts.get(&id)?.prepare;
        let conn = self.backends.get_mut(index)?.as_mut()?;
        conn.pooled.as_mut()?.applied.stmt(prepare)
    }

    /// The statement's id on backend `index`, preparing it there first if needed.
    async fn ensure_prepared(&mut self, id: u32, index: usize) -> Result<u32, Error> {
        let Some(e) = self.stmts.get(&id) else {
            return Err(unknown(id, "mysqld_stmt_execute"));
        };
        if self.tp {
            let prepare = e.prepare.clone();
            return self.ensure_prepared_pooled(prepare, index).await;
        }
        if let Some(b) = e.ids.get(index).copied().flatten() {
            if self.backends.get(index).is_some_and(Option::is_some) {
                return Ok(b);
            }
        }
        let prepare = e.prepare.clone();
        self.sync(index).await?;
        let conn = self.backend(index).await?;
        conn.send_command(&prepare).await?;
        let b = super::drain_reply(conn, Expect::Prepare)
            .await?
            .stmt_id
            .ok_or(Error::BackendProtocol {
                backend: conn.backend.clone(),
            })?;
        self.ps.fresh_prepare = true;
        if let Some(e) = self.stmts.get_mut(&id) {
            if let Some(slot) = e.ids.get_mut(index) {
                *slot = Some(b);
            }
            if let Some(t) = e.types_sent.get_mut(index) {
                *t = false;
            }
        }
        Ok(b)
    }

    /// The COM_STMT_EXECUTE for backend `index`: its statement id, and the
    /// parameter types if that backend has not been sent them.
    fn execute_payload(&mut self, id: u32, index: usize, backend_id: u32, raw: &[u8]) -> Vec<u8> {
        let mut payload = with_id(raw, backend_id);
        let Some(e) = self.stmts.get_mut(&id) else {
            return payload;
        };
        if e.params == 0 {
            return payload;
        }
        if self.tp {
            // Another session may have sent the connection other types.
            e.types_sent.iter_mut().for_each(|t| *t = false);
        }
        // command(1) id(4) flags(1) iterations(4) null-bitmap new-params-bound(1) [types]
        let nb = usize::from(e.params).div_ceil(8);
        let flag_at = 10 + nb;
        let types_len = 2 * usize::from(e.params);
        match payload.get(flag_at) {
            Some(1) => {
                if let Some(t) = payload.get(flag_at + 1..flag_at + 1 + types_len) {
                    e.types = Some(t.to_vec());
                }
                if let Some(s) = e.types_sent.get_mut(index) {
                    *s = true;
                }
            }
            Some(0) if !e.types_sent.get(index).copied().unwrap_or(false) => {
                if let Some(types) = &e.types {
                    let mut v = Vec::with_capacity(payload.len() + types.len());
                    v.extend_from_slice(&payload[..flag_at]);
                    v.push(1);
                    v.extend_from_slice(types);
                    v.extend_from_slice(&payload[flag_at + 1..]);
                    payload = v;
                    if let Some(s) = e.types_sent.get_mut(index) {
                        *s = true;
                    }
                }
            }
            _ => {}
        }
        payload
    }

    pub(super) async fn stmt_fetch(&mut self, id: u32, raw: &[u8], seq: u8) -> Flow {
        let Some(e) = self.stmts.get(&id) else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_fetch")).await;
        };
        let index = e.cursor_backend;
        let b = if self.tp {
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
        if self.tp {
            self.learn_fetch(index);
        }
        flow
    }

    pub(super) async fn stmt_reset(&mut self, id: u32, raw: &[u8], seq: u8) -> Flow {
        let Some(e) = self.stmts.get_mut(&id) else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_reset")).await;
        };
        e.long_data = false;
        if self.tp {
            return self.stmt_reset_pooled(id, raw, seq).await;
        }
        let ids = e.ids.clone();
        for (i, b) in ids.iter().enumerate().skip(1) {
            if let (Some(b), Some(Some(conn))) = (b, self.backends.get_mut(i)) {
                let ok = conn.send_command(&with_id(raw, *b)).await.is_ok()
                    && super::drain_reply(conn, Expect::Single).await.is_ok();
                if !ok {
                    self.backends[i] = None;
                }
            }
        }
        let Some(Some(b)) = ids.first() else {
            return self.fail(seq, &unknown(id, "mysqld_stmt_reset")).await;
        };
        self.run(0, &with_id(raw, *b), Expect::Single, None, None, None)
            .await
    }

    /// COM_STMT_RESET with the transaction pool: only a connection the
    /// session holds (a cursor, long data) has anything to reset.
    async fn stmt_reset_pooled(&mut self, id: u32, raw: &[u8], seq: u8) -> Flow {
        let held = self
            .ps
            .cursor
            .filter(|(c, _)| *c == id)
            .map(|(_, b)| b)
            .or((self.ps.long_data == Some(id)).then_some(0));
        if self.ps.cursor.is_some_and(|(c, _)| c == id) {
            self.ps.cursor = None;
        }
        if self.ps.long_data == Some(id) {
            self.ps.long_data = None;
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
        if self.tp {
            if !self.stmts.contains_key(&id) {
                return Flow::Continue;
            }
            if let Some(e) = self.stmts.get_mut(&id) {
                e.long_data = true;
            }
            self.ps.long_data = Some(id);
            match self.ensure_prepared(id, 0).await {
                Ok(b) => {
                    if let Some(conn) = self.backends[0].as_mut() {
                        if conn.send_command(&with_id(raw, b)).await.is_err() {
                            self.backends[0] = None;
                        }
                    }
                }
                Err(_) => self.backends[0] = None,
            }
            return Flow::Continue;
        }
        let Some(e) = self.stmts.get_mut(&id) else {
            return Flow::Continue;
        };
        e.long_data = true;
        if let (Some(Some(b)), Some(Some(conn))) = (e.ids.first(), self.backends.get_mut(0)) {
            if conn.send_command(&with_id(raw, *b)).await.is_err() {
                self.backends[0] = None;
            }
        }
        Flow::Continue
    }

    pub(super) async fn stmt_close(&mut self, id: u32) -> Flow {
        if self.tp {
            // Statements stay prepared on pooled connections for the next
            // session; only an open cursor or long data is ended.
            let held = self
                .ps
                .cursor
                .filter(|(c, _)| *c == id)
                .map(|(_, b)| b)
                .or((self.ps.long_data == Some(id)).then_some(0));
            if let Some(index) = held {
                if let Some(b) = self.pooled_id(id, index) {
                    let mut p = vec![com::STMT_RESET];
                    p.extend_from_slice(&b.to_le_bytes());
                    if let Some(conn) = self.backends[index].as_mut() {
                        let ok = conn.send_command(&p).await.is_ok()
                            && super::drain_reply(conn, Expect::Single).await.is_ok();
                        if !ok {
                            self.backends[index] = None;
                        }
                    }
                }
                self.ps.cursor = self.ps.cursor.filter(|(c, _)| *c != id);
                if self.ps.long_data == Some(id) {
                    self.ps.long_data = None;
                }
            }
            self.stmts.remove(&id);
            return Flow::Continue;
        }
        let Some(e) = self.stmts.remove(&id) else {
            return Flow::Continue;
        };
        for (i, b) in e.ids.iter().enumerate() {
            if let (Some(b), Some(Some(conn))) = (b, self.backends.get_mut(i)) {
                let mut p = vec![com::STMT_CLOSE];
                p.extend_from_slice(&b.to_le_bytes());
                if conn.send_command(&p).await.is_err() {
                    self.backends[i] = None;
                }
            }
        }
        Flow::Continue
    }

    /// A backend connection was replaced: statements prepared on the old
    /// one are gone there.
    pub(super) fn forget_backend_statements(&mut self, index: usize) {
        for e in self.stmts.values_mut() {
            if let Some(id) = e.ids.get_mut(index) {
                *id = None;
            }
            if let Some(t) = e.types_sent.get_mut(index) {
                *t = false;
            }
        }
    }
}
