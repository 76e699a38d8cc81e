//! One backend connection: connect, log in as a client's account (with the
//! stage-1 hash, never the cleartext password), turn on session tracking,
//! and run Causeway's own small queries.

use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::consistency::Flavor;
use crate::error::{Error, ServerError};
use crate::protocol::auth::Credential;
use crate::protocol::buf::Reader;
use crate::protocol::consts::{cap, com, ext_cap, status, NATIVE_PASSWORD};
use crate::protocol::handshake::{AuthSwitch, Handshake, HandshakeResponse};
use crate::protocol::packet::write_packets;
use crate::protocol::reply::{Expect, Need, Scanner, Seen};
use crate::protocol::response::Ok as OkPacket;
use crate::protocol::stream::{PacketStream, ReadError};

/// Every backend connection asks the server to report, in each OK packet,
/// the GTID of the write it just made and any session variable that
/// changed.
const TRACKING_SETUP: &str = "SET SESSION session_track_system_variables='*', \
     session_track_schema=ON, session_track_state_change=ON";

/// Who to log in as and how.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub backend: String,
    pub address: String,
    pub user: String,
    pub credential: Credential,
    pub database: Option<String>,
    /// Capabilities of the client this connection serves; those that change
    /// reply bytes are mirrored.
    pub client_capabilities: u32,
    /// MariaDB extended capabilities the client negotiated with Causeway.
    pub client_ext_capabilities: u32,
    /// Collation id the connection starts with (16 bits: COM_CHANGE_USER
    /// carries ids above 255, which the handshake's one byte cannot).
    pub charset: u16,
    pub attributes: Vec<(String, String)>,
    pub timeout: Duration,
}

/// A backend connection that is open and has read the server's greeting,
/// not logged in yet: the server waits for the login until its
/// `connect_timeout`.
#[derive(Debug)]
pub struct Greeted {
    stream: PacketStream<TcpStream>,
    /// Sequence id of the greeting.
    seq: u8,
    handshake: Handshake,
}

impl Greeted {
    /// Connects to `address` and reads the greeting, bounded by `timeout`.
    pub async fn open(backend: &str, address: &str, timeout: Duration) -> Result<Greeted, Error> {
        let unavailable = |reason: String| Error::BackendUnavailable {
            backend: backend.to_string(),
            address: address.to_string(),
            reason,
        };
        match tokio::time::timeout(timeout, Self::open_inner(address)).await {
            Ok(Ok(g)) => Ok(g),
            Ok(Err(ConnectError::Server(e))) => Err(Error::Server(e)),
            Ok(Err(ConnectError::Other(reason))) => Err(unavailable(reason)),
            Err(_) => Err(unavailable(format!("no answer within {timeout:?}"))),
        }
    }

    async fn open_inner(address: &str) -> Result<Greeted, ConnectError> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(ConnectError::io)?;
        tcp.set_nodelay(true).map_err(ConnectError::io)?;
        keepalive(&tcp).map_err(|e| ConnectError::io(std::io::Error::from(e)))?;
        let mut stream = PacketStream::new(tcp);
        let (h, payload) = stream.read_packet().await.map_err(ConnectError::read)?;
        if payload.first() == Some(&0xFF) {
            return Err(ConnectError::server(&payload));
        }
        let handshake = Handshake::decode(&payload)
            .ok_or_else(|| ConnectError::Other("malformed handshake".into()))?;
        if handshake.capabilities & cap::PROTOCOL_41 == 0 {
            return Err(ConnectError::Other(
                "server does not speak protocol 4.1".into(),
            ));
        }
        Ok(Greeted {
            stream,
            seq: h.seq,
            handshake,
        })
    }
}

/// TCP keepalive on backend sockets: a connection whose peer vanished
/// without a word (a host that died, a network that dropped it) fails
/// after about `KEEPALIVE_IDLE_S + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S`
/// seconds of silence (11 s) instead of the kernel's two hours, also for a
/// connection idle in a pool. A server that is alive but stopped (its
/// kernel still answers) is found by the statement's read timeout instead
/// (`timeouts.read_ms`).
pub const KEEPALIVE_IDLE_S: u32 = 5;
/// Idle for longer than this, a connection is checked with the kernel
/// before its next command (see [`BackendConn::usable_after_idle`]).
const IDLE_CHECK_AFTER: Duration = Duration::from_millis(1);

