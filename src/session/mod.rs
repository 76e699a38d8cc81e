//! One task per client connection: the command loop, the backend
//! connections the session holds (one per backend it uses), and the state
//! learned from the server's replies.
//!
//! May import everything below it (`admin`, `pool`, `cluster`, `router`,
//! `protocol`, `position`, `config`, `error`).

mod carry;
mod commands;
mod consistency;
mod early;
mod execute;
mod explain;
pub mod gate;
mod global_read;
mod held;
mod idle;
mod kill;
mod learn;
mod login;
mod loss;
mod plan;
mod pooled;
mod positions;
mod processlist;
pub mod registry;
mod relay;
mod replay;
mod retry;
mod roles;
mod routing;
pub mod state;
mod stmt;
mod stmt_backend;
mod sync;
mod waiting;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::BackendConn;
use crate::pool::{Lease, Pool};
use crate::position::Position;
use crate::protocol::auth::Credential;
use crate::protocol::compress::ClientIo;
use crate::protocol::consts::{cap, status};
use crate::protocol::packet::{begin_packet, finish_packet};
use crate::protocol::stream::PacketStream;

use execute::{drain_reply, drain_watched};
pub use registry::Registry;
use state::SessionState;
use sync::Synced;

/// What every session shares.
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    /// Connections kept for the session-level pool: sessions hold them for
    /// their lifetime and leave them for the next session.
    pub session_pool: Pool,
    /// The transaction-level pool: sessions hold them for a transaction.
    pub txn_pool: Pool,
    /// Metric handles, registered once at start.
    pub metrics: Arc<m::Handles>,
    pub registry: Arc<Registry>,
    /// Session slots and logins in progress.
    pub gate: Arc<gate::Gate>,
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    pub fn new(
        cluster: Arc<Cluster>,
        registry: Arc<Registry>,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<m::Handles>,
    ) -> Ctx {
        let proxy = &cluster.config().proxy;
        let gate = gate::Gate::new(proxy.max_connections, proxy.max_handshakes);
        Ctx {
            gate,
            session_pool: Pool::new(),
            txn_pool: Pool::new(),
            cluster,
            metrics,
            registry,
            shutdown,
        }
    }
}

/// The client connection: packets over the socket, compressed or not.
pub(crate) type ClientStream = PacketStream<ClientIo<TcpStream>>;

