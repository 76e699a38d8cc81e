//! A minimal hand-driven client built on Causeway's own codec, for what no
//! client library exposes: cursors, COM_FIELD_LIST, malformed packets,
//! unknown commands.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use causeway::protocol::auth::Credential;
use causeway::protocol::consts::cap;
use causeway::protocol::handshake::{Handshake, HandshakeResponse};
use causeway::protocol::packet::{write_packets, Header};
use causeway::protocol::stream::PacketStream;
use tokio::net::TcpStream;

pub struct Raw {
    pub s: PacketStream<TcpStream>,
    pub caps: u32,
    pub greeting: Handshake,
}

impl Raw {
    /// Connects and logs in with `mysql_native_password`.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
        extra_caps: u32,
    ) -> Raw {
        let sock = TcpStream::connect(addr).await.unwrap();
        let mut s = PacketStream::new(sock);
        let (_, p) = s.read_packet().await.unwrap();
        let greeting = Handshake::decode(&p).expect("greeting");
        let caps = cap::PROTOCOL_41
            | cap::SECURE_CONNECTION
            | cap::PLUGIN_AUTH
            | cap::LONG_PASSWORD
            | cap::TRANSACTIONS
            | cap::MULTI_RESULTS
            | extra_caps;
        let r = HandshakeResponse {
            capabilities: caps,
            ext_capabilities: 0,
            max_packet: 1 << 24,
            charset: 45,
            user: user.into(),
            auth_response: Credential::from_password(password.as_bytes()).scramble(&greeting.salt),
            database: db.map(str::to_string),
            auth_plugin: Some("mysql_native_password".into()),
            attributes: vec![],
        };
        let mut body = BytesMut::new();
        r.encode(&mut body);
        let mut out = BytesMut::new();
        write_packets(&mut out, 1, &body);
        s.write_all(&out).await.unwrap();
        let (_, p) = s.read_packet().await.unwrap();
        assert_eq!(
            p.first(),
            Some(&0u8),
            "login OK, got {:?}",
            String::from_utf8_lossy(&p)
        );
        Raw {
            s,
            caps: caps | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA,
            greeting,
        }
    }

    /// Sends raw bytes (a whole packet or garbage).
    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    /// Sends a command payload with sequence id 0.
    pub async fn command(&mut self, payload: &[u8]) {
        let mut out = BytesMut::new();
        write_packets(&mut out, 0, payload);
        self.s.write_all(&out).await.unwrap();
    }

    pub async fn packet(&mut self) -> (Header, Bytes) {
        self.s.read_packet().await.expect("a packet")
    }

    /// Reads packets until (and including) an ERR, an EOF (0xFE, shorter
    /// than 9 bytes), or an OK (0x00) when it is the first packet read,
    /// returning all of them.
    pub async fn until_terminal(&mut self) -> Vec<Bytes> {
        let mut v = Vec::new();
        loop {
            let (_, p) = self.packet().await;
            let term = matches!(p.first(), Some(0xFF))
                || (p.first() == Some(&0xFE) && p.len() < 9)
                || (v.is_empty() && p.first() == Some(&0x00));
            v.push(p);
            if term {
                return v;
            }
        }
    }

    /// Reads one whole reply, as the protocol's reply state machine sees
    /// it, returning every packet's payload.
    pub async fn reply(&mut self, expect: causeway::protocol::reply::Expect) -> Vec<Bytes> {
        use causeway::protocol::reply::{Need, Scanner};
        let mut sc = Scanner::new(expect, self.caps);
        let mut v = Vec::new();
        while !sc.is_done() {
            let (h, p) = self.packet().await;
            if let Need::Whole = sc.header(h, p.first().copied()) {
                sc.packet(h, &p).expect("well-formed reply");
            }
            v.push(p);
        }
        v
    }
}

/// Decodes an ERR payload into (code, sqlstate, message).
pub fn err_of(p: &[u8]) -> Option<(u16, String, String)> {
    causeway::error::ServerError::from_packet(p).map(|e| {
        (
            e.code,
            String::from_utf8_lossy(&e.sql_state).into_owned(),
            e.message,
        )
    })
}
