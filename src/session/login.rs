//! The client's connection phase: greeting, TLS refusal, auth switch to
//! `mysql_native_password`, password check against the account's stored
//! hash, and the first backend login as that account (the read replica's
//! or the primary's: one per short connection); COM_CHANGE_USER,
//! which goes through the same check.

use std::net::IpAddr;

use bytes::BytesMut;

use super::early::{login_to, the_read_replica, Early};
use super::ClientStream;
use super::{pooling, send_error, Ctx, Flow, Synced};
use crate::admin::metrics as m;
use crate::cluster::Privileges;
use crate::error::Error;
use crate::pool::conn::BackendConn;
use crate::protocol::auth::{new_salt, verify, Credential};
use crate::protocol::command::ChangeUser;
use crate::protocol::consts::{cap, com, ext_cap, status, NATIVE_PASSWORD};
use crate::protocol::handshake::{AuthSwitch, ClientHello, Handshake, HandshakeResponse};
use crate::protocol::packet::{begin_packet, finish_packet, write_packets};

/// Who the client proved to be.
#[derive(Debug)]
pub struct Identity {
    pub capabilities: u32,
    /// MariaDB extended capabilities the client and Causeway agreed on.
    pub ext_capabilities: u32,
    /// How many sessions the account may have at once, if limited.
    pub limit: Option<super::gate::UserLimit>,
    pub user: String,
    pub credential: Credential,
    /// The account's global privileges that Causeway checks (KILL).
    pub privileges: Privileges,
    pub database: Option<String>,
    pub charset: u8,
    pub attributes: Vec<(String, String)>,
    pub salt: [u8; 20],
    /// Sequence id for the packet that completes the login (OK or ERR).
    pub next_seq: u8,
    /// The backend connection opened while the client answered.
    pub early: Option<Early>,
}

/// A login that failed; the client has not been told yet.
pub struct LoginFailure {
    pub error: Error,
    pub seq: u8,
}

pub async fn greet(
    ctx: &Ctx,
    client: &mut ClientStream,
    id: u32,
    peer_ip: IpAddr,
) -> Result<Identity, Option<LoginFailure>> {
    // The first backend's connection opens while the client answers; it is
    // polled first, so its connect is on its way before the greeting.
    let (early, answered) = tokio::join!(Early::open(ctx), exchange(ctx, client, id));
    let Answered {
        ext_offered,
        resp,
        salt,
        answer,
        seq,
    } = answered?;
    let (credential, privileges) = check_password(ctx, &resp.user, peer_ip, &salt, &answer)
        .await
        .map_err(|error| Some(LoginFailure { error, seq }))?;
    let limit = user_limit(ctx, &resp.user, peer_ip);
    Ok(Identity {
        capabilities: resp.capabilities & cap::PROXY_OFFERS,
        ext_capabilities: resp.ext_capabilities & ext_offered,
        limit,
        user: resp.user,
        credential,
        privileges,
        database: resp.database,
        charset: resp.charset,
        attributes: resp.attributes,
        salt,
        next_seq: seq,
        early,
    })
}

/// The client's answer to Causeway's greeting.
struct Answered {
    resp: HandshakeResponse,
    salt: [u8; 20],
    /// The answer to `salt` (after an auth switch, if there was one).
    answer: Vec<u8>,
    /// Sequence id of the next packet to the client.
    seq: u8,
    /// The MariaDB extended capabilities the greeting offered.
    ext_offered: u32,
}

