//! Running one command on one backend: open (or borrow) the connection,
//! bring it to the session's state, send, relay the reply to the client,
//! and learn from it.

use super::*;
use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::{BackendConn, ConnectParams};
use crate::protocol::consts::status;
use crate::protocol::reply::Expect;
use relay::{relay, RelayError, ReplyInfo};

impl Session {
    /// The session's connection to backend `index`, opened on first use.
    pub(super) async fn backend(&mut self, index: usize) -> Result<&mut BackendConn, Error> {
        if self.conns.open.get(index).is_none() {
            return Err(Error::BackendUnavailable {
                backend: format!("#{index}"),
                address: String::new(),
                reason: "no such backend".into(),
            });
        }
        if self.conns.pooled && self.conns.open[index].is_none() {
            self.borrow(index, false).await?;
            return self.conns.open[index].as_mut().ok_or(Error::ShuttingDown);
        }
        if self.conns.open[index].is_none() {
            let topo = self.ctx.cluster.topology();
            let params = self.connect_params(&topo.backends[index]);
            let conn = self.connect_watched(index, &params).await?;
            self.install(index, conn, params.database);
        }
        self.conns.open[index].as_mut().ok_or(Error::ShuttingDown)
    }

    /// Opens a connection with `params`, given up sooner than the connect
    /// timeout when the backend is found hung meanwhile (see
    /// [`relay::Silence`]): a stopped server accepts the connection and
    /// never greets.
    async fn connect_watched(
        &self,
        index: usize,
        params: &ConnectParams,
    ) -> Result<BackendConn, Error> {
        let Some(s) = relay::Silence::of(&self.ctx.cluster, index) else {
            return BackendConn::connect(params).await;
        };
        tokio::select! {
            r = BackendConn::connect(params) => r,
            _ = s.hung() => Err(Error::BackendUnavailable {
                backend: params.backend.clone(),
                address: params.address.clone(),
                reason: relay::hung_reason(Some(s)),
            }),
        }
    }

    /// How to log in to backend `b` as this session's account.
    pub(super) fn connect_params(&self, b: &crate::cluster::BackendState) -> ConnectParams {
        ConnectParams {
            backend: b.name.clone(),
            address: b.address.clone(),
            user: self.account.user.clone(),
            credential: self.account.credential.clone(),
            database: self.database.clone(),
            client_capabilities: self.client.caps,
            client_ext_capabilities: self.client.ext_caps,
            charset: self.client.charset,
            attributes: self.client.attributes.clone(),
            timeout: self.ctx.cluster.config().timeouts.connect(),
        }
    }

    /// What the `Compression` row of a statement's reply must say, when it
    /// may differ from the backend's: backend connections are never
    /// compressed, the client's may be (`SHOW [SESSION] STATUS`).
    fn compression_row(&self, class: Option<&crate::classify::Class>) -> Option<bool> {
        use crate::classify::{Flags, Kind};
        let compressed = self.client.stream.get_ref().compressed();
        class
            .filter(|c| c.kind == Kind::Show && !c.flags.intersects(Flags::GLOBAL))
            .filter(|_| compressed)
            .map(|_| true)
    }

    /// Sends a command to its backend and relays the reply.
    /// Commands other than COM_QUERY run on the primary (prepared
    /// statements are not split yet).
    pub(super) async fn forward(&mut self, raw: &[u8], expect: Expect) -> Flow {
        self.ctx.metrics.route(
            m::RouteTarget::Primary,
            crate::router::Reason::Command.label(),
        );
        let primary = match self.primary_now().await {
            Ok(p) => p,
            Err(e) => return self.fail(1, &e).await,
        };
        self.run(primary, raw, expect, None, None, None).await
    }

