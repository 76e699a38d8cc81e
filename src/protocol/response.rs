//! Terminal packets: OK, ERR and EOF, decoded with the capability flags of
//! the connection they travel on, plus the session-state-tracking data an OK
//! packet may carry.

use bytes::{BufMut, BytesMut};

use super::buf::{put_lenenc_bytes, put_lenenc_int, Reader};
use super::consts::{cap, status, track};

/// An OK packet (header `0x00`, or `0xFE` when it ends a result set under
/// `CLIENT_DEPRECATE_EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ok<'a> {
    pub header: u8,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: &'a [u8],
    /// Raw session-state-tracking data (present when the status has
    /// `SESSION_STATE_CHANGED` and `CLIENT_SESSION_TRACK` was negotiated).
    pub session_state: &'a [u8],
}

impl<'a> Ok<'a> {
    pub fn decode(payload: &'a [u8], capabilities: u32) -> Option<Ok<'a>> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != 0x00 && header != 0xFE {
            return None;
        }
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let status = r.u16()?;
        let warnings = r.u16()?;
        let mut ok = Ok {
            header,
            affected_rows,
            last_insert_id,
            status,
            warnings,
            ..Ok::default()
        };
        if capabilities & cap::SESSION_TRACK != 0 {
            if !r.is_empty() {
                ok.info = r.lenenc_bytes()?;
            }
            if status & status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                ok.session_state = r.lenenc_bytes()?;
            }
        } else {
            // The protocol documents the info as the rest of the packet;
            // MariaDB and MySQL servers send it length-encoded anyway.
            let rest = r.rest();
            let mut l = Reader::new(rest);
            ok.info = match l.lenenc_bytes() {
                Some(info) if l.is_empty() => info,
                _ => rest,
            };
        }
        Some(ok)
    }

    /// Encodes for a connection with `capabilities`. Tracking data is only
    /// written where the peer negotiated `CLIENT_SESSION_TRACK`; otherwise
    /// the `SESSION_STATE_CHANGED` flag is cleared too.
    pub fn encode(&self, out: &mut BytesMut, capabilities: u32) {
        out.put_u8(self.header);
        put_lenenc_int(out, self.affected_rows);
        put_lenenc_int(out, self.last_insert_id);
        if capabilities & cap::SESSION_TRACK != 0 {
            let has_state =
                self.status & status::SESSION_STATE_CHANGED != 0 && !self.session_state.is_empty();
            let st = if has_state {
                self.status
            } else {
                self.status & !status::SESSION_STATE_CHANGED
            };
            out.put_u16_le(st);
            out.put_u16_le(self.warnings);
            if !self.info.is_empty() || has_state {
                put_lenenc_bytes(out, self.info);
            }
            if has_state {
                put_lenenc_bytes(out, self.session_state);
            }
        } else {
            out.put_u16_le(self.status & !status::SESSION_STATE_CHANGED);
            out.put_u16_le(self.warnings);
            // Length-encoded, as servers send it (clients parse it so).
            if !self.info.is_empty() {
                put_lenenc_bytes(out, self.info);
            }
        }
    }

    /// Iterates over the tracked session-state changes.
    pub fn changes(&self) -> StateChanges<'a> {
        StateChanges {
            r: Reader::new(self.session_state),
        }
    }
}

