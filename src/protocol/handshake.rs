//! Connection-phase packets: the server's Handshake v10, the client's
//! HandshakeResponse41 (and its SSLRequest prefix), AuthSwitchRequest.
//!
//! Causeway plays the server towards clients and the client towards
//! backends, so each packet has both a decoder and an encoder here.

use bytes::{BufMut, BytesMut};

use super::buf::{put_lenenc_bytes, put_nul_str, Reader};
use super::consts::cap;

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: String,
    pub connection_id: u32,
    /// The full salt (normally 20 bytes), without the trailing NUL.
    pub salt: Vec<u8>,
    pub capabilities: u32,
    /// MariaDB's extended capabilities; sent only when `capabilities` has
    /// `LONG_PASSWORD` (`CLIENT_MYSQL`) off.
    pub ext_capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Handshake {
    pub fn decode(payload: &[u8]) -> Option<Handshake> {
        let mut r = Reader::new(payload);
        if r.u8()? != 10 {
            return None;
        }
        let server_version = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
        let connection_id = r.u32()?;
        let mut salt = r.bytes(8)?.to_vec();
        r.skip(1)?;
        let cap_low = u32::from(r.u16()?);
        // Pre-4.1 servers may stop here; Causeway requires protocol 4.1.
        let charset = r.u8()?;
        let status = r.u16()?;
        let capabilities = cap_low | u32::from(r.u16()?) << 16;
        let salt_len = usize::from(r.u8()?);
        r.skip(6)?;
        let ext = r.u32()?;
        let ext_capabilities = if capabilities & cap::LONG_PASSWORD == 0 {
            ext
        } else {
            0
        };
        if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = salt_len.saturating_sub(8).max(13);
            let part2 = r.bytes(n.min(r.remaining()))?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            salt.extend_from_slice(part2);
        }
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 {
            String::from_utf8_lossy(r.nul_or_eof_bytes()).into_owned()
        } else {
            String::new()
        };
        Some(Handshake {
            server_version,
            connection_id,
            salt,
            capabilities,
            ext_capabilities,
            charset,
            status,
            auth_plugin,
        })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(10);
        put_nul_str(out, self.server_version.as_bytes());
        out.put_u32_le(self.connection_id);
        let (p1, p2) = self.salt.split_at(self.salt.len().min(8));
        out.put_slice(p1);
        out.put_bytes(0, 8 - p1.len());
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.charset);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8((self.salt.len() + 1) as u8);
        out.put_bytes(0, 6);
        let ext = if self.capabilities & cap::LONG_PASSWORD == 0 {
            self.ext_capabilities
        } else {
            0
        };
        out.put_u32_le(ext);
        out.put_slice(p2);
        out.put_bytes(0, 13usize.saturating_sub(p2.len()).max(1));
        put_nul_str(out, self.auth_plugin.as_bytes());
    }
}

/// The client's answer to the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    /// MariaDB's extended capabilities (when `LONG_PASSWORD` is off).
    pub ext_capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    pub attributes: Vec<(String, String)>,
}

/// What a client's first packet turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// A client asking to switch to TLS before it says who it is.
    SslRequest {
        capabilities: u32,
    },
    Response(HandshakeResponse),
}

impl HandshakeResponse {
    pub fn decode(payload: &[u8]) -> Option<ClientHello> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & cap::PROTOCOL_41 == 0 {
            return None;
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        r.skip(19)?;
        let ext = r.u32()?;
        let ext_capabilities = if capabilities & cap::LONG_PASSWORD == 0 {
            ext
        } else {
            0
        };
        if r.is_empty() && capabilities & cap::SSL != 0 {
            return Some(ClientHello::SslRequest { capabilities });
        }
        let user = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
        let auth_response = if capabilities & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?
        } else if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?
        } else {
            r.nul_bytes()?
        }
        .to_vec();
        let database = if capabilities & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
            Some(String::from_utf8_lossy(r.nul_or_eof_bytes()).into_owned())
                .filter(|d| !d.is_empty())
        } else {
            None
        };
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            Some(String::from_utf8_lossy(r.nul_or_eof_bytes()).into_owned())
        } else {
            None
        };
        let mut attributes = Vec::new();
        if capabilities & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            let mut a = Reader::new(r.lenenc_bytes()?);
            while !a.is_empty() {
                let k = a.lenenc_bytes()?;
                let v = a.lenenc_bytes()?;
                attributes.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        Some(ClientHello::Response(HandshakeResponse {
            capabilities,
            ext_capabilities,
            max_packet,
            charset,
            user,
            auth_response,
            database,
            auth_plugin,
            attributes,
        }))
    }

    pub fn encode(&self, out: &mut BytesMut) {
        let mut caps = self.capabilities | cap::PLUGIN_AUTH_LENENC_CLIENT_DATA;
        if self.database.is_some() {
            caps |= cap::CONNECT_WITH_DB;
        } else {
            caps &= !cap::CONNECT_WITH_DB;
        }
        out.put_u32_le(caps);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.charset);
        out.put_bytes(0, 19);
        let ext = if caps & cap::LONG_PASSWORD == 0 {
            self.ext_capabilities
        } else {
            0
        };
        out.put_u32_le(ext);
        put_nul_str(out, self.user.as_bytes());
        put_lenenc_bytes(out, &self.auth_response);
        if let Some(db) = &self.database {
            put_nul_str(out, db.as_bytes());
        }
        if caps & cap::PLUGIN_AUTH != 0 {
            put_nul_str(out, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if caps & cap::CONNECT_ATTRS != 0 {
            let mut attrs = BytesMut::new();
            for (k, v) in &self.attributes {
                put_lenenc_bytes(&mut attrs, k.as_bytes());
                put_lenenc_bytes(&mut attrs, v.as_bytes());
            }
            put_lenenc_bytes(out, &attrs);
        }
    }
}