/// Greets the client and reads its answer, switching it to
/// `mysql_native_password` if it started with another plugin.
async fn exchange(
    ctx: &Ctx,
    client: &mut ClientStream,
    id: u32,
) -> Result<Answered, Option<LoginFailure>> {
    let salt = new_salt();
    let topo = ctx.cluster.topology();
    // MariaDB's extended capabilities, as far as every backend offers them;
    // offering any means greeting without CLIENT_MYSQL, as MariaDB does.
    let ext_offered = ext_cap::PROXY_OFFERS & topo.ext_offers();
    let capabilities = if ext_offered != 0 {
        cap::PROXY_OFFERS & !cap::LONG_PASSWORD
    } else {
        cap::PROXY_OFFERS
    };
    let hs = Handshake {
        server_version: topo.greeting_version.clone(),
        connection_id: id,
        salt: salt.to_vec(),
        capabilities,
        ext_capabilities: ext_offered,
        charset: 45, // utf8mb4_general_ci
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.into(),
    };
    let mut out = BytesMut::with_capacity(128);
    let start = begin_packet(&mut out, 0);
    hs.encode(&mut out);
    finish_packet(&mut out, start);
    client.write_all(&out).await.map_err(|_| None)?;

    let p = client.read_payload(64 * 1024).await.map_err(|_| None)?;
    let resp = match HandshakeResponse::decode(&p.data) {
        Some(ClientHello::Response(r)) => r,
        Some(ClientHello::SslRequest { .. }) => {
            return Err(Some(LoginFailure {
                error: Error::TlsUnsupported,
                seq: p.last_seq.wrapping_add(1),
            }))
        }
        None => {
            return Err(Some(LoginFailure {
                error: Error::MalformedPacket,
                seq: p.last_seq.wrapping_add(1),
            }))
        }
    };
    let mut seq = p.last_seq.wrapping_add(1);
    let mut answer = resp.auth_response.clone();
    let plugin_ok = resp
        .auth_plugin
        .as_deref()
        .is_none_or(|pl| pl == NATIVE_PASSWORD || pl.is_empty());
    if !plugin_ok {
        // The client started with another plugin (caching_sha2_password,
        // ed25519, ...): ask it to answer our salt the native way.
        out.clear();
        let mut body = BytesMut::new();
        AuthSwitch {
            plugin: NATIVE_PASSWORD.into(),
            data: salt.to_vec(),
        }
        .encode(&mut body);
        write_packets(&mut out, seq, &body);
        client.write_all(&out).await.map_err(|_| None)?;
        let p = client.read_payload(64 * 1024).await.map_err(|_| None)?;
        answer = p.data.to_vec();
        seq = p.last_seq.wrapping_add(1);
    }
    Ok(Answered {
        ext_offered,
        resp,
        salt,
        answer,
        seq,
    })
}

/// Verifies `answer` to `salt` for `user` from `ip`. Every failure looks the
/// same to the client: unknown user, wrong password and unsupported plugin
/// all give ERROR 1045, so nothing about other accounts leaks. Gives the
/// credential to log in to backends with and the account's privileges.
/// The limit on the sessions of the account `user` from `ip` logs in as:
/// the account's own `MAX_USER_CONNECTIONS` (ERROR 1226), else the
/// server's `max_user_connections` (ERROR 1203); Causeway's per-user cap
/// (`[users.NAME] max_connections`, ERROR 1203) when it is lower.
fn user_limit(ctx: &Ctx, user: &str, ip: IpAddr) -> Option<super::gate::UserLimit> {
    let accounts = ctx.cluster.accounts();
    let account = accounts.find(user, ip)?;
    let key = format!("{}@{}", account.user, account.host);
    let limit = |max, own| super::gate::UserLimit {
        account: key.clone(),
        user: user.to_string(),
        max,
        own,
    };
    let server = match account.max_user_connections {
        Some(n) => Some(limit(n, true)),
        None => {
            let global = accounts.max_user_connections();
            (global > 0).then(|| limit(global, false))
        }
    };
    let cap = ctx
        .cluster
        .config()
        .users
        .get(user)
        .and_then(|o| o.max_connections);
    match (server, cap) {
        (Some(s), Some(c)) if c < s.max => Some(limit(c, false)),
        (None, Some(c)) => Some(limit(c, false)),
        (s, _) => s,
    }
}

