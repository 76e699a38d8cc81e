//! One task per client connection: the command loop, the backend
//! connections the session holds (one per backend it uses), and the state
//! learned from the server's replies.
//!
//! May import everything below it (`admin`, `pool`, `cluster`, `router`,
//! `protocol`, `position`, `config`, `error`).

mod carry;
mod consistency;
mod explain;
mod global_read;
mod idle;
mod kill;
mod login;
mod loss;
mod processlist;
pub mod registry;
mod relay;
mod routing;
pub mod state;
mod stmt;
mod txn;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::{BackendConn, ConnectParams};
use crate::pool::txn_pool::{Lease, TxnPool};
use crate::position::Position;
use crate::protocol::auth::Credential;
use crate::protocol::command::{Command, CommandError};
use crate::protocol::consts::status;
use crate::protocol::packet::{begin_packet, finish_packet};
use crate::protocol::reply::Expect;
use crate::protocol::response::Ok as OkPacket;
use crate::protocol::stream::{PacketStream, ReadError};

pub use registry::Registry;
use relay::{relay, RelayError, ReplyInfo};
use routing::Synced;
use state::SessionState;

/// What every session shares.
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    /// Connections kept for the session-level pool: sessions hold them for
    /// their lifetime and leave them for the next session.
    pub session_conns: TxnPool,
    /// The transaction-level pool: sessions hold them for a transaction.
    pub txn_pool: TxnPool,
    /// Metric handles, registered once at start.
    pub metrics: Arc<m::Handles>,
    pub registry: Arc<Registry>,
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    pub fn new(
        cluster: Arc<Cluster>,
        registry: Arc<Registry>,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<m::Handles>,
    ) -> Ctx {
        Ctx {
            session_conns: TxnPool::new(),
            txn_pool: TxnPool::new(),
            cluster,
            metrics,
            registry,
            shutdown,
        }
    }
}

