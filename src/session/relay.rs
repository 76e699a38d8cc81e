//! Forwards one backend reply to the client as it arrives: row packets are
//! passed through untouched (streamed, even when larger than the buffer);
//! only terminal packets are decoded, for status flags and tracked state.

use bytes::{Buf, BufMut, BytesMut};

use super::ClientStream;
use crate::pool::conn::{read_reason, BackendConn};
use crate::protocol::consts::{cap, status, MAX_PACKET_PAYLOAD};
use crate::protocol::packet::{begin_packet, finish_packet, Header, HEADER_LEN};
use crate::protocol::reply::{Expect, Need, Scanner, Seen};
use crate::protocol::response::{Ok as OkPacket, StateChange};

pub use super::waiting::{hung_reason, Silence, Watch};
use super::waiting::{wait_backend, Woke};

/// What the session learns from one reply.
#[derive(Debug, Default, Clone)]
pub struct ReplyInfo {
    /// Final status flags.
    pub status: Option<u16>,
    pub error: bool,
    /// The error was the server's `--read-only` refusal (1290).
    pub read_only_error: bool,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// Current database, when the server reported a change.
    pub schema: Option<String>,
    /// GTID of the last write (MariaDB `last_gtid` tracking).
    pub last_gtid: Option<String>,
    /// Other session variables the server reported as changed.
    pub variables: Vec<(String, String)>,
    pub prepared: Option<Prepared>,
    /// The last result of the reply was a result set (not a bare OK).
    pub result_set: bool,
    /// Warnings the server counted for the statement (its last terminator).
    pub warnings: u16,
    /// The server said the session's state changed beyond what it reports
    /// item by item (user variables, prepares, temporary tables): the
    /// state-change tracker's item, or the status flag of a classic EOF.
    pub state_changed: bool,
    /// The reply's digest, when asked for ([`Rewrite::digest`]) and the
    /// reply has one (not after a `LOCAL INFILE` request).
    pub digest: Option<u64>,
    /// The backend's own status flags when they were rewritten for the client.
    backend_status: Option<u16>,
}

/// The statement a COM_STMT_PREPARE created (the statement map of the
/// router issue keys on it).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    pub stmt_id: u32,
    pub columns: u16,
    pub params: u16,
}

impl ReplyInfo {
    fn absorb_ok(&mut self, payload: &[u8], capabilities: u32) {
        let Some(ok) = OkPacket::decode(payload, capabilities) else {
            return;
        };
        self.status = Some(ok.status);
        self.warnings = ok.warnings;
        self.affected_rows = ok.affected_rows;
        self.last_insert_id = ok.last_insert_id;
        if ok.status & status::SESSION_STATE_CHANGED == 0 {
            return;
        }
        for change in ok.changes().flatten() {
            match change {
                StateChange::Schema(s) => {
                    self.schema = Some(String::from_utf8_lossy(s).into_owned());
                }
                StateChange::SystemVariable { name, value }
                    if name == b"last_gtid" && !value.is_empty() =>
                {
                    self.last_gtid = Some(String::from_utf8_lossy(value).into_owned());
                }
                StateChange::SystemVariable { name, .. } if name == b"last_gtid" => {}
                StateChange::SystemVariable { name, value } => self.variables.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                )),
                StateChange::StateChanged(true) => self.state_changed = true,
                StateChange::Gtids(g) => {
                    self.last_gtid = Some(String::from_utf8_lossy(g).into_owned());
                }
                _ => {}
            }
        }
    }
}

/// Why a relay stopped early.
/// ER_OPTION_PREVENTS_STATEMENT (1290), little-endian as in an ERR packet.
const ER_OPTION_PREVENTS_STATEMENT: [u8; 2] = 1290u16.to_le_bytes();

/// Whether an ERR payload is the server's `--read-only` refusal.
fn is_read_only_refusal(payload: &[u8]) -> bool {
    payload.get(1..3) == Some(&ER_OPTION_PREVENTS_STATEMENT[..])
        && payload.windows(9).any(|w| w == b"read-only")
}