/// One entry of session-state-tracking data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange<'a> {
    SystemVariable {
        name: &'a [u8],
        value: &'a [u8],
    },
    Schema(&'a [u8]),
    /// Some session state changed (the server does not say what).
    StateChanged(bool),
    /// MySQL `session_track_gtids`: the GTID set of the last transaction.
    Gtids(&'a [u8]),
    TransactionCharacteristics(&'a [u8]),
    TransactionState(&'a [u8]),
    Unknown(u8),
}

pub struct StateChanges<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for StateChanges<'a> {
    /// `Err(())` once on malformed data, then the iteration ends.
    type Item = Result<StateChange<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        let item = Self::entry(&mut self.r);
        if item.is_none() {
            self.r = Reader::new(&[]);
        }
        Some(item.ok_or(()))
    }
}

impl<'a> StateChanges<'a> {
    fn entry(r: &mut Reader<'a>) -> Option<StateChange<'a>> {
        let kind = r.u8()?;
        let mut d = Reader::new(r.lenenc_bytes()?);
        Some(match kind {
            track::SYSTEM_VARIABLES => StateChange::SystemVariable {
                name: d.lenenc_bytes()?,
                value: d.lenenc_bytes()?,
            },
            track::SCHEMA => StateChange::Schema(d.lenenc_bytes()?),
            // MariaDB sends the flag as the entry's data itself (`02 01 31`);
            // MySQL documents it length-encoded once more (`02 02 01 31`).
            track::STATE_CHANGE => {
                let data = d.rest();
                StateChange::StateChanged(data == b"1" || data == b"\x011")
            }
            track::GTIDS => {
                d.u8()?; // encoding specification: 0 = string
                StateChange::Gtids(d.lenenc_bytes()?)
            }
            track::TRANSACTION_CHARACTERISTICS => {
                StateChange::TransactionCharacteristics(d.lenenc_bytes()?)
            }
            track::TRANSACTION_STATE => StateChange::TransactionState(d.lenenc_bytes()?),
            other => StateChange::Unknown(other),
        })
    }
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err<'a> {
    pub code: u16,
    pub sql_state: [u8; 5],
    pub message: &'a [u8],
}

impl<'a> Err<'a> {
    pub fn decode(payload: &'a [u8]) -> Option<Err<'a>> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFF {
            return None;
        }
        let code = r.u16()?;
        let mut sql_state = *b"HY000";
        if r.peek() == Some(b'#') {
            r.skip(1)?;
            sql_state.copy_from_slice(r.bytes(5)?);
        }
        Some(Err {
            code,
            sql_state,
            message: r.rest(),
        })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(0xFF);
        out.put_u16_le(self.code);
        out.put_u8(b'#');
        out.put_slice(&self.sql_state);
        out.put_slice(self.message);
    }
}

/// A classic EOF packet (header `0xFE`, payload shorter than 9 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eof {
    pub warnings: u16,
    pub status: u16,
}

impl Eof {
    pub fn decode(payload: &[u8]) -> Option<Eof> {
        if payload.len() >= 9 {
            return None;
        }
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFE {
            return None;
        }
        Some(Eof {
            warnings: r.u16().unwrap_or(0),
            status: r.u16().unwrap_or(0),
        })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(0xFE);
        out.put_u16_le(self.warnings);
        out.put_u16_le(self.status);
    }
}

/// Whether a payload that ends a result-set section (`0xFE` header) is an
/// EOF/OK terminator rather than a row whose first column is huge.
pub fn is_terminator(payload: &[u8], packet_len: usize) -> bool {
    payload.first() == Some(&0xFE) && packet_len < 0xFF_FFFF
}

/// Status flags of a terminator (OK with header 0xFE under
/// `CLIENT_DEPRECATE_EOF`, else EOF).
pub fn terminator_status(payload: &[u8], capabilities: u32) -> Option<u16> {
    if capabilities & cap::DEPRECATE_EOF != 0 {
        Ok::decode(payload, capabilities).map(|ok| ok.status)
    } else {
        Eof::decode(payload).map(|e| e.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACK: u32 = cap::PROTOCOL_41 | cap::SESSION_TRACK;

    /// An OK packet as MariaDB sends it after `INSERT` with
    /// `session_track_system_variables` including `last_gtid`.
    fn mariadb_insert_ok() -> Vec<u8> {
        let mut p = vec![0x00, 0x01, 0x05];
        p.extend_from_slice(&(status::AUTOCOMMIT | status::SESSION_STATE_CHANGED).to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        p.push(0); // info: empty
        let mut state = Vec::new();
        // system variable last_gtid = 0-1-42
        let mut var = vec![9];
        var.extend_from_slice(b"last_gtid");
        var.push(6);
        var.extend_from_slice(b"0-1-42");
        state.push(track::SYSTEM_VARIABLES);
        state.push(var.len() as u8);
        state.extend_from_slice(&var);
        // schema = app
        state.extend_from_slice(&[track::SCHEMA, 4, 3, b'a', b'p', b'p']);
        state.extend_from_slice(&[track::STATE_CHANGE, 2, 1, b'1']);
        p.push(state.len() as u8);
        p.extend_from_slice(&state);
        p
    }

    #[test]
    fn mariadb_state_change_entry() {
        // What MariaDB 10.11 sends after `CALL p()` that sets a user variable.
        let p = [0u8, 0, 0, 2, 0x40, 0, 0, 0, 3, 2, 1, b'1'];
        let ok = Ok::decode(&p, TRACK).unwrap();
        let changes: Vec<_> = ok.changes().collect();
        assert_eq!(changes, vec![Result::Ok(StateChange::StateChanged(true))]);
    }

    #[test]
    fn ok_with_tracking_data() {
        let p = mariadb_insert_ok();
        let ok = Ok::decode(&p, TRACK).unwrap();
        assert_eq!(ok.affected_rows, 1);
        assert_eq!(ok.last_insert_id, 5);
        assert!(ok.status & status::AUTOCOMMIT != 0);
        let changes: Vec<_> = ok.changes().collect();
        assert_eq!(
            changes,
            vec![
                Result::Ok(StateChange::SystemVariable {
                    name: b"last_gtid",
                    value: b"0-1-42"
                }),
                Result::Ok(StateChange::Schema(b"app")),
                Result::Ok(StateChange::StateChanged(true)),
            ]
        );
        let mut out = BytesMut::new();
        ok.encode(&mut out, TRACK);
        assert_eq!(&out[..], &p[..]);
    }

    #[test]
    fn ok_without_tracking_capability() {
        let p = [0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
        let ok = Ok::decode(&p, cap::PROTOCOL_41).unwrap();
        assert_eq!(ok.status, status::AUTOCOMMIT);
        assert_eq!(ok.changes().count(), 0);
        // As MariaDB sends it to a client without session tracking: the
        // info is length-encoded all the same.
        let p = b"\x00\x03\x00\x02\x00\x01\x00\x0fRows matched: 3";
        let ok = Ok::decode(p, cap::PROTOCOL_41).unwrap();
        assert_eq!((ok.affected_rows, ok.warnings), (3, 1));
        assert_eq!(ok.info, b"Rows matched: 3");
        let mut out = BytesMut::new();
        ok.encode(&mut out, cap::PROTOCOL_41);
        assert_eq!(&out[..], &p[..]);
        // A bare string (as the protocol documents it) is read whole.
        let ok = Ok::decode(b"\x00\x00\x00\x02\x00\x00\x00Rows", cap::PROTOCOL_41).unwrap();
        assert_eq!(ok.info, b"Rows");
    }

    #[test]
    fn tracking_stripped_for_clients_without_it() {
        let p = mariadb_insert_ok();
        let ok = Ok::decode(&p, TRACK).unwrap();
        let mut out = BytesMut::new();
        ok.encode(&mut out, cap::PROTOCOL_41);
        let back = Ok::decode(&out, cap::PROTOCOL_41).unwrap();
        assert_eq!(back.status, status::AUTOCOMMIT);
        assert_eq!((back.affected_rows, back.last_insert_id), (1, 5));
        assert_eq!(back.info, b"");
    }

    #[test]
    fn malformed_tracking_data_ends_iteration() {
        let ok = Ok {
            status: status::SESSION_STATE_CHANGED,
            session_state: &[0, 5, 1],
            ..Ok::default()
        };
        let v: Vec<_> = ok.changes().collect();
        assert_eq!(v, vec![Result::Err(())]);
    }

    #[test]
    fn err_and_eof() {
        let p = b"\xff\x15\x04#28000Access denied";
        let e = Err::decode(p).unwrap();
        assert_eq!(
            (e.code, &e.sql_state, e.message),
            (1045, b"28000", &b"Access denied"[..])
        );
        let mut out = BytesMut::new();
        e.encode(&mut out);
        assert_eq!(&out[..], &p[..]);
        let eof = Eof::decode(&[0xFE, 0, 0, 0x08, 0]).unwrap();
        assert_eq!(eof.status, status::MORE_RESULTS_EXISTS);
        assert_eq!(Eof::decode(&[0xFE; 9]), None);
        assert_eq!(Err::decode(&[0xFF, 1]), None);
        assert_eq!(Ok::decode(&[0x00, 0xFC], TRACK), None);
    }
}
