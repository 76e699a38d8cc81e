//! Backend connections for a session's first login: the one opened while
//! the client answers Causeway's greeting, logging in on it (or on a new
//! one), and ending one that is not used without an aborted connect.

use super::Ctx;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::Error;
use crate::pool::conn::{BackendConn, ConnectParams, Greeted};
use crate::protocol::auth::Credential;
use crate::protocol::consts::com;
use std::sync::Arc;

/// The connection opened, and its greeting read, while the client answers
/// Causeway's greeting, to the backend a session logs in to first: the read
/// replica when the default policy splits reads and exactly one replica is
/// up (the one a session's reads would use), else the primary. Its connect
/// is then off the login's critical path. Only without pools (a pooled
/// session borrows an open connection instead). One that is not used (the
/// client's login failed, it went away, or its policy logs in elsewhere) is
/// logged in as the monitor account and closed with COM_QUIT, so the server
/// counts no aborted connect: with host name resolution on,
/// `max_connect_errors` of them in a row would block Causeway's host.
pub struct Early {
    /// The backend's topology index and address, and its connection or why
    /// it could not be opened (until taken).
    first: Option<(usize, String, Result<Greeted, Error>)>,
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for Early {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Early")
            .field("first", &self.first.as_ref().map(|(i, a, _)| (i, a)))
            .finish()
    }
}

impl Early {
    /// Opens a connection to the backend a session logs in to first, when
    /// no pool may serve the session.
    pub(super) async fn open(ctx: &Ctx) -> Option<Early> {
        let cfg = ctx.cluster.config();
        if pooling_possible(cfg) {
            return None;
        }
        let topo = ctx.cluster.topology();
        let index = cfg
            .loaded_policy
            .routing
            .read_write_split
            .then(|| the_read_replica(&topo))
            .flatten()
            .or_else(|| login_backend(&topo))?;
        let b = topo.backends.get(index)?;
        let greeted = Greeted::open(&b.name, &b.address, cfg.timeouts.connect()).await;
        Some(Early {
            first: Some((index, b.address.clone(), greeted)),
            cluster: ctx.cluster.clone(),
        })
    }

    /// The connection if it was opened to backend `index` at `address`, or
    /// why it could not be.
    pub(super) fn take(&mut self, index: usize, address: &str) -> Option<Result<Greeted, Error>> {
        match self.first.take() {
            Some((i, a, greeted)) if i == index && a == address => Some(greeted),
            other => {
                self.first = other;
                None
            }
        }
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Some((_, _, Ok(greeted))) = self.first.take() {
            let cluster = self.cluster.clone();
            rt.spawn(async move { quit_as_monitor(&cluster, greeted).await });
        }
    }
}

/// The one replica reads may go to, when exactly one is up.
pub(super) fn the_read_replica(topo: &crate::cluster::Topology) -> Option<usize> {
    let mut up = (0..topo.backends.len()).filter(|&i| !topo.is_primary(i) && topo.backends[i].up);
    match (up.next(), up.next()) {
        (Some(i), None) => Some(i),
        _ => None,
    }
}

/// The backend a login goes to when no read replica takes it: the
/// primary, else (none, or down) any backend that is up, so logins work
/// while the primary is away.
pub(super) fn login_backend(topo: &crate::cluster::Topology) -> Option<usize> {
    topo.primary
        .filter(|&p| topo.backends[p].up)
        .or_else(|| topo.backends.iter().position(|b| b.up))
        .or(topo.primary)
        .or((!topo.backends.is_empty()).then_some(0))
}

/// Whether any session may be served by a pool (then none opens a
/// connection early).
pub(super) fn pooling_possible(cfg: &Config) -> bool {
    cfg.pool.session_pool
        || cfg.pool.transaction_pool
        || cfg
            .users
            .values()
            .any(|o| o.session_pool == Some(true) || o.transaction_pool == Some(true))
}

/// Logs in on the connection opened early if there is one (`greeted`),
/// else on a new one. If the early one could not be
/// opened, that is the answer (a new try would wait as long again); if it
/// cannot log in for a reason other than the server's refusal (it waited
/// past the server's `connect_timeout`), a new one does.
pub(super) async fn login_to(
    greeted: Option<Result<Greeted, Error>>,
    params: &ConnectParams,
) -> Result<BackendConn, Error> {
    match greeted {
        Some(Ok(greeted)) => match BackendConn::login(greeted, params).await {
            Ok(conn) => return Ok(conn),
            Err(e @ Error::Server(_)) => return Err(e),
            Err(_) => {}
        },
        // What a new connection would most likely meet again.
        Some(Err(e)) => return Err(e),
        None => {}
    }
    BackendConn::connect(params).await
}

/// Ends an opened connection that no client logs in on.
pub(super) async fn quit_as_monitor(cluster: &Cluster, greeted: Greeted) {
    let cfg = cluster.config();
    let params = ConnectParams {
        backend: String::new(),
        address: String::new(),
        user: cfg.monitor.user.clone(),
        credential: Credential::from_password(cfg.monitor.password.as_bytes()),
        database: None,
        client_capabilities: 0,
        client_ext_capabilities: 0,
        charset: 45,
        attributes: vec![("program_name".into(), "causeway-monitor".into())],
        timeout: cfg.timeouts.connect(),
    };
    if let Ok(mut conn) = BackendConn::login(greeted, &params).await {
        let _ = conn.send_command(&[com::QUIT]).await;
    }
}