#[derive(Debug)]
pub enum RelayError {
    /// Writing to or reading from the client failed: the session is over.
    Client(#[allow(dead_code)] std::io::Error),
    /// The backend connection failed or sent nonsense. `next_seq` is the
    /// sequence id an error packet to the client must carry; `sent` says
    /// whether any byte of the reply already reached the client, after
    /// which no error packet may follow (the client would read it as the
    /// rest of the reply).
    Backend {
        reason: String,
        next_seq: u8,
        malformed: bool,
        sent: bool,
        /// The backend stopped answering and did not greet a new
        /// connection either: it is down, not only this connection.
        hung: bool,
    },
    /// The session was killed (`KILL n`) while it waited for the backend.
    /// `sent`: some byte of the reply has reached the client already.
    Killed { sent: bool },
    /// The client closed its connection while it waited for the backend.
    ClientGone,
    /// The reply was only the server's `--read-only` refusal (1290), not
    /// relayed (see [`Rewrite::read_only_refusal`]): the statement did not
    /// run.
    ReadOnly,
}

/// How the client's view of a reply differs from the backend's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rewrite {
    /// Status bits to present as the session's own: `(mask, value)`. A read
    /// served by a replica during a primary transaction must still show
    /// the client `SERVER_STATUS_IN_TRANS`, as a direct connection would.
    pub status: Option<(u16, u16)>,
    /// The statement id the client knows, for a COM_STMT_PREPARE reply.
    pub stmt_id: Option<u32>,
    /// The value of the `Compression` row of a `SHOW STATUS` reply: the
    /// client's connection is compressed, the backend's is not.
    pub compression: Option<bool>,
    /// A reply that is only ERR 1290 (the server is read-only) is kept
    /// from the client: the primary it was sent to was just made
    /// read-only, and the statement may run on the new one.
    pub read_only_refusal: bool,
    /// Compute the reply's digest (`ReplyInfo::digest`), recorded for a
    /// transaction replay.
    pub digest: bool,
}

/// A text-protocol row `Compression | <value>` with `on`'s value instead,
/// or `None` when `payload` is another row or already says it.
fn compression_row(payload: &[u8], on: bool) -> Option<BytesMut> {
    let mut r = crate::protocol::buf::Reader::new(payload);
    let name = r.lenenc_bytes()?;
    let value = r.lenenc_bytes()?;
    let want: &[u8] = if on { b"ON" } else { b"OFF" };
    if name != b"Compression" || !r.is_empty() || value == want {
        return None;
    }
    let mut row = BytesMut::with_capacity(payload.len());
    crate::protocol::buf::put_lenenc_bytes(&mut row, name);
    crate::protocol::buf::put_lenenc_bytes(&mut row, want);
    Some(row)
}

/// Overwrites the status flags of a terminal OK/EOF payload in place.
fn patch_status(payload: &mut [u8], is_eof: bool, (mask, value): (u16, u16)) {
    let at = if is_eof {
        Some(3)
    } else {
        let mut r = crate::protocol::buf::Reader::new(payload);
        r.u8()
            .and_then(|_| r.lenenc_int())
            .and_then(|_| r.lenenc_int())
            .map(|_| payload.len() - r.remaining())
    };
    if let Some(at) = at {
        if let Some(b) = payload.get_mut(at..at + 2) {
            let st = u16::from_le_bytes([b[0], b[1]]);
            let st = (st & !mask) | (value & mask);
            b.copy_from_slice(&st.to_le_bytes());
        }
    }
}