pub async fn check_password(
    ctx: &Ctx,
    user: &str,
    ip: IpAddr,
    salt: &[u8],
    answer: &[u8],
) -> Result<(Credential, Privileges), Error> {
    let denied = || Error::AccessDenied {
        user: user.to_string(),
        host: ip.to_string(),
        using_password: !answer.is_empty(),
    };
    let Some(account) = ctx.cluster.find_account(user, ip).await else {
        metrics::counter!(crate::admin::metrics::LOGIN_FAILURES, "reason" => "unknown_user")
            .increment(1);
        return Err(denied());
    };
    let Some(hash) = &account.hash else {
        tracing::warn!(user, host = %account.host, plugin = %account.plugin,
            "account uses an auth plugin Causeway cannot verify");
        metrics::counter!(crate::admin::metrics::LOGIN_FAILURES, "reason" => "unsupported_plugin")
            .increment(1);
        return Err(denied());
    };
    let credential = verify(hash, salt, answer).ok_or_else(|| {
        metrics::counter!(crate::admin::metrics::LOGIN_FAILURES, "reason" => "wrong_password")
            .increment(1);
        denied()
    })?;
    Ok((credential, account.privileges))
}

impl super::Session {
    /// Logs in to one backend at connect time, so a bad database or a
    /// refused account is reported then, as a direct connection would (with
    /// a pool: a borrowed connection selects the database). Without a pool
    /// that is the replica the session's reads will use when its policy
    /// splits reads and exactly one replica is up (its accounts and schemas
    /// are the primary's, replicated), else the primary; the other backends
    /// are logged in to when the session first needs them. A short
    /// connection that only reads thus causes one backend login, as a
    /// direct connection does. If the replica cannot log the client in (it
    /// refuses an account or database it has not replicated yet, or it is
    /// unreachable), the primary's answer decides. The login uses the
    /// connection opened early when it went to the same backend.
    pub(super) async fn first_login(&mut self, early: Option<Early>) -> Result<(), Error> {
        let topo = self.ctx.cluster.topology();
        if self.conns.pooled {
            let first = super::early::login_backend(&topo).unwrap_or(self.primary);
            return self.sync(first).await;
        }
        let mut early = early;
        let replica = self.replica_to_open(&topo);
        if let Some((i, rb)) = replica.and_then(|i| Some((i, topo.backends.get(i)?))) {
            let params = self.connect_params(rb);
            let greeted = early.as_mut().and_then(|e| e.take(i, &params.address));
            // A connection opened to the primary instead is ended now.
            drop(early.take());
            // One try, bounded by one connect timeout: the primary answers
            // for a replica that cannot.
            let tried = match greeted {
                Some(Ok(greeted)) => BackendConn::login(greeted, &params).await,
                Some(Err(e)) => Err(e),
                None => BackendConn::connect(&params).await,
            };
            match tried {
                Ok(conn) => {
                    self.install(i, conn, params.database);
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(session = self.id, backend = %rb.name, error = %e,
                        "the read replica did not log the client in; asking the primary");
                }
            }
        }
        let first = super::early::login_backend(&topo).unwrap_or(self.primary);
        let Some(b) = topo.backends.get(first) else {
            return self.backend(first).await.map(|_| ());
        };
        let params = self.connect_params(b);
        let greeted = early.as_mut().and_then(|e| e.take(first, &params.address));
        // What was opened and is not used is ended now.
        drop(early);
        let conn = login_to(greeted, &params).await?;
        self.install(first, conn, params.database);
        Ok(())
    }

    /// The one replica the router may send this session's reads to, when
    /// there is exactly one that is up and the policy splits reads.
    fn replica_to_open(&self, topo: &crate::cluster::Topology) -> Option<usize> {
        if !self.policy().routing.read_write_split {
            return None;
        }
        the_read_replica(topo)
    }