/// `0xFE plugin-name NUL plugin-data`: asks the other side to answer with
/// another auth plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    pub plugin: String,
    pub data: Vec<u8>,
}

impl AuthSwitch {
    pub fn decode(payload: &[u8]) -> Option<AuthSwitch> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFE {
            return None;
        }
        let plugin = String::from_utf8_lossy(r.nul_or_eof_bytes()).into_owned();
        let data = r.rest();
        let data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
        Some(AuthSwitch { plugin, data })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(0xFE);
        put_nul_str(out, self.plugin.as_bytes());
        put_nul_str(out, &self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting() -> Handshake {
        Handshake {
            server_version: "10.11.19-MariaDB-log".into(),
            connection_id: 42,
            salt: b"abcdefghijklmnopqrst".to_vec(),
            capabilities: cap::PROXY_OFFERS & !cap::LONG_PASSWORD,
            ext_capabilities: crate::protocol::consts::ext_cap::PROXY_OFFERS,
            charset: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        }
    }

    #[test]
    fn handshake_round_trip() {
        let h = greeting();
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(Handshake::decode(&out), Some(h));
    }

    #[test]
    fn decodes_a_real_mariadb_greeting() {
        // Captured from MariaDB 10.11 (salt bytes replaced).
        let mut p = vec![10u8];
        p.extend_from_slice(b"5.5.5-10.11.19-MariaDB-0+deb12u1-log\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"12345678\0");
        p.extend_from_slice(&0xF7FEu16.to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&0x81BFu16.to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&[0x1D, 0, 0, 0]);
        p.extend_from_slice(b"9abcdefghijk\0mysql_native_password\0");
        let h = Handshake::decode(&p).unwrap();
        assert_eq!(h.connection_id, 7);
        assert_eq!(h.salt, b"123456789abcdefghijk");
        assert_eq!(h.auth_plugin, "mysql_native_password");
        assert!(h.capabilities & cap::SESSION_TRACK != 0);
        // CLIENT_MYSQL off: the extended capabilities are MariaDB's.
        assert_eq!(h.ext_capabilities, 0x1D);
    }

    #[test]
    fn extended_capabilities_need_client_mysql_off() {
        let mut r = HandshakeResponse {
            capabilities: cap::BACKEND_ALWAYS & !cap::LONG_PASSWORD,
            ext_capabilities: 0x0C,
            user: "app".into(),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        r.encode(&mut out);
        let Some(ClientHello::Response(back)) = HandshakeResponse::decode(&out) else {
            panic!("a response");
        };
        assert_eq!(back.ext_capabilities, 0x0C);
        // With CLIENT_MYSQL on, the bytes are filler: nothing is sent or read.
        r.capabilities |= cap::LONG_PASSWORD;
        let mut out = BytesMut::new();
        r.encode(&mut out);
        let Some(ClientHello::Response(back)) = HandshakeResponse::decode(&out) else {
            panic!("a response");
        };
        assert_eq!(back.ext_capabilities, 0);
        let mut g = greeting();
        g.capabilities |= cap::LONG_PASSWORD;
        let mut out = BytesMut::new();
        g.encode(&mut out);
        assert_eq!(Handshake::decode(&out).unwrap().ext_capabilities, 0);
    }

    #[test]
    fn response_round_trip_with_db_and_attrs() {
        let r = HandshakeResponse {
            capabilities: cap::BACKEND_ALWAYS | cap::CONNECT_WITH_DB | cap::DEPRECATE_EOF,
            ext_capabilities: 0,
            max_packet: 1 << 24,
            charset: 45,
            user: "app".into(),
            auth_response: vec![1; 20],
            database: Some("app".into()),
            auth_plugin: Some("mysql_native_password".into()),
            attributes: vec![("_client_name".into(), "causeway".into())],
        };
        let mut out = BytesMut::new();
        r.encode(&mut out);
        let mut expect = r.clone();
        expect.capabilities |= cap::PLUGIN_AUTH_LENENC_CLIENT_DATA;
        assert_eq!(
            HandshakeResponse::decode(&out),
            Some(ClientHello::Response(expect))
        );
    }

    #[test]
    fn ssl_request_is_recognised() {
        let mut p = BytesMut::new();
        p.put_u32_le(cap::PROTOCOL_41 | cap::SSL);
        p.put_u32_le(0);
        p.put_u8(33);
        p.put_bytes(0, 23);
        assert!(matches!(
            HandshakeResponse::decode(&p),
            Some(ClientHello::SslRequest { .. })
        ));
    }

    #[test]
    fn truncated_packets_are_none() {
        let mut out = BytesMut::new();
        greeting().encode(&mut out);
        for n in 0..20 {
            assert_eq!(Handshake::decode(&out[..n]), None, "len {n}");
        }
        let r = HandshakeResponse {
            capabilities: cap::BACKEND_ALWAYS,
            user: "u".into(),
            auth_response: vec![1; 20],
            ..Default::default()
        };
        let mut out = BytesMut::new();
        r.encode(&mut out);
        for n in 0..40 {
            assert_eq!(HandshakeResponse::decode(&out[..n]), None, "len {n}");
        }
        assert_eq!(HandshakeResponse::decode(&[0, 0, 0, 0]), None);
    }

    #[test]
    fn auth_switch_round_trip() {
        let a = AuthSwitch {
            plugin: "mysql_native_password".into(),
            data: b"01234567890123456789".to_vec(),
        };
        let mut out = BytesMut::new();
        a.encode(&mut out);
        assert_eq!(AuthSwitch::decode(&out), Some(a));
    }
}