/// Relays the reply to the command just sent on `backend`.
pub async fn relay(
    client: &mut ClientStream,
    client_caps: u32,
    backend: &mut BackendConn,
    expect: Expect,
    scratch: &mut BytesMut,
    rewrite: Rewrite,
    watch: Watch<'_>,
) -> Result<ReplyInfo, RelayError> {
    let mut sc = Scanner::new(expect, backend.capabilities);
    if rewrite.compression.is_some() {
        sc.inspect_rows();
    }
    // Bytes the client pipelined mean it still waits for replies; a peer
    // that has sent nothing and reads EOF is gone (the server's own test).
    let mut watch_client = watch.client_eof && client.pending() == 0;
    let mut info = ReplyInfo::default();
    // A client without session tracking must not see tracking data.
    let strip_tracking = client_caps & cap::SESSION_TRACK == 0;
    let backend_caps = backend.capabilities;
    let mut stream_left = 0usize;
    let mut next_seq = 1u8;
    let mut in_result_set = false;
    let mut sent = false;
    let mut digest = rewrite.digest.then(super::replay::ReplyDigest::default);
    loop {
        let mut local_infile = false;
        {
            let buf = backend.stream.buffer();
            let mut pos = 0usize;
            let mut flushed = 0usize;
            loop {
                if stream_left > 0 {
                    let n = stream_left.min(buf.len() - pos);
                    if let Some(d) = digest.as_mut() {
                        d.streamed(&buf[pos..pos + n]);
                    }
                    pos += n;
                    stream_left -= n;
                    if stream_left > 0 {
                        break;
                    }
                }
                if sc.is_done() {
                    break;
                }
                let Some(h) = Header::parse(&buf[pos..]) else {
                    break;
                };
                if h.len > 0 && buf.len() - pos <= HEADER_LEN {
                    break;
                }
                let first = (h.len > 0).then(|| buf[pos + HEADER_LEN]);
                match sc.header(h, first) {
                    Need::Stream => {
                        next_seq = h.seq.wrapping_add(1);
                        pos += HEADER_LEN;
                        stream_left = h.len;
                        if let Some(d) = digest.as_mut() {
                            d.stream_start(h.len);
                        }
                    }
                    Need::Whole => {
                        let end = pos + HEADER_LEN + h.len;
                        if buf.len() < end {
                            if h.len >= MAX_PACKET_PAYLOAD {
                                // Never expected for a steering packet; read it whole anyway.
                                buf.reserve(end - buf.len());
                            }
                            break;
                        }
                        next_seq = h.seq.wrapping_add(1);
                        let payload = &buf[pos + HEADER_LEN..end];
                        let seen = sc.packet(h, payload).map_err(|_| RelayError::Backend {
                            reason: "malformed reply".into(),
                            next_seq,
                            malformed: true,
                            sent,
                            hung: false,
                        })?;
                        if let Some(d) = digest.as_mut() {
                            d.packet(seen, payload, backend_caps);
                        }
                        if let (Some(over), Seen::Ok { .. } | Seen::Eof { .. }) =
                            (rewrite.status, seen)
                        {
                            let is_eof = matches!(seen, Seen::Eof { .. });
                            info.backend_status = match seen {
                                Seen::Ok { status } | Seen::Eof { status } => Some(status),
                                _ => None,
                            };
                            patch_status(&mut buf[pos + HEADER_LEN..end], is_eof, over);
                        }
                        if let (Some(id), Seen::PrepareOk { .. }) = (rewrite.stmt_id, seen) {
                            if let Some(b) = buf.get_mut(pos + HEADER_LEN + 1..pos + HEADER_LEN + 5)
                            {
                                b.copy_from_slice(&id.to_le_bytes());
                            }
                        }
                        let payload = &buf[pos + HEADER_LEN..end];
                        if rewrite.read_only_refusal
                            && !sent
                            && pos == 0
                            && matches!(seen, Seen::Err)
                            && is_read_only_refusal(payload)
                        {
                            buf.advance(end);
                            return Err(RelayError::ReadOnly);
                        }
                        match seen {
                            Seen::Ok { .. } | Seen::Eof { .. } => {
                                info.result_set = in_result_set;
                                in_result_set = false;
                            }
                            Seen::Other => in_result_set = true,
                            _ => {}
                        }
                        match seen {
                            Seen::Ok { status } => {
                                info.absorb_ok(payload, backend_caps);
                                if rewrite.status.is_some() {
                                    info.status = info.backend_status.or(Some(status));
                                }
                                if strip_tracking && status & status::SESSION_STATE_CHANGED != 0 {
                                    client
                                        .write_all(&buf[flushed..pos])
                                        .await
                                        .map_err(RelayError::Client)?;
                                    sent |= pos > flushed;
                                    scratch.clear();
                                    if let Some(ok) = OkPacket::decode(payload, backend_caps) {
                                        let start = begin_packet(scratch, h.seq);
                                        ok.encode(scratch, client_caps);
                                        finish_packet(scratch, start);
                                    }
                                    client
                                        .write_all(scratch)
                                        .await
                                        .map_err(RelayError::Client)?;
                                    sent |= !scratch.is_empty();
                                    flushed = end;
                                }
                            }
                            Seen::Eof { status } => {
                                info.status = Some(info.backend_status.unwrap_or(status));
                                if let Some(eof) = crate::protocol::response::Eof::decode(payload) {
                                    info.warnings = eof.warnings;
                                }
                                info.state_changed |= status & status::SESSION_STATE_CHANGED != 0;
                            }
                            Seen::Err => {
                                info.error = true;
                                info.read_only_error = is_read_only_refusal(payload);
                            }
                            Seen::PrepareOk {
                                stmt_id,
                                columns,
                                params,
                            } => {
                                info.prepared = Some(Prepared {
                                    stmt_id,
                                    columns,
                                    params,
                                });
                            }
                            Seen::LocalInfile => local_infile = true,
                            Seen::Row => {
                                let on = rewrite.compression.unwrap_or_default();
                                if let Some(row) = compression_row(payload, on) {
                                    client
                                        .write_all(&buf[flushed..pos])
                                        .await
                                        .map_err(RelayError::Client)?;
                                    scratch.clear();
                                    let start = begin_packet(scratch, h.seq);
                                    scratch.extend_from_slice(&row);
                                    finish_packet(scratch, start);
                                    client
                                        .write_all(scratch)
                                        .await
                                        .map_err(RelayError::Client)?;
                                    sent = true;
                                    flushed = end;
                                }
                            }
                            Seen::Other => {}
                        }
                        pos = end;
                        if local_infile {
                            break;
                        }
                    }
                }
            }
            if pos > flushed {
                sent = true;
                client
                    .write_all(&buf[flushed..pos])
                    .await
                    .map_err(RelayError::Client)?;
            }
            buf.advance(pos);
        }
        if local_infile {
            watch_client = false;
            relay_local_infile(client, backend, scratch).await?;
            sc.local_infile_sent();
            continue;
        }
        if sc.is_done() && stream_left == 0 {
            if let Some(st) = sc.last_status() {
                backend.status = st;
                info.status.get_or_insert(st);
            }
            info.digest = digest.and_then(super::replay::ReplyDigest::finish);
            return Ok(info);
        }
        let filled =
            match wait_backend(client, backend, watch.kill, watch_client, watch.silence).await {
                Woke::Backend(r) => r,
                Woke::Killed => return Err(RelayError::Killed { sent }),
                Woke::Hung => {
                    return Err(RelayError::Backend {
                        reason: hung_reason(watch.silence),
                        next_seq,
                        malformed: false,
                        sent,
                        hung: true,
                    })
                }
                Woke::Client(true) => return Err(RelayError::ClientGone),
                Woke::Client(false) => {
                    watch_client = false;
                    continue;
                }
            };
        match filled {
            Ok(0) => {
                return Err(RelayError::Backend {
                    reason: "the backend closed the connection".into(),
                    next_seq,
                    malformed: false,
                    sent,
                    hung: false,
                })
            }
            Ok(_) => {}
            Err(e) => {
                return Err(RelayError::Backend {
                    reason: e.to_string(),
                    next_seq,
                    malformed: false,
                    sent,
                    hung: false,
                })
            }
        }
    }
}

/// `LOAD DATA LOCAL INFILE`: the client now sends the file as packets,
/// ending with an empty one; pass them to the backend as they come.
async fn relay_local_infile(
    client: &mut ClientStream,
    backend: &mut BackendConn,
    scratch: &mut BytesMut,
) -> Result<(), RelayError> {
    loop {
        let (h, payload) = client
            .read_packet()
            .await
            .map_err(|e| RelayError::Client(std::io::Error::other(read_reason(&e))))?;
        scratch.clear();
        scratch.reserve(HEADER_LEN + payload.len());
        scratch.put_slice(&(h.len as u32).to_le_bytes()[..3]);
        scratch.put_u8(h.seq);
        scratch.put_slice(&payload);
        backend
            .stream
            .write_all(scratch)
            .await
            .map_err(|e| RelayError::Backend {
                reason: e.to_string(),
                next_seq: h.seq.wrapping_add(1),
                malformed: false,
                // The client has the LOCAL INFILE request already.
                sent: true,
                hung: false,
            })?;
        if h.len == 0 {
            return Ok(());
        }
    }
}