/// Handles one client connection until it ends. Never panics on client or
/// backend input; every failure ends in an ERR packet or a closed socket.
/// The socket comes with `TCP_NODELAY` set.
pub async fn handle_client(ctx: Arc<Ctx>, sock: TcpStream, peer: SocketAddr) {
    let Some(reservation) = ctx.registry.reserve() else {
        tracing::warn!("every connection id of this instance is in use");
        return;
    };
    let id = reservation.id;
    let mut client = PacketStream::new(ClientIo::new(sock));
    let timeout = ctx.cluster.config().timeouts.client_handshake();
    // Counted apart from sessions until it has logged in; dropped if it is
    // the oldest login when the handshake cap is reached.
    let pending = ctx.gate.begin();
    let login = tokio::select! {
        r = tokio::time::timeout(timeout, login::greet(&ctx, &mut client, id, peer.ip())) => r,
        _ = pending.dropped() => return,
    };
    let ident = match login {
        Ok(Ok(i)) => i,
        Ok(Err(Some(f))) => {
            send_error(&ctx.metrics, &mut client, f.seq, &f.error).await;
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    let _seat = match pending.establish(ident.limit.as_ref()) {
        Ok(seat) => seat,
        Err(e) => {
            send_error(&ctx.metrics, &mut client, ident.next_seq, &e).await;
            return;
        }
    };
    let reg = ctx.registry.register(
        id,
        ident.user.clone(),
        format!("{}:{}", peer.ip(), peer.port()),
        ident.privileges,
    );
    drop(reservation);
    let topo = ctx.cluster.topology();
    let n = topo.backends.len();
    let (pooled, keep) = pooling(&ctx, &ident.user);
    let mut s = Session {
        conns: Conns {
            open: (0..n).map(|_| None).collect(),
            synced: vec![Synced::default(); n],
            pooled,
            keep,
            leases: (0..n).map(|_| None).collect(),
        },
        held: held::Held::default(),
        published: Default::default(),
        ctx: ctx.clone(),
        id,
        peer,
        client: Client {
            stream: client,
            caps: ident.capabilities,
            ext_caps: ident.ext_capabilities,
            salt: ident.salt,
            charset: u16::from(ident.charset),
            attributes: ident.attributes,
        },
        account: Account {
            user: ident.user,
            privileges: ident.privileges,
            credential: ident.credential,
        },
        watch: kill::KillWatch::of(&reg),
        database: ident.database,
        status: status::AUTOCOMMIT,
        causal: Causal::default(),
        scratch: BytesMut::with_capacity(256),
        snapshot_buffers: Default::default(),
        primary: topo.primary.unwrap_or(0),
        role_epoch: topo.role_epoch,
        read_only_followed: false,
        state: SessionState::default(),
        txn: Txn::default(),
        stmts: Statements {
            by_id: Default::default(),
            next_id: 1,
            last_prepared: None,
            last_client_id: None,
        },
    };
    // Log in to one backend now (the read replica or the primary), so a bad
    // database or a refused account is reported at connect time, as a
    // direct connection would (with a pool: a borrowed connection selects
    // the database).
    let checked = s.first_login(ident.early).await;
    if let Err(e) = checked {
        s.quit_backends().await;
        s.end_pooled().await;
        send_error(&ctx.metrics, &mut s.client.stream, ident.next_seq, &e).await;
        return;
    }
    if s.send_ok(ident.next_seq).await.is_err() {
        s.quit_backends().await;
        s.end_pooled().await;
        return;
    }
    if s.client.caps & cap::COMPRESS != 0 {
        // As the server: compressed from the first command after the OK.
        s.client.stream.start_compression();
        ctx.metrics.compressed_sessions().increment(1);
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

/// One client's session. Each part has one job:
/// - `client`: the client connection and what its handshake negotiated;
/// - `account`: who logged in;
/// - `conns`: the backend connections the session holds, what each was
///   brought to, and the pool leases behind them;
/// - `held`: state the session's statements left on server connections
///   (what pins a pooled session, what must be replayed);
/// - `causal`: what the session's reads must see (its writes' positions,
///   the floor of what it has read, the level);
/// - `txn`, `stmts`: the open transaction and the prepared statements;
/// - `snapshot_buffers`: what each statement's plan reuses.
struct Session {
    ctx: Arc<Ctx>,
    id: u32,
    peer: SocketAddr,
    client: Client,
    account: Account,
    /// The session's kill signal and where it publishes what it runs.
    watch: kill::KillWatch,
    /// What SHOW CAUSEWAY PROCESSLIST last showed of the session.
    published: registry::Status,
    database: Option<String>,
    /// Status flags of the last reply (the server is the source of truth
    /// for transaction state).
    status: u16,
    /// Session variables, user variables, temporary tables, locks.
    state: SessionState,
    conns: Conns,
    held: held::Held,
    causal: Causal,
    txn: Txn,
    stmts: Statements,
    scratch: BytesMut,
    /// Reused by each statement's plan (see [`plan`]).
    snapshot_buffers: plan::SnapshotBuffers,
    /// The backend the session treats as the primary (see [`roles`]), and
    /// the cluster's role epoch it last followed.
    primary: usize,
    role_epoch: u64,
    /// This command already met a read-only primary once.
    read_only_followed: bool,
}

/// The client side of a session.
struct Client {
    stream: ClientStream,
    /// Capabilities the client and Causeway agreed on.
    caps: u32,
    /// MariaDB extended capabilities the client and Causeway agreed on.
    ext_caps: u32,
    /// The scramble of the client's handshake (COM_CHANGE_USER checks
    /// against it).
    salt: [u8; 20],
    /// Collation id of the connection: one byte in the handshake, two in
    /// COM_CHANGE_USER.
    charset: u16,
    attributes: Vec<(String, String)>,
}

/// The account the client logged in as.
struct Account {
    user: String,
    /// The account's privileges, for KILL (and the processlist).
    privileges: crate::cluster::Privileges,
    credential: Credential,
}

/// The backend connections a session holds, by topology index.
struct Conns {
    /// One connection per backend the session uses.
    open: Vec<Option<BackendConn>>,
    /// What each backend connection has been brought to.
    synced: Vec<Synced>,
    /// Pooled connections serve this session: `open` holds borrowed
    /// connections, brought to the session's state by difference.
    pooled: bool,
    /// ... and kept until the session ends (session-level pool), instead of
    /// given back after each command unless pinned (transaction-level).
    keep: bool,
    /// The right to a connection of each backend's pool, while borrowed.
    leases: Vec<Option<Lease>>,
}

/// What the session's reads must see.
#[derive(Default)]
struct Causal {
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
}

/// The open transaction.
#[derive(Default)]
struct Txn {
    /// The backend holding it, if one is open.
    backend: Option<usize>,
    /// It has run something other than a plain read.
    written: bool,
    /// The session's use of its primary (see `roles.rs`): for the command
    /// on its way there, and kept while a transaction is open there.
    primary_use: Option<crate::cluster::PrimaryUse>,
    /// The transaction's record, for a replay (`replay.rs`).
    replay: replay::Log,
}

/// Binary-protocol prepared statements.
struct Statements {
    /// By the id the client knows.
    by_id: std::collections::HashMap<u32, stmt::PsEntry>,
    next_id: u32,
    /// What the last COM_STMT_PREPARE relayed created.
    last_prepared: Option<relay::Prepared>,
    /// The client id of the statement prepared last: what id `-1`
    /// (0xFFFFFFFF) means in an execute sent right behind its prepare.
    last_client_id: Option<u32>,
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
    /// The command was not run (a replica did not reach the read's
    /// position in time): run it on the primary instead.
    Fallback,
    /// A read's backend failed before any byte of its reply reached the
    /// client: it may run again elsewhere (see `retry.rs`); a caller that
    /// does not retry reports the failure.
    Retry(Box<retry::Failure>),
    /// The primary failed under the open transaction, which may be
    /// replayed on the new one (see `replay.rs`); a caller that does not
    /// replay reports the failure.
    Replay(Box<retry::Failure>),
}

/// The `target` label of a statement run on backend `index`, where
/// `primary` is the primary.
fn route_target(index: usize, primary: usize) -> m::RouteTarget {
    if index == primary {
        m::RouteTarget::Primary
    } else {
        m::RouteTarget::Replica
    }
}

/// Sends an ERR packet; returns whether the client is still reachable.
async fn send_error(metrics: &m::Handles, client: &mut ClientStream, seq: u8, e: &Error) -> bool {
    metrics.client_error(e.label());
    let mut out = BytesMut::with_capacity(64);
    let start = begin_packet(&mut out, seq);
    e.encode_err(&mut out);
    finish_packet(&mut out, start);
    client.write_all(&out).await.is_ok()
}
