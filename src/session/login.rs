//! The client's connection phase: greeting, TLS refusal, auth switch to
//! `mysql_native_password`, password check against the account's stored
//! hash, and the first backend login as that account; COM_CHANGE_USER,
//! which goes through the same check.

use std::net::IpAddr;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::{pooling, send_error, Ctx, Flow};
use crate::cluster::Privileges;
use crate::error::Error;
use crate::protocol::auth::{new_salt, verify, Credential};
use crate::protocol::command::ChangeUser;
use crate::protocol::consts::{cap, status, NATIVE_PASSWORD};
use crate::protocol::handshake::{AuthSwitch, ClientHello, Handshake, HandshakeResponse};
use crate::protocol::packet::{begin_packet, finish_packet, write_packets};
use crate::protocol::stream::PacketStream;

/// Who the client proved to be.
#[derive(Debug)]
pub struct Identity {
    pub capabilities: u32,
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
}

/// A login that failed; the client has not been told yet.
pub struct LoginFailure {
    pub error: Error,
    pub seq: u8,
}

pub async fn greet(
    ctx: &Ctx,
    client: &mut PacketStream<TcpStream>,
    id: u32,
    peer_ip: IpAddr,
) -> Result<Identity, Option<LoginFailure>> {
    let salt = new_salt();
    let hs = Handshake {
        server_version: ctx.cluster.topology().greeting_version.clone(),
        connection_id: id,
        salt: salt.to_vec(),
        capabilities: cap::PROXY_OFFERS,
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
    let (credential, privileges) = check_password(ctx, &resp.user, peer_ip, &salt, &answer)
        .await
        .map_err(|error| Some(LoginFailure { error, seq }))?;
    Ok(Identity {
        capabilities: resp.capabilities & cap::PROXY_OFFERS,
        user: resp.user,
        credential,
        privileges,
        database: resp.database,
        charset: resp.charset,
        attributes: resp.attributes,
        salt,
        next_seq: seq,
    })
}

/// Verifies `answer` to `salt` for `user` from `ip`. Every failure looks the
/// same to the client: unknown user, wrong password and unsupported plugin
/// all give ERROR 1045, so nothing about other accounts leaks. Gives the
/// credential to log in to backends with and the account's privileges.
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
    /// COM_CHANGE_USER: Causeway checks the new account itself, then logs
    /// in to the primary as it; the old backend connections are closed so
    /// nothing of the previous user's session survives.
    pub(super) async fn change_user(&mut self, cu: ChangeUser<'_>, mut seq: u8) -> Flow {
        let user = String::from_utf8_lossy(cu.user).into_owned();
        let mut answer = cu.auth_response.to_vec();
        let native = cu
            .auth_plugin
            .is_none_or(|p| p == NATIVE_PASSWORD.as_bytes() || p.is_empty());
        if !native {
            self.salt = new_salt();
            let mut body = BytesMut::new();
            AuthSwitch {
                plugin: NATIVE_PASSWORD.into(),
                data: self.salt.to_vec(),
            }
            .encode(&mut body);
            self.scratch.clear();
            write_packets(&mut self.scratch, seq, &body);
            if self.client.write_all(&self.scratch).await.is_err() {
                return Flow::Close;
            }
            match self.client.read_payload(64 * 1024).await {
                Ok(p) => {
                    answer = p.data.to_vec();
                    seq = p.last_seq.wrapping_add(1);
                }
                Err(_) => return Flow::Close,
            }
        }
        let (credential, privileges) =
            match check_password(&self.ctx, &user, self.peer.ip(), &self.salt, &answer).await {
                Ok(c) => c,
                Err(e) => {
                    send_error(&mut self.client, seq, &e).await;
                    return Flow::Close;
                }
            };
        let database = String::from_utf8_lossy(cu.database).into_owned();
        self.backends.iter_mut().for_each(|b| *b = None);
        self.leases.iter_mut().for_each(|l| *l = None);
        self.reset_pooled();
        (self.tp, self.hold) = pooling(&self.ctx, &user);
        // The processlist and KILL see the new account from now on.
        self.ctx.registry.set_user(self.id, &user, privileges);
        self.privileges = privileges;
        self.user = user;
        self.credential = credential;
        self.database = (!database.is_empty()).then_some(database);
        // Collation ids above 255 exist (MariaDB 10.10+): all 16 bits count.
        if let Some(cs) = cu.charset {
            self.charset = cs;
        }
        self.status = status::AUTOCOMMIT;
        self.last_write = None;
        self.floor = None;
        self.read_mark = None;
        self.need_fresh = false;
        self.level_override = None;
        self.state.reset();
        self.stmts.clear();
        self.txn_backend = None;
        self.txn_written = false;
        let checked = if self.tp {
            self.sync(0).await
        } else {
            self.backend(0).await.map(|_| ())
        };
        if let Err(e) = checked {
            send_error(&mut self.client, seq, &e).await;
            return Flow::Close;
        }
        self.ok_or_close(seq).await
    }
}