    /// Installs a new connection to backend `index`, logged in with
    /// `database`: statements prepared on the one it replaces are gone, and
    /// it has none of the session's state yet.
    pub(super) fn install(&mut self, index: usize, conn: BackendConn, database: Option<String>) {
        self.ctx
            .metrics
            .backend(m::BackendCounter::Connects, index, &conn.backend);
        let Some(slot) = self.conns.open.get_mut(index) else {
            return;
        };
        *slot = Some(conn);
        self.forget_backend_statements(index);
        if let Some(s) = self.conns.synced.get_mut(index) {
            *s = Synced {
                version: 0,
                database,
                user_vars: 0,
                multi_statements: None,
            };
        }
    }

    /// Ends the session's own backend connections (without a pool) with
    /// COM_QUIT, as a client that logs out does: a server counts a
    /// connection closed without it as aborted and writes a warning for it
    /// to its error log.
    pub(super) async fn quit_backends(&mut self) {
        if self.conns.pooled {
            return;
        }
        for slot in &mut self.conns.open {
            if let Some(mut conn) = slot.take() {
                let _ = conn.send_command(&[com::QUIT]).await;
            }
        }
    }

    /// COM_CHANGE_USER: Causeway checks the new account itself, then logs
    /// in as it to the backend a new session would log in to first (see
    /// [`Self::first_login`]); the old backend connections are closed so
    /// nothing of the previous user's session survives.
    pub(super) async fn change_user(&mut self, cu: ChangeUser<'_>, mut seq: u8) -> Flow {
        let user = String::from_utf8_lossy(cu.user).into_owned();
        let mut answer = cu.auth_response.to_vec();
        let native = cu
            .auth_plugin
            .is_none_or(|p| p == NATIVE_PASSWORD.as_bytes() || p.is_empty());
        if !native {
            self.client.salt = new_salt();
            let mut body = BytesMut::new();
            AuthSwitch {
                plugin: NATIVE_PASSWORD.into(),
                data: self.client.salt.to_vec(),
            }
            .encode(&mut body);
            self.scratch.clear();
            write_packets(&mut self.scratch, seq, &body);
            if self.client.stream.write_all(&self.scratch).await.is_err() {
                return Flow::Close;
            }
            match self.client.stream.read_payload(64 * 1024).await {
                Ok(p) => {
                    answer = p.data.to_vec();
                    seq = p.last_seq.wrapping_add(1);
                }
                Err(_) => return Flow::Close,
            }
        }
        let (credential, privileges) = match check_password(
            &self.ctx,
            &user,
            self.peer.ip(),
            &self.client.salt,
            &answer,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                send_error(&self.ctx.metrics, &mut self.client.stream, seq, &e).await;
                return Flow::Close;
            }
        };
        let database = String::from_utf8_lossy(cu.database).into_owned();
        self.conns.open.iter_mut().for_each(|b| *b = None);
        self.conns.leases.iter_mut().for_each(|l| *l = None);
        self.reset_pooled();
        (self.conns.pooled, self.conns.keep) = pooling(&self.ctx, &user);
        // The processlist and KILL see the new account from now on.
        self.ctx.registry.set_user(self.id, &user, privileges);
        self.account.privileges = privileges;
        self.account.user = user;
        self.account.credential = credential;
        self.database = (!database.is_empty()).then_some(database);
        // Collation ids above 255 exist (MariaDB 10.10+): all 16 bits count.
        if let Some(cs) = cu.charset {
            self.client.charset = cs;
        }
        self.status = status::AUTOCOMMIT;
        self.causal.last_write = None;
        self.causal.floor = None;
        self.causal.read_mark = None;
        self.causal.need_fresh = false;
        self.causal.level_override = None;
        self.state.reset();
        self.stmts.by_id.clear();
        self.txn.backend = None;
        self.txn.written = false;
        // Checked as at connect time: on the read replica or the primary.
        if let Err(e) = self.first_login(None).await {
            send_error(&self.ctx.metrics, &mut self.client.stream, seq, &e).await;
            return Flow::Close;
        }
        self.ok_or_close(seq).await
    }
}