/// Seconds between keepalive probes once idle.
pub const KEEPALIVE_INTERVAL_S: u32 = 2;
/// Unanswered keepalive probes after which the connection fails.
pub const KEEPALIVE_COUNT: u32 = 3;

/// Turns on TCP keepalive with Causeway's short timings.
fn keepalive(tcp: &TcpStream) -> nix::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(tcp, sockopt::KeepAlive, &true)?;
    setsockopt(tcp, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_S)?;
    setsockopt(tcp, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_S)?;
    setsockopt(tcp, sockopt::TcpKeepCount, &KEEPALIVE_COUNT)
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct BackendConn {
    pub stream: PacketStream<TcpStream>,
    pub backend: String,
    /// The server's connection id.
    pub thread_id: u32,
    /// Negotiated capabilities.
    pub capabilities: u32,
    /// Negotiated MariaDB extended capabilities.
    pub ext_capabilities: u32,
    /// The MariaDB extended capabilities the server offered.
    pub server_ext_capabilities: u32,
    pub server_version: String,
    /// Status flags of the last reply.
    pub status: u16,
    /// Scratch buffer for outgoing commands, reused to avoid an allocation
    /// per statement.
    wbuf: BytesMut,
    /// When the connection was last known usable: a command sent, or a
    /// check passed (see [`BackendConn::usable_after_idle`]).
    known_alive: std::time::Instant,
    /// Set for connections of the transaction-level pool.
    pub pooled: Option<Box<super::lease::Pooled>>,
    /// Collation id it logged in with; above 255 it is set by statements
    /// after login (and again after a reset).
    charset: u16,
}

/// Rows of a text-protocol result, each column `None` for SQL NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// A small result with its column names.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    /// Each column's type and character set (collation id).
    pub types: Vec<(u8, u16)>,
    pub rows: Rows,
}

impl Table {
    /// The value of column `name` in row `row`.
    pub fn get(&self, row: usize, name: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.rows.get(row)?.get(i)?.as_deref()
    }
}

/// The `name`, type and character set of a column definition (protocol
/// 4.1: catalog, schema, table, org_table, name, org_name, fixed-length
/// fields: charset(2) length(4) type(1) ...).
fn column_def(p: &[u8]) -> Option<(String, u8, u16)> {
    let mut r = Reader::new(p);
    for _ in 0..4 {
        r.lenenc_bytes()?;
    }
    let name = String::from_utf8_lossy(r.lenenc_bytes()?).into_owned();
    r.lenenc_bytes()?;
    r.lenenc_int()?;
    let charset = r.u16()?;
    r.u32()?;
    let ty = r.u8()?;
    Some((name, ty, charset))
}

