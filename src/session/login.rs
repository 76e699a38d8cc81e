//! The client's connection phase: greeting, TLS refusal, auth switch to
//! `mysql_native_password`, password check against the account's stored
//! hash, and the first backend login as that account.

use std::net::IpAddr;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::Ctx;
use crate::error::Error;
use crate::protocol::auth::{new_salt, verify, Credential};
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
    let credential = check_password(ctx, &resp.user, peer_ip, &salt, &answer)
        .await
        .map_err(|error| Some(LoginFailure { error, seq }))?;
    Ok(Identity {
        capabilities: resp.capabilities & cap::PROXY_OFFERS,
        user: resp.user,
        credential,
        database: resp.database,
        charset: resp.charset,
        attributes: resp.attributes,
        salt,
        next_seq: seq,
    })
}

/// Verifies `answer` to `salt` for `user` from `ip`. Every failure looks the
/// same to the client: unknown user, wrong password and unsupported plugin
/// all give ERROR 1045, so nothing about other accounts leaks.
pub async fn check_password(
    ctx: &Ctx,
    user: &str,
    ip: IpAddr,
    salt: &[u8],
    answer: &[u8],
) -> Result<Credential, Error> {
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
    verify(hash, salt, answer).ok_or_else(|| {
        metrics::counter!(crate::admin::metrics::LOGIN_FAILURES, "reason" => "wrong_password")
            .increment(1);
        denied()
    })
}