    /// Runs a command on backend `index`: sync its state, send, relay the
    /// reply, learn from it.
    pub(super) async fn run(
        &mut self,
        index: usize,
        raw: &[u8],
        expect: Expect,
        stmt: Option<(&crate::classify::Class, &[u8])>,
        prepare_id: Option<u32>,
        wait: Option<&consistency::Wait>,
    ) -> Flow {
        let mut index = index;
        while let Err(e) = self.sync(index).await {
            // A connection that broke while being synced cannot be trusted;
            // one whose server refused a statement is still in step.
            if !matches!(e, Error::Server(_)) {
                if let Some(b) = self.conns.open.get_mut(index) {
                    *b = None;
                }
                // What only that connection held (a READ ONLY transaction
                // on a replica, temporary tables, ...) is gone with it: the
                // statement must not run elsewhere without it.
                if self.held_state(index).is_some() {
                    if e.is_backend_failure() {
                        self.note_failure(index, &e, false).await;
                    }
                    return self.backend_failed(index, e, 1, false).await;
                }
                if e.is_backend_failure() {
                    // A read planned again, away from a backend that failed.
                    if self.may_retry(index, stmt) {
                        return self.failed_before_reply(index, e, 1, false, stmt).await;
                    }
                    self.note_failure(index, &e, false).await;
                }
            }
            // A text statement that cannot run with the session's state on a
            // replica runs on the primary, which has that state.
            if !self.is_primary(index) && raw.first() == Some(&crate::protocol::consts::com::QUERY)
            {
                tracing::warn!(session = self.id, backend = index, error = %e,
                    "could not bring a backend to the session's state; using the primary");
                index = self.primary;
                continue;
            }
            return self.fail(1, &e).await;
        }
        let ctx = self.ctx.clone();
        let _in_flight = ctx.cluster.in_flight(index);
        let rewrite = relay::Rewrite {
            status: self.status_override(index),
            stmt_id: prepare_id,
            compression: self.compression_row(stmt.map(|(c, _)| c)),
            read_only_refusal: self.may_follow_read_only(index, raw, stmt),
            digest: self.digest_wanted(index),
        };
        if rewrite.digest {
            self.txn.replay.current_safe = stmt.is_some_and(|(c, sql)| c.may_replay(sql));
        }
        if let Some(w) = wait.filter(|_| !self.is_primary(index)) {
            match self.send_with_wait(index, w, raw, expect).await {
                Ok(consistency::Waited::Reached) => {
                    self.count_consistent(w.level, m::Served::ReplicaAfterWait);
                }
                Ok(consistency::Waited::Covered) => {
                    self.count_consistent(w.level, m::Served::Replica)
                }
                Ok(consistency::Waited::NoPosition) => {
                    self.count_consistent(w.level, m::Served::Primary);
                    return Flow::Fallback;
                }
                Ok(consistency::Waited::TimedOut) => {
                    return match w.on_timeout {
                        crate::config::OnTimeout::Primary => {
                            self.count_consistent(w.level, m::Served::PrimaryAfterTimeout);
                            Flow::Fallback
                        }
                        crate::config::OnTimeout::Error => {
                            self.count_consistent(w.level, m::Served::Error);
                            self.fail(1, &consistency::wait_timed_out(w)).await
                        }
                    };
                }
                Err(e) => {
                    // The client has seen nothing yet: the primary serves it.
                    tracing::warn!(session = self.id, backend = index, error = %e,
                        "replica failed during a position wait; using the primary");
                    self.conns.open[index] = None;
                    self.note_failure(index, &e, false).await;
                    if self.held_state(index).is_some() {
                        return self.backend_failed(index, e, 1, false).await;
                    }
                    self.count_consistent(w.level, m::Served::PrimaryAfterTimeout);
                    return Flow::Fallback;
                }
            }
        } else {
            let retryable = self.may_retry(index, stmt);
            let conn = match self.backend(index).await {
                Ok(c) => c,
                Err(e) if retryable && e.is_backend_failure() => {
                    return self.failed_before_reply(index, e, 1, false, stmt).await
                }
                Err(e) => return self.fail(1, &e).await,
            };
            if let Err(e) = conn.send_command(raw).await {
                self.conns.open[index] = None;
                return self.failed_before_reply(index, e, 1, false, stmt).await;
            }
        }
        let Some(conn) = self.conns.open[index].as_mut() else {
            return Flow::Close;
        };
        let thread_id = conn.thread_id;
        self.watch.publish(index, thread_id);
        let watch = relay::Watch {
            kill: Some(&self.watch.kill),
            client_eof: true,
            silence: relay::Silence::of(&ctx.cluster, index),
        };
        let relayed = relay(
            &mut self.client.stream,
            self.client.caps,
            conn,
            expect,
            &mut self.scratch,
            rewrite,
            watch,
        )
        .await;
        self.watch.idle();
        match relayed {
            Ok(mut info) => {
                self.txn.replay.pending = info.digest.take();
                if !conn.stream.buffer().is_empty() {
                    // The backend said more than its reply: it cannot be trusted.
                    self.conns.open[index] = None;
                }
                self.learn(index, &info, stmt);
                self.learn_diagnostics(index, &info, stmt);
                self.learn_row_count(&info);
                // Also without a pool: text prepares and handlers live on
                // the connection, which the session must know if it is lost.
                self.learn_pooled(&info, stmt);
                if self.conns.pooled {
                    self.mark_applied(index);
                    if let Some((class, sql)) = stmt.filter(|_| !info.error) {
                        self.capture_user_vars(index, class, sql).await;
                    }
                }
                self.learn_hidden_vars(index, &info, stmt).await;
                self.keep_tracking(index, &info, stmt).await;
                self.stmts.last_prepared = info.prepared;
                let read_only_error = info.read_only_error;
                self.absorb(info);
                if read_only_error {
                    self.transaction_met_read_only(index);
                }
                Flow::Continue
            }
            Err(RelayError::Client(_)) | Err(RelayError::ClientGone) => {
                // The client is gone: end its statement as the server ends
                // a vanished client's, and close.
                self.abandon_statement(index, thread_id).await;
                Flow::Close
            }
            Err(RelayError::Killed { sent }) => self.killed_running(index, thread_id, sent).await,
            Err(RelayError::ReadOnly) => self.primary_turned_read_only(index).await,
            Err(RelayError::Backend {
                reason,
                next_seq,
                malformed,
                sent,
                hung,
            }) => {
                let backend = conn.backend.clone();
                self.conns.open[index] = None;
                let e = if malformed {
                    Error::BackendProtocol { backend }
                } else {
                    Error::BackendLost { backend, reason }
                };
                if sent {
                    self.note_failure(index, &e, hung).await;
                    return self.backend_failed(index, e, next_seq, sent).await;
                }
                // Nothing reached the client: the reply starts afresh
                // wherever the read runs next.
                self.failed_before_reply(index, e, next_seq, hung, stmt)
                    .await
            }
        }
    }