impl BackendConn {
    /// Connects and logs in, bounded by `p.timeout`.
    pub async fn connect(p: &ConnectParams) -> Result<BackendConn, Error> {
        let unavailable = |reason: String| Error::BackendUnavailable {
            backend: p.backend.clone(),
            address: p.address.clone(),
            reason,
        };
        match tokio::time::timeout(p.timeout, Self::connect_inner(p)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(ConnectError::Server(e))) => Err(Error::Server(e)),
            Ok(Err(ConnectError::Other(reason))) => Err(unavailable(reason)),
            Err(_) => Err(unavailable(format!("no answer within {:?}", p.timeout))),
        }
    }

    async fn connect_inner(p: &ConnectParams) -> Result<BackendConn, ConnectError> {
        let greeted = Greeted::open_inner(&p.address).await?;
        Self::login_inner(greeted, p).await
    }

    /// Logs in on a connection already opened by [`Greeted::open`] (the
    /// server's greeting read while the client was still answering
    /// Causeway's), bounded by `p.timeout`.
    pub async fn login(greeted: Greeted, p: &ConnectParams) -> Result<BackendConn, Error> {
        let unavailable = |reason: String| Error::BackendUnavailable {
            backend: p.backend.clone(),
            address: p.address.clone(),
            reason,
        };
        match tokio::time::timeout(p.timeout, Self::login_inner(greeted, p)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(ConnectError::Server(e))) => Err(Error::Server(e)),
            Ok(Err(ConnectError::Other(reason))) => Err(unavailable(reason)),
            Err(_) => Err(unavailable(format!("no answer within {:?}", p.timeout))),
        }
    }

    async fn login_inner(greeted: Greeted, p: &ConnectParams) -> Result<BackendConn, ConnectError> {
        let Greeted {
            mut stream,
            seq,
            handshake: hs,
        } = greeted;
        let wanted = cap::BACKEND_ALWAYS
            | (p.client_capabilities & cap::MIRRORED_FROM_CLIENT)
            | if p.database.is_some() {
                cap::CONNECT_WITH_DB
            } else {
                0
            };
        let mut capabilities = wanted & hs.capabilities;
        // MariaDB's extended capabilities: the client's, as far as this
        // server offers them (the greeting offered clients no more than
        // every backend does).
        let ext_capabilities =
            p.client_ext_capabilities & hs.ext_capabilities & ext_cap::PROXY_OFFERS;
        if ext_capabilities != 0 {
            capabilities &= !cap::LONG_PASSWORD;
        }
        if capabilities & cap::SESSION_TRACK == 0 {
            return Err(ConnectError::Other(
                "server does not support session tracking".into(),
            ));
        }
        let mut attributes = p.attributes.clone();
        attributes.push(("_proxy".into(), "causeway".into()));
        let response = HandshakeResponse {
            capabilities,
            ext_capabilities,
            max_packet: 1 << 30,
            charset: handshake_charset(p.charset),
            user: p.user.clone(),
            auth_response: p.credential.scramble(&hs.salt),
            database: p.database.clone(),
            auth_plugin: Some(NATIVE_PASSWORD.into()),
            attributes,
        };
        let mut out = BytesMut::with_capacity(512);
        let mut body = BytesMut::new();
        response.encode(&mut body);
        write_packets(&mut out, seq.wrapping_add(1), &body);
        let setup = setup_statements(p.charset, &hs.server_version);
        // The setup statements follow the login in the same write when the
        // server greets with the plugin Causeway answers with: it then
        // answers the login with OK or ERR (never a switch for an account
        // Causeway can log in as) and reads them as the first commands.
        // After an ERR the server closes and never reads them.
        let pipelined = hs.auth_plugin == NATIVE_PASSWORD;
        if pipelined {
            for sql in &setup {
                body.clear();
                body.extend_from_slice(&[com::QUERY]);
                body.extend_from_slice(sql.as_bytes());
                write_packets(&mut out, 0, &body);
            }
        }
        stream.write_all(&out).await.map_err(ConnectError::io)?;
        let mut status = hs.status;
        loop {
            let (h, payload) = stream.read_packet().await.map_err(ConnectError::read)?;
            match payload.first() {
                Some(0x00) => {
                    if let Some(ok) = OkPacket::decode(&payload, capabilities) {
                        status = ok.status;
                    }
                    break;
                }
                Some(0xFF) => return Err(ConnectError::server(&payload)),
                Some(0xFE) => {
                    let sw = AuthSwitch::decode(&payload)
                        .ok_or_else(|| ConnectError::Other("malformed auth switch".into()))?;
                    if sw.plugin != NATIVE_PASSWORD {
                        return Err(ConnectError::Other(format!(
                            "account uses auth plugin '{}'; Causeway logs in with {NATIVE_PASSWORD} only",
                            sw.plugin
                        )));
                    }
                    if pipelined {
                        // The statements sent after the login would be
                        // read as the answer: this connection is lost.
                        return Err(ConnectError::Other(
                            "server asked for a second login exchange".into(),
                        ));
                    }
                    let answer = p.credential.scramble(&sw.data);
                    out.clear();
                    write_packets(&mut out, h.seq.wrapping_add(1), &answer);
                    stream.write_all(&out).await.map_err(ConnectError::io)?;
                }
                _ => return Err(ConnectError::Other("unexpected packet during login".into())),
            }
        }
        let mut conn = BackendConn {
            stream,
            backend: p.backend.clone(),
            thread_id: hs.connection_id,
            capabilities,
            ext_capabilities,
            server_ext_capabilities: hs.ext_capabilities,
            server_version: hs.server_version,
            status,
            wbuf: BytesMut::with_capacity(1024),
            known_alive: std::time::Instant::now(),
            pooled: None,
            charset: p.charset,
        };
        let setup_error = |e: Error| match e {
            Error::Server(s) => ConnectError::Server(s),
            other => ConnectError::Other(other.to_string()),
        };
        for sql in &setup {
            if pipelined {
                conn.read_table().await.map_err(setup_error)?;
            } else {
                conn.query_rows(sql).await.map_err(setup_error)?;
            }
        }
        Ok(conn)
    }

    /// Sends a command payload as packets starting at sequence id 0.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.known_alive = std::time::Instant::now();
        self.wbuf.clear();
        write_packets(&mut self.wbuf, 0, payload);
        let r = self.stream.write_all(&self.wbuf).await;
        if self.wbuf.capacity() > 1 << 20 {
            self.wbuf = BytesMut::with_capacity(1024);
        }
        r.map_err(|e| self.lost(e.to_string()))
    }

    /// Sends several commands back to back in one write (pipelined); the
    /// replies come back in order.
    pub async fn send_commands(&mut self, payloads: &[&[u8]]) -> Result<(), Error> {
        self.known_alive = std::time::Instant::now();
        self.wbuf.clear();
        for p in payloads {
            write_packets(&mut self.wbuf, 0, p);
        }
        let r = self.stream.write_all(&self.wbuf).await;
        if self.wbuf.capacity() > 1 << 20 {
            self.wbuf = BytesMut::with_capacity(1024);
        }
        r.map_err(|e| self.lost(e.to_string()))
    }

    /// Resets the connection's session (`COM_RESET_CONNECTION`: variables,
    /// user variables, temporary tables, prepared statements, locks),
    /// turns session tracking back on, and selects `database`, all in one
    /// round trip. Any failure means the connection must not be used.
    pub async fn reset(&mut self, database: Option<&str>) -> Result<(), Error> {
        let mut setup = vec![com::QUERY];
        setup.extend_from_slice(TRACKING_SETUP.as_bytes());
        let extra = Flavor::from_version(&self.server_version)
            .tracking_setup()
            .map(|sql| {
                let mut p = vec![com::QUERY];
                p.extend_from_slice(sql.as_bytes());
                p
            });
        let init_db = database.map(|db| {
            let mut p = vec![com::INIT_DB];
            p.extend_from_slice(db.as_bytes());
            p
        });
        // A reset goes back to the handshake's collation: put a wide one back.
        let collation: Vec<Vec<u8>> = wide_collation_setup(self.charset)
            .iter()
            .flatten()
            .map(|sql| {
                let mut p = vec![com::QUERY];
                p.extend_from_slice(sql.as_bytes());
                p
            })
            .collect();
        let reset = [com::RESET_CONNECTION];
        let mut cmds: Vec<&[u8]> = vec![&reset, &setup];
        cmds.extend(collation.iter().map(Vec::as_slice));
        cmds.extend(extra.as_deref());
        cmds.extend(init_db.as_deref());
        self.send_commands(&cmds).await?;
        let mut first_error = None;
        for _ in 0..cmds.len() {
            if let Err(e) = self.read_table().await {
                if !matches!(e, Error::Server(_)) {
                    return Err(e);
                }
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn lost(&self, reason: String) -> Error {
        Error::BackendLost {
            backend: self.backend.clone(),
            reason,
        }
    }

    /// Runs one statement for Causeway itself and collects its rows (text
    /// protocol, a single result set). Not for client traffic: it buffers.
    pub async fn query_rows(&mut self, sql: &str) -> Result<Rows, Error> {
        self.query_table(sql).await.map(|t| t.rows)
    }

    /// Like [`BackendConn::query_rows`], with the column names.
    /// Turns Causeway's session tracking back on after a client's statement
    /// changed it (connectors set `session_track_system_variables` to the
    /// few variables they follow; Causeway must hear of every change).
    pub async fn restore_tracking(&mut self) -> Result<(), Error> {
        self.query_table(TRACKING_SETUP).await.map(|_| ())
    }

    /// Whether `changes` (variables a reply reported) turn off some of the
    /// tracking Causeway set up on this connection.
    pub fn tracking_changed(changes: &[(String, String)]) -> bool {
        changes.iter().any(|(k, v)| {
            let k = k.to_ascii_lowercase();
            match k.as_str() {
                "session_track_system_variables" => v.trim() != "*",
                "session_track_schema" | "session_track_state_change" => {
                    !v.eq_ignore_ascii_case("ON") && v != "1"
                }
                _ => false,
            }
        })
    }

    pub async fn query_table(&mut self, sql: &str) -> Result<Table, Error> {
        let mut payload = Vec::with_capacity(sql.len() + 1);
        payload.push(com::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        self.send_command(&payload).await?;
        self.read_table().await
    }

    /// Reads the reply to a query already sent and collects its rows (text
    /// protocol, a single result set).
    pub async fn read_table(&mut self) -> Result<Table, Error> {
        let mut scanner = Scanner::new(Expect::ResultSets, self.capabilities);
        let mut rows = Vec::new();
        let mut columns = 0usize;
        let mut error = None;
        let mut names = Vec::new();
        let mut types = Vec::new();
        while !scanner.is_done() {
            let (h, p) = self
                .stream
                .read_packet()
                .await
                .map_err(|e| self.lost(read_reason(&e)))?;
            match scanner.header(h, p.first().copied()) {
                Need::Stream => {
                    rows.push(parse_text_row(&p, columns).ok_or_else(|| self.malformed())?)
                }
                Need::Whole => match scanner.packet(h, &p).map_err(|_| self.malformed())? {
                    Seen::Err => error = ServerError::from_packet(&p),
                    Seen::Ok { status } | Seen::Eof { status } => self.status = status,
                    Seen::LocalInfile => return Err(self.malformed()),
                    _ => {
                        if columns == 0 {
                            columns = Reader::new(&p).lenenc_int().unwrap_or(0) as usize;
                        } else if names.len() < columns {
                            let (name, ty, cs) = column_def(&p).unwrap_or_default();
                            names.push(name);
                            types.push((ty, cs));
                        }
                    }
                },
            }
        }
        match error {
            Some(e) => Err(Error::Server(e)),
            None => Ok(Table {
                columns: names,
                types,
                rows,
            }),
        }
    }

    fn malformed(&self) -> Error {
        Error::BackendProtocol {
            backend: self.backend.clone(),
        }
    }

    /// Whether the server still has the connection open and has sent
    /// nothing unasked (a pooled connection closed by `wait_timeout` or
    /// `KILL` reads as closed). Asks the kernel directly, without waiting.
    pub fn still_open(&self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        if self.stream.buffered() > 0 {
            return false;
        }
        let fd = self.stream.get_ref().as_raw_fd();
        let mut byte = [0u8; 1];
        matches!(
            recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
            Err(nix::errno::Errno::EAGAIN)
        )
    }

    /// Before a command on a connection no command is in flight on: whether
    /// it can take one (the server has not closed it meanwhile: a restart,
    /// a `KILL`, `wait_timeout`). What the runtime already knows costs
    /// nothing; a connection not known usable for more than a millisecond
    /// is also asked of the kernel (one `recv(MSG_PEEK)`), so a close the
    /// runtime has not noticed yet is found too.
    pub fn usable_after_idle(&mut self) -> bool {
        if self.stream.gone_while_idle() {
            return false;
        }
        if self.known_alive.elapsed() < IDLE_CHECK_AFTER {
            return true;
        }
        // Passed: a second look before the same command (an execute's
        // prepare check, then its run) costs nothing.
        let open = self.still_open();
        if open {
            self.known_alive = std::time::Instant::now();
        }
        open
    }

    pub fn in_transaction(&self) -> bool {
        self.status & status::IN_TRANS != 0
    }
}

fn parse_text_row(p: &[u8], columns: usize) -> Option<Vec<Option<String>>> {
    let mut r = Reader::new(p);
    let mut row = Vec::with_capacity(columns);
    for _ in 0..columns {
        if r.peek()? == 0xFB {
            r.skip(1)?;
            row.push(None);
        } else {
            row.push(Some(
                String::from_utf8_lossy(r.lenenc_bytes()?).into_owned(),
            ));
        }
    }
    Some(row)
}

pub fn read_reason(e: &ReadError) -> String {
    match e {
        ReadError::Io(e) => e.to_string(),
        ReadError::Closed => "connection closed".into(),
        ReadError::Truncated => "connection closed in the middle of a packet".into(),
        ReadError::TooLarge { limit } => format!("packet larger than {limit} bytes"),
        ReadError::OutOfOrder { expected } => format!("packet out of order (expected #{expected})"),
    }
}

enum ConnectError {
    Server(ServerError),
    Other(String),
}

impl ConnectError {
    fn io(e: std::io::Error) -> ConnectError {
        ConnectError::Other(e.to_string())
    }
    fn read(e: ReadError) -> ConnectError {
        ConnectError::Other(read_reason(&e))
    }
    fn server(payload: &[u8]) -> ConnectError {
        match ServerError::from_packet(payload) {
            Some(e) => ConnectError::Server(e),
            None => ConnectError::Other("malformed error packet".into()),
        }
    }
}

/// What a new connection runs right after login, in order: session
/// tracking, the collation when the handshake could not carry it, and the
/// flavour's own tracking of GTIDs (MySQL: `session_track_gtids`).
fn setup_statements(charset: u16, server_version: &str) -> Vec<std::borrow::Cow<'static, str>> {
    use std::borrow::Cow;
    let mut out = vec![Cow::Borrowed(TRACKING_SETUP)];
    out.extend(
        wide_collation_setup(charset)
            .into_iter()
            .flatten()
            .map(Cow::Owned),
    );
    out.extend(
        Flavor::from_version(server_version)
            .tracking_setup()
            .map(Cow::Borrowed),
    );
    out
}

/// The handshake's one-byte collation for `charset`: itself when it fits,
/// else utf8mb4_general_ci, corrected by [`wide_collation_setup`] after login.
fn handshake_charset(charset: u16) -> u8 {
    u8::try_from(charset).unwrap_or(UTF8MB4_GENERAL_CI)
}

const UTF8MB4_GENERAL_CI: u8 = 45;

/// Statements that give a connection the collation `charset` when the
/// handshake could not (ids above 255), as a server does for a
/// COM_CHANGE_USER naming it: client, connection and results character
/// sets all follow it. Two statements: the character set is read from
/// `collation_connection` once it is set (a server takes a collation id,
/// not a character set id, above 255).
fn wide_collation_setup(charset: u16) -> Option<[String; 2]> {
    (charset > 255).then(|| {
        [
            format!("SET collation_connection = {charset}"),
            "SET character_set_client = @@character_set_connection, \
             character_set_results = @@character_set_connection"
                .to_string(),
        ]
    })
}

#[cfg(test)]
mod collation_tests {
    use super::*;

    #[test]
    fn wide_collations_are_set_after_login() {
        assert_eq!(handshake_charset(45), 45);
        assert_eq!(handshake_charset(255), 255);
        assert_eq!(handshake_charset(608), UTF8MB4_GENERAL_CI);
        assert!(wide_collation_setup(255).is_none());
        let [first, second] = wide_collation_setup(608).expect("statements for 608");
        assert_eq!(first, "SET collation_connection = 608");
        assert!(second.contains("character_set_results = @@character_set_connection"));
    }
}