/// Handles one client connection until it ends. Never panics on client or
/// backend input; every failure ends in an ERR packet or a closed socket.
/// The socket comes with `TCP_NODELAY` set.
pub async fn handle_client(ctx: Arc<Ctx>, sock: TcpStream, peer: SocketAddr) {
    let Some(reservation) = ctx.registry.reserve() else {
        tracing::warn!("every connection id of this instance is in use");
        return;
    };
    let id = reservation.id;
    let mut client = PacketStream::new(sock);
    let timeout = ctx.cluster.config().timeouts.client_handshake();
    let login = tokio::time::timeout(timeout, login::greet(&ctx, &mut client, id, peer.ip())).await;
    let ident = match login {
        Ok(Ok(i)) => i,
        Ok(Err(Some(f))) => {
            send_error(&ctx.metrics, &mut client, f.seq, &f.error).await;
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    let reg = ctx.registry.register(
        id,
        ident.user.clone(),
        format!("{}:{}", peer.ip(), peer.port()),
        ident.privileges,
    );
    drop(reservation);
    let n = ctx.cluster.topology().backends.len();
    let (tp, hold) = pooling(&ctx, &ident.user);
    let mut s = Session {
        hold,
        backends: (0..n).map(|_| None).collect(),
        leases: (0..n).map(|_| None).collect(),
        tp,
        ps: txn::PoolSession::default(),
        published: Default::default(),
        ctx: ctx.clone(),
        id,
        peer,
        client,
        caps: ident.capabilities,
        salt: ident.salt,
        user: ident.user,
        privileges: ident.privileges,
        watch: kill::KillWatch::of(&reg),
        credential: ident.credential,
        charset: u16::from(ident.charset),
        attributes: ident.attributes,
        database: ident.database,
        status: status::AUTOCOMMIT,
        last_write: None,
        floor: None,
        read_mark: None,
        need_fresh: false,
        level_override: None,
        planned_level: None,
        scratch: BytesMut::with_capacity(256),
        snapshot_buffers: Default::default(),
        state: SessionState::default(),
        synced: vec![Synced::default(); ctx.cluster.topology().backends.len()],
        txn_backend: None,
        txn_written: false,
        stmts: Default::default(),
        next_stmt_id: 1,
        last_prepared: None,
    };
    // Log in to one backend now (the read replica or the primary), so a bad
    // database or a refused account is reported at connect time, as a
    // direct connection would (with a pool: a borrowed connection selects
    // the database).
    let checked = s.first_login(ident.early).await;
    if let Err(e) = checked {
        s.quit_backends().await;
        s.end_pooled().await;
        send_error(&ctx.metrics, &mut s.client, ident.next_seq, &e).await;
        return;
    }
    if s.send_ok(ident.next_seq).await.is_err() {
        s.quit_backends().await;
        s.end_pooled().await;
        return;
    }
    s.after_command(&reg);
    s.command_loop(&reg).await;
    s.quit_backends().await;
    s.end_pooled().await;
}

/// Whether pooled connections serve `user`'s sessions, and whether a
/// session holds them until it ends (the session-level pool) rather than
/// for one transaction (the transaction-level pool, which wins when both
/// are on).
fn pooling(ctx: &Ctx, user: &str) -> (bool, bool) {
    let cfg = ctx.cluster.config();
    let txn = cfg.transaction_pool_for(user);
    let session = cfg.session_pool_for(user);
    (txn || session, session && !txn)
}

struct Session {
    ctx: Arc<Ctx>,
    id: u32,
    peer: SocketAddr,
    client: PacketStream<TcpStream>,
    caps: u32,
    salt: [u8; 20],
    user: String,
    /// The account's privileges, for KILL (and the processlist).
    privileges: crate::cluster::Privileges,
    /// The session's kill signal and where it publishes what it runs.
    watch: kill::KillWatch,
    credential: Credential,
    /// Collation id of the connection: one byte in the handshake, two in
    /// COM_CHANGE_USER.
    charset: u16,
    attributes: Vec<(String, String)>,
    database: Option<String>,
    /// Status flags of the last reply (the server is the source of truth
    /// for transaction state).
    status: u16,
    /// Position of the session's last write.
    last_write: Option<Position>,
    /// What the session has read is covered by this (monotonic reads).
    floor: Option<Position>,
    /// The last read, until an upper bound of what it saw is known.
    read_mark: Option<consistency::ReadMark>,
    /// A write's position was not reported: the next consistent read asks
    /// the primary for its current position.
    need_fresh: bool,
    /// `SET CAUSEWAY CONSISTENCY`.
    level_override: Option<crate::consistency::Level>,
    /// The level the last planned read ran at (for its metric).
    planned_level: Option<crate::consistency::Level>,
    /// One connection per backend the session uses, by topology index.
    backends: Vec<Option<BackendConn>>,
    /// Pooled connections serve this session: `backends` hold borrowed
    /// connections, brought to the session's state by difference.
    tp: bool,
    /// ... and kept until the session ends (session-level pool), instead of
    /// given back after each command unless pinned (transaction-level).
    hold: bool,
    /// The right to a connection of each backend's pool, while borrowed.
    leases: Vec<Option<Lease>>,
    /// What the transaction-level pool must carry for the session.
    ps: txn::PoolSession,
    /// What SHOW CAUSEWAY PROCESSLIST last showed of the session.
    published: registry::Status,
    scratch: BytesMut,
    /// What each statement's snapshot borrows (reused, not reallocated).
    snapshot_buffers: routing::SnapshotBuffers,
    /// Session variables, user variables, temporary tables, locks.
    state: SessionState,
    /// What each backend connection has been brought to, by topology index.
    synced: Vec<Synced>,
    /// Prepared statements by the id the client knows.
    stmts: std::collections::HashMap<u32, stmt::PsEntry>,
    next_stmt_id: u32,
    /// What the last COM_STMT_PREPARE relayed created.
    last_prepared: Option<relay::Prepared>,
    /// The backend holding the open transaction, if one is open.
    txn_backend: Option<usize>,
    /// The open transaction has run something other than a plain read.
    txn_written: bool,
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
    /// The command was not run (a replica did not reach the read's
    /// position in time): run it on the primary instead.
    Fallback,
}

impl Session {
    async fn command_loop(&mut self, reg: &registry::Registration) {
        let kill = &*reg.kill;
        let max = self.ctx.cluster.config().proxy.max_allowed_packet;
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let idle = self.wait_timeout();
            let read = tokio::select! {
                r = tokio::time::timeout(idle, self.client.read_command(max)) => match r {
                    Ok(r) => r,
                    // The server closes such a client without a word.
                    Err(_) => return self.idle_timed_out(idle),
                },
                _ = kill.notified() => return,
                _ = registry::shutdown_signalled(&mut shutdown) => return,
            };
            let payload = match read {
                Ok(p) => p,
                Err(ReadError::TooLarge { .. }) => {
                    send_error(
                        &self.ctx.metrics,
                        &mut self.client,
                        1,
                        &Error::PacketTooLarge,
                    )
                    .await;
                    return;
                }
                Err(ReadError::OutOfOrder { expected }) => {
                    send_error(
                        &self.ctx.metrics,
                        &mut self.client,
                        expected,
                        &Error::PacketsOutOfOrder,
                    )
                    .await;
                    return;
                }
                Err(_) => return,
            };
            let flow = match Command::decode(&payload.data, self.caps) {
                Ok(cmd) => {
                    self.ctx.metrics.command(cmd.label());
                    let info = self.command_info(&cmd, &payload.data);
                    reg.begin(processlist::command_name(&cmd), info);
                    self.dispatch(cmd, &payload.data, payload.last_seq).await
                }
                Err(CommandError::Empty) | Err(CommandError::Malformed(_)) => {
                    self.fail(payload.last_seq.wrapping_add(1), &Error::MalformedPacket)
                        .await
                }
            };
            if let Flow::Close = flow {
                return;
            }
            reg.end();
            if self.watch.is_killed() {
                return;
            }
            self.after_command(reg);
        }
    }

    async fn dispatch(&mut self, cmd: Command<'_>, raw: &[u8], seq: u8) -> Flow {
        let next = seq.wrapping_add(1);
        if let Some(e) = self.lost_state().filter(|_| !matches!(cmd, Command::Quit)) {
            // A connection dropped earlier took state the session still
            // counts on: end the session, as a restarted server would.
            if !matches!(
                cmd,
                Command::StmtClose(_) | Command::StmtSendLongData { .. }
            ) {
                send_error(&self.ctx.metrics, &mut self.client, next, &e).await;
            }
            return Flow::Close;
        }
        match cmd {
            Command::Quit => Flow::Close,
            Command::Ping => self.ok_or_close(next).await,
            Command::Unsupported(code) => self.fail(next, &Error::UnknownCommand(code)).await,
            Command::ProcessKill(id) => self.process_kill(id, next).await,
            Command::ChangeUser(cu) => self.change_user(cu, next).await,
            Command::ResetConnection => self.forward_all(raw, Expect::Single).await,
            // Reads of `@@socket` get NULL: Causeway has no socket to offer,
            // and connectors would use the backend's to bypass it.
            Command::Query(sql) => match crate::classify::hide_socket(sql) {
                Some(mut hidden) => {
                    hidden.insert(0, crate::protocol::consts::com::QUERY);
                    let sql = hidden.get(1..).unwrap_or(&[]);
                    self.query(sql, &hidden, next).await
                }
                None => self.query(sql, raw, next).await,
            },
            Command::SetOption(o) if self.tp => self.set_option_pooled(o, raw).await,
            Command::SetOption(o) => self.set_option(o, raw).await,
            Command::InitDb(_) => self.forward(raw, Expect::Single).await,
            Command::Statistics => self.forward(raw, Expect::Text).await,
            Command::FieldList { .. } => self.forward(raw, Expect::FieldList).await,
            Command::StmtPrepare(sql) => self.stmt_prepare(sql, raw).await,
            Command::StmtExecute { stmt_id, flags } => {
                self.stmt_execute(stmt_id, flags, raw, next).await
            }
            Command::StmtFetch { stmt_id, .. } => self.stmt_fetch(stmt_id, raw, next).await,
            Command::StmtReset(id) => self.stmt_reset(id, raw, next).await,
            Command::StmtClose(id) => self.stmt_close(id).await,
            Command::StmtSendLongData { stmt_id } => self.stmt_long_data(stmt_id, raw).await,
        }
    }

    /// The session's connection to backend `index`, opened on first use.
    async fn backend(&mut self, index: usize) -> Result<&mut BackendConn, Error> {
        if self.backends.get(index).is_none() {
            return Err(Error::BackendUnavailable {
                backend: format!("#{index}"),
                address: String::new(),
                reason: "no such backend".into(),
            });
        }
        if self.tp && self.backends[index].is_none() {
            self.borrow(index, false).await?;
            return self.backends[index].as_mut().ok_or(Error::ShuttingDown);
        }
        if self.backends[index].is_none() {
            let topo = self.ctx.cluster.topology();
            let params = self.connect_params(&topo.backends[index]);
            let conn = BackendConn::connect(&params).await?;
            self.install(index, conn, params.database);
        }
        self.backends[index].as_mut().ok_or(Error::ShuttingDown)
    }

    /// How to log in to backend `b` as this session's account.
    fn connect_params(&self, b: &crate::cluster::BackendState) -> ConnectParams {
        ConnectParams {
            backend: b.name.clone(),
            address: b.address.clone(),
            user: self.user.clone(),
            credential: self.credential.clone(),
            database: self.database.clone(),
            client_capabilities: self.caps,
            charset: self.charset,
            attributes: self.attributes.clone(),
            timeout: self.ctx.cluster.config().timeouts.connect(),
        }
    }

    /// Sends a command to its backend and relays the reply.
    /// Commands other than COM_QUERY run on the primary (prepared
    /// statements are not split yet).
    async fn forward(&mut self, raw: &[u8], expect: Expect) -> Flow {
        self.ctx.metrics.route(
            m::RouteTarget::Primary,
            crate::router::Reason::Command.label(),
        );
        self.run(0, raw, expect, None, None, None).await
    }

    /// Runs a command on backend `index`: sync its state, send, relay the
    /// reply, learn from it.
    async fn run(
        &mut self,
        index: usize,
        raw: &[u8],
        expect: Expect,
        stmt: Option<(&crate::classify::Class, &[u8])>,
        prepare_id: Option<u32>,
        wait: Option<&consistency::Wait>,
    ) -> Flow {
        let in_trans = self.txn_backend.is_some();
        let mut index = index;
        while let Err(e) = self.sync(index).await {
            // A connection that broke while being synced cannot be trusted;
            // one whose server refused a statement is still in step.
            if !matches!(e, Error::Server(_)) {
                if let Some(b) = self.backends.get_mut(index) {
                    *b = None;
                }
                // What only that connection held (a READ ONLY transaction
                // on a replica, temporary tables, ...) is gone with it: the
                // statement must not run elsewhere without it.
                if self.held_state(index).is_some() {
                    return self.backend_failed(index, e, 1, false, in_trans).await;
                }
            }
            // A text statement that cannot run with the session's state on a
            // replica runs on the primary, which has that state.
            if index != 0 && raw.first() == Some(&crate::protocol::consts::com::QUERY) {
                tracing::warn!(session = self.id, backend = index, error = %e,
                    "could not bring a backend to the session's state; using the primary");
                index = 0;
                continue;
            }
            return self.fail(1, &e).await;
        }
        let ctx = self.ctx.clone();
        let _in_flight = ctx.cluster.in_flight(index);
        let rewrite = relay::Rewrite {
            status: self.status_override(index),
            stmt_id: prepare_id,
        };
        if let Some(w) = wait.filter(|_| index > 0) {
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
                    self.backends[index] = None;
                    if self.held_state(index).is_some() {
                        return self.backend_failed(index, e, 1, false, in_trans).await;
                    }
                    self.count_consistent(w.level, m::Served::PrimaryAfterTimeout);
                    return Flow::Fallback;
                }
            }
        } else {
            let conn = match self.backend(index).await {
                Ok(c) => c,
                Err(e) => return self.fail(1, &e).await,
            };
            if let Err(e) = conn.send_command(raw).await {
                self.backends[index] = None;
                return self.backend_failed(index, e, 1, false, in_trans).await;
            }
        }
        let Some(conn) = self.backends[index].as_mut() else {
            return Flow::Close;
        };
        let thread_id = conn.thread_id;
        self.watch.publish(index, thread_id);
        let watch = relay::Watch {
            kill: Some(&self.watch.kill),
            client_eof: true,
        };
        let relayed = relay(
            &mut self.client,
            self.caps,
            conn,
            expect,
            &mut self.scratch,
            rewrite,
            watch,
        )
        .await;
        self.watch.idle();
        match relayed {
            Ok(info) => {
                if !conn.stream.buffer().is_empty() {
                    // The backend said more than its reply: it cannot be trusted.
                    self.backends[index] = None;
                }
                self.learn(index, &info, stmt);
                self.learn_diagnostics(index, &info, stmt);
                self.learn_row_count(&info);
                // Also without a pool: text prepares and handlers live on
                // the connection, which the session must know if it is lost.
                self.learn_pooled(&info, stmt);
                if self.tp {
                    self.mark_applied(index);
                    if let Some((class, sql)) = stmt.filter(|_| !info.error) {
                        self.capture_user_vars(index, class, sql).await;
                    }
                }
                self.learn_hidden_vars(index, &info, stmt).await;
                self.last_prepared = info.prepared;
                self.absorb(info);
                Flow::Continue
            }
            Err(RelayError::Client(_)) | Err(RelayError::ClientGone) => {
                // The client is gone: end its statement as the server ends
                // a vanished client's, and close.
                self.abandon_statement(index, thread_id).await;
                Flow::Close
            }
            Err(RelayError::Killed { sent }) => self.killed_running(index, thread_id, sent).await,
            Err(RelayError::Backend {
                reason,
                next_seq,
                malformed,
                sent,
            }) => {
                let backend = conn.backend.clone();
                self.backends[index] = None;
                let e = if malformed {
                    Error::BackendProtocol { backend }
                } else {
                    Error::BackendLost { backend, reason }
                };
                self.backend_failed(index, e, next_seq, sent, in_trans)
                    .await
            }
        }
    }

    /// Sends a command to every backend connection the session holds; the
    /// client sees the primary's reply.
    async fn forward_all(&mut self, raw: &[u8], expect: Expect) -> Flow {
        if self.tp {
            let _ = self.reset_pooled_connections().await;
            self.state.reset();
            self.reset_pooled();
            self.level_override = None;
            self.stmts.clear();
            self.txn_backend = None;
            self.txn_written = false;
            self.status = status::AUTOCOMMIT;
            return self.ok_or_close(1).await;
        }
        for i in 1..self.backends.len() {
            if let Some(conn) = self.backends[i].as_mut() {
                let ok =
                    conn.send_command(raw).await.is_ok() && drain_reply(conn, expect).await.is_ok();
                if !ok {
                    self.backends[i] = None;
                }
            }
        }
        let flow = self.run(0, raw, expect, None, None, None).await;
        // Every connection the session holds was reset: nothing to replay.
        self.state.reset();
        self.reset_pooled();
        self.level_override = None;
        self.stmts.clear();
        self.txn_backend = None;
        self.txn_written = false;
        for s in &mut self.synced {
            *s = Synced {
                version: self.state.version,
                database: self.database.clone(),
                user_vars: 0,
                multi_statements: s.multi_statements,
            };
        }
        flow
    }

    fn absorb(&mut self, info: ReplyInfo) {
        let flavor = self.ctx.cluster.positions().flavor();
        if let Some(g) = info.last_gtid.and_then(|g| flavor.parse(&g)) {
            match &mut self.last_write {
                Some(p) => p.merge(&g),
                None => self.last_write = Some(g),
            }
        }
    }

    async fn send_ok(&mut self, seq: u8) -> std::io::Result<()> {
        self.scratch.clear();
        let start = begin_packet(&mut self.scratch, seq);
        OkPacket {
            status: self.status,
            ..OkPacket::default()
        }
        .encode(&mut self.scratch, self.caps);
        finish_packet(&mut self.scratch, start);
        self.client.write_all(&self.scratch).await
    }

    async fn ok_or_close(&mut self, seq: u8) -> Flow {
        match self.send_ok(seq).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn fail(&mut self, seq: u8, e: &Error) -> Flow {
        if send_error(&self.ctx.metrics, &mut self.client, seq, e).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}

/// Reads one reply without relaying it (state sync, lazy prepares, and
/// commands whose reply the client sees from another backend); an ERR
/// becomes an error.
async fn drain_reply(conn: &mut BackendConn, expect: Expect) -> Result<Drained, Error> {
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

/// What a drained reply said.
#[derive(Debug, Default)]
struct Drained {
    /// The statement a COM_STMT_PREPARE created.
    stmt_id: Option<u32>,
}

/// The `target` label of a statement run on backend `index`.
fn route_target(index: usize) -> m::RouteTarget {
    if index == 0 {
        m::RouteTarget::Primary
    } else {
        m::RouteTarget::Replica
    }
}

/// Sends an ERR packet; returns whether the client is still reachable.
async fn send_error(
    metrics: &m::Handles,
    client: &mut PacketStream<TcpStream>,
    seq: u8,
    e: &Error,
) -> bool {
    metrics.client_error(e.label());
    let mut out = BytesMut::with_capacity(64);
    let start = begin_packet(&mut out, seq);
    e.encode_err(&mut out);
    finish_packet(&mut out, start);
    client.write_all(&out).await.is_ok()
}
