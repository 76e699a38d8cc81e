//! The backend side of prepared statements: preparing a client's
//! statement on the backend that runs it (once per connection), and the
//! execute packet with that backend's statement id.

use super::stmt::*;
use super::{Flow, Session};
use crate::error::Error;
use crate::protocol::consts::com;
use crate::protocol::reply::Expect;

impl Session {
    /// Runs COM_STMT_EXECUTE on backend `index`, preparing it there first.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute_on(
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
                self.conns.open[index] = None;
                if err.is_backend_failure() {
                    self.note_failure(index, &err, false).await;
                }
                return self.backend_failed(index, err, seq, false).await;
            }
            // A read planned again, away from a backend that failed.
            Err(err)
                if err.is_backend_failure() && self.may_retry(index, Some((&e.class, &e.sql))) =>
            {
                self.conns.open[index] = None;
                let stmt = Some((&e.class, e.sql.as_slice()));
                return self.failed_before_reply(index, err, seq, false, stmt).await;
            }
            // A replica that cannot be reached or brought to the session's
            // state: the primary runs the statement instead.
            Err(err) if !self.is_primary(index) && !matches!(err, Error::Server(_)) => {
                tracing::warn!(session = self.id, backend = index, error = %err,
                    "could not prepare on a replica; using the primary");
                self.conns.open[index] = None;
                if err.is_backend_failure() {
                    self.note_failure(index, &err, false).await;
                }
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
            if let Some(e) = self.stmts.by_id.get_mut(&id) {
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
        if self.conns.pooled {
            // A stored program that FETCHed a cursor of its own leaves the
            // flag in its final status: only an execute that asked for a
            // cursor can have opened one.
            let cursor = wants_cursor
                && self.conns.open[index].as_ref().is_some_and(|c| {
                    c.status & crate::protocol::consts::status::CURSOR_EXISTS != 0
                });
            if cursor {
                self.held.cursor = Some((id, index));
            } else if self.held.cursor.is_some_and(|(c, _)| c == id) {
                self.held.cursor = None;
            }
            if self.held.long_data == Some(id) {
                self.held.long_data = None;
            }
        }
        flow
    }

    /// Records a statement prepared on the pooled connection for backend
    /// `index`, closing any it displaces there.
    pub(super) async fn cache_statement(&mut self, index: usize, prepare: Vec<u8>, id: u32) {
        let Some(conn) = self.conns.open.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let Some(p) = conn.pooled.as_mut() else {
            return;
        };
        for old in p.applied.add_stmt(prepare, id) {
            let mut close = vec![com::STMT_CLOSE];
            close.extend_from_slice(&old.to_le_bytes());
            if conn.send_command(&close).await.is_err() {
                self.conns.open[index] = None;
                return;
            }
        }
    }

    /// The statement's id on the pooled connection for backend `index`,
    /// preparing it there if that connection has not seen it.
    pub(super) async fn ensure_prepared_pooled(
        &mut self,
        prepare: Vec<u8>,
        index: usize,
    ) -> Result<u32, Error> {
        self.sync(index).await?;
        let cluster = self.ctx.cluster.clone();
        let silence = super::relay::Silence::of(&cluster, index);
        let conn = self.backend(index).await?;
        if let Some(id) = conn.pooled.as_mut().and_then(|p| p.applied.stmt(&prepare)) {
            return Ok(id);
        }
        conn.send_command(&prepare).await?;
        let id = super::drain_watched(conn, Expect::Prepare, silence)
            .await?
            .stmt_id
            .ok_or(Error::BackendProtocol {
                backend: conn.backend.clone(),
            })?;
        self.held.fresh_prepare = true;
        self.cache_statement(index, prepare, id).await;
        Ok(id)
    }

    /// The server id of client statement `id` on the connection the
    /// session holds for backend `index` (transaction pool), if prepared there.
    pub(super) fn pooled_id(&mut self, id: u32, index: usize) -> Option<u32> {
        let prepare = &self.stmts.by_id.get(&id)?.prepare;
        let conn = self.conns.open.get_mut(index)?.as_mut()?;
        conn.pooled.as_mut()?.applied.stmt(prepare)
    }

    /// The statement's id on backend `index`, preparing it there first if needed.
    pub(super) async fn ensure_prepared(&mut self, id: u32, index: usize) -> Result<u32, Error> {
        let Some(e) = self.stmts.by_id.get(&id) else {
            return Err(unknown(id, "mysqld_stmt_execute"));
        };
        if self.conns.pooled {
            let prepare = e.prepare.clone();
            return self.ensure_prepared_pooled(prepare, index).await;
        }
        // First: a connection closed while idle is replaced here, and its
        // statements with it.
        self.sync(index).await?;
        let Some(e) = self.stmts.by_id.get(&id) else {
            return Err(unknown(id, "mysqld_stmt_execute"));
        };
        if let Some(b) = e.ids.get(index).copied().flatten() {
            if self.conns.open.get(index).is_some_and(Option::is_some) {
                return Ok(b);
            }
        }
        let prepare = e.prepare.clone();
        let cluster = self.ctx.cluster.clone();
        let silence = super::relay::Silence::of(&cluster, index);
        let conn = self.backend(index).await?;
        conn.send_command(&prepare).await?;
        let b = super::drain_watched(conn, Expect::Prepare, silence)
            .await?
            .stmt_id
            .ok_or(Error::BackendProtocol {
                backend: conn.backend.clone(),
            })?;
        self.held.fresh_prepare = true;
        if let Some(e) = self.stmts.by_id.get_mut(&id) {
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
    pub(super) fn execute_payload(
        &mut self,
        id: u32,
        index: usize,
        backend_id: u32,
        raw: &[u8],
    ) -> Vec<u8> {
        let mut payload = with_id(raw, backend_id);
        let Some(e) = self.stmts.by_id.get_mut(&id) else {
            return payload;
        };
        if e.params == 0 {
            return payload;
        }
        if self.conns.pooled {
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

    /// A backend connection was replaced: statements prepared on the old
    /// one are gone there.
    pub(super) fn forget_backend_statements(&mut self, index: usize) {
        for e in self.stmts.by_id.values_mut() {
            if let Some(id) = e.ids.get_mut(index) {
                *id = None;
            }
            if let Some(t) = e.types_sent.get_mut(index) {
                *t = false;
            }
        }
    }

    /// MariaDB's COM_STMT_BULK_EXECUTE (for a client that negotiated bulk
    /// operations): planned as the statement's COM_STMT_EXECUTE is (in
    /// practice a write, so the primary), prepared on that backend first,
    /// the parameter types sent along when that connection has not had
    /// them.
    pub(super) async fn stmt_bulk_execute(
        &mut self,
        id: u32,
        flags: u16,
        raw: &[u8],
        seq: u8,
    ) -> Flow {
        use crate::protocol::consts::ext_cap;
        if self.client.ext_caps & ext_cap::STMT_BULK_OPERATIONS == 0 {
            return self
                .fail(seq, &Error::UnknownCommand(com::STMT_BULK_EXECUTE))
                .await;
        }
        let id = self.client_stmt_id(id);
        let Some(e) = self.stmts.by_id.get(&id).cloned() else {
            return self
                .fail(seq, &unknown(id, "mysqld_stmt_bulk_execute"))
                .await;
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
        let index = plan.index;
        let backend_id = match self.ensure_prepared(id, index).await {
            Ok(b) => b,
            Err(err) => return self.fail(seq, &err).await,
        };
        let payload = self.bulk_payload(id, index, backend_id, flags, raw);
        self.run(
            index,
            &payload,
            Expect::ResultSets,
            Some((&e.class, &e.sql)),
            None,
            plan.wait.as_ref(),
        )
        .await
    }

    /// The bulk-execute packet for backend `index`: its statement id, and
    /// the parameter types inserted when the client left them out and that
    /// connection has not seen them.
    fn bulk_payload(
        &mut self,
        id: u32,
        index: usize,
        backend_id: u32,
        flags: u16,
        raw: &[u8],
    ) -> Vec<u8> {
        // command(1) id(4) flags(2) [types(2 per parameter)] rows
        const SEND_TYPES: u16 = 128;
        let mut payload = with_id(raw, backend_id);
        let Some(e) = self.stmts.by_id.get_mut(&id) else {
            return payload;
        };
        let types_len = 2 * usize::from(e.params);
        if self.conns.pooled {
            e.types_sent.iter_mut().for_each(|t| *t = false);
        }
        if flags & SEND_TYPES != 0 {
            if let Some(t) = payload.get(7..7 + types_len) {
                e.types = Some(t.to_vec());
            }
            if let Some(s) = e.types_sent.get_mut(index) {
                *s = true;
            }
        } else if !e.types_sent.get(index).copied().unwrap_or(false) {
            if let (Some(types), Some(f)) = (&e.types, payload.get_mut(5..7)) {
                f.copy_from_slice(&(flags | SEND_TYPES).to_le_bytes());
                let mut v = Vec::with_capacity(payload.len() + types.len());
                v.extend_from_slice(&payload[..7]);
                v.extend_from_slice(types);
                v.extend_from_slice(&payload[7..]);
                payload = v;
                if let Some(s) = e.types_sent.get_mut(index) {
                    *s = true;
                }
            }
        }
        payload
    }
}