    /// Sends a command to every backend connection the session holds; the
    /// client sees the primary's reply.
    pub(super) async fn forward_all(&mut self, raw: &[u8], expect: Expect) -> Flow {
        if self.conns.pooled {
            let _ = self.reset_pooled_connections().await;
            self.state.reset();
            self.reset_pooled();
            self.causal.level_override = None;
            self.stmts.by_id.clear();
            self.txn.backend = None;
            self.txn.written = false;
            self.status = status::AUTOCOMMIT;
            return self.ok_or_close(1).await;
        }
        for i in 1..self.conns.open.len() {
            if let Some(conn) = self.conns.open[i].as_mut() {
                let ok =
                    conn.send_command(raw).await.is_ok() && drain_reply(conn, expect).await.is_ok();
                if !ok {
                    self.conns.open[i] = None;
                }
            }
        }
        let flow = self.run(self.primary, raw, expect, None, None, None).await;
        // Every connection the session holds was reset: nothing to replay.
        self.state.reset();
        self.reset_pooled();
        self.causal.level_override = None;
        self.stmts.by_id.clear();
        self.txn.backend = None;
        self.txn.written = false;
        for s in &mut self.conns.synced {
            *s = Synced {
                version: self.state.version,
                database: self.database.clone(),
                user_vars: 0,
                multi_statements: s.multi_statements,
            };
        }
        flow
    }

    pub(super) fn absorb(&mut self, info: ReplyInfo) {
        let flavor = self.ctx.cluster.positions().flavor();
        if let Some(g) = info.last_gtid.and_then(|g| flavor.parse(&g)) {
            match &mut self.causal.last_write {
                Some(p) => p.merge(&g),
                None => self.causal.last_write = Some(g),
            }
        }
    }
}

/// Reads one reply without relaying it (state sync, lazy prepares, and
/// commands whose reply the client sees from another backend); an ERR
/// becomes an error.
pub(super) async fn drain_reply(conn: &mut BackendConn, expect: Expect) -> Result<Drained, Error> {
    use crate::protocol::reply::{Need, Scanner, Seen};
    let mut sc = Scanner::new(expect, conn.capabilities);
    let mut drained = Drained::default();
    let mut error = None;
    while !sc.is_done() {
        let (h, p) = conn
            .stream
            .read_packet()
            .await
            .map_err(|e| conn.lost(crate::pool::conn::read_reason(&e)))?;
        if let Need::Whole = sc.header(h, p.first().copied()) {
            let seen = sc.packet(h, &p).map_err(|_| Error::BackendProtocol {
                backend: conn.backend.clone(),
            })?;
            match seen {
                Seen::Err => error = crate::error::ServerError::from_packet(&p),
                Seen::PrepareOk { stmt_id, .. } => drained.stmt_id = Some(stmt_id),
                _ => {}
            }
        }
    }
    if let Some(st) = sc.last_status() {
        conn.status = st;
    }
    match error {
        Some(e) => Err(Error::Server(e)),
        None => Ok(drained),
    }
}

/// [`drain_reply`], given up when the backend stays silent and fails its
/// check (`silence`, see [`relay::Silence`]); the backend is then marked
/// down.
pub(super) async fn drain_watched(
    conn: &mut BackendConn,
    expect: Expect,
    silence: Option<relay::Silence<'_>>,
) -> Result<Drained, Error> {
    let Some(s) = silence else {
        return drain_reply(conn, expect).await;
    };
    let hung = tokio::select! {
        r = drain_reply(conn, expect) => return r,
        _ = s.hung() => relay::hung_reason(silence),
    };
    super::retry::report_down(s.cluster, s.index, hung.clone());
    Err(conn.lost(hung))
}

/// What a drained reply said.
#[derive(Debug, Default)]
pub(super) struct Drained {
    /// The statement a COM_STMT_PREPARE created.
    pub(super) stmt_id: Option<u32>,
}
