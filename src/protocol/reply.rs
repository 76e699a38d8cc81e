//! Where does a backend's reply end? A pure state machine over the packets
//! of one reply, so the session can forward packets as they arrive and stop
//! reading exactly at the reply's last packet.
//!
//! ```text
//!  Query/Execute:  First ─OK(more)─> First      First ─OK/ERR─> Done
//!                  First ─0xFB─> LocalInfile (caller relays the file) ─> First
//!                  First ─count─> Columns(n) ─n defs─> [ColumnsEof] ─> Rows
//!                  Rows ─row─> Rows    Rows ─EOF/OK(more)─> First   Rows ─EOF/OK/ERR─> Done
//!                  ColumnsEof ─EOF(cursor open)─> Done   (ExecuteCursor only)
//!  Prepare:        PrepareFirst ─OK(p,c)─> Params(p) ─> [ParamsEof] ─> PrepColumns(c) ─> [PrepColumnsEof] ─> Done
//!  Fetch:          Rows        FieldList: definitions until EOF/ERR
//!  Simple:         one packet (OK, ERR or EOF) then Done; Statistics: one packet of text
//! ```
//!
//! Row packets (and continuation packets of any payload of 16 MiB or more)
//! are never inspected beyond their first byte: they may be streamed.

use super::buf::Reader;
use super::consts::{cap, status};
use super::packet::Header;
use super::response::{terminator_status, Ok};

/// What kind of reply a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY and COM_STMT_EXECUTE.
    ResultSets,
    /// COM_STMT_EXECUTE asking for a read-only cursor: column definitions
    /// and an EOF carrying `SERVER_STATUS_CURSOR_EXISTS` are the whole reply
    /// (the rows come with COM_STMT_FETCH). Only here does that flag end a
    /// reply: a stored program that FETCHes a cursor of its own leaves the
    /// flag set in the status of the result sets it sends afterwards, and
    /// their rows still follow.
    ExecuteCursor,
    /// COM_STMT_PREPARE.
    Prepare,
    /// COM_STMT_FETCH: rows of an open cursor, then a terminator.
    Fetch,
    /// COM_FIELD_LIST.
    FieldList,
    /// A single OK, ERR or EOF (PING, INIT_DB, RESET_CONNECTION, SET_OPTION, STMT_RESET, ...).
    Single,
    /// COM_STATISTICS: one packet of text.
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    PrepareFirst,
    Params { params: u64, columns: u64 },
    ParamsEof { columns: u64 },
    PrepColumns(u64),
    PrepColumnsEof,
    FieldList,
    Single,
    Text,
    Done,
}

/// Whether the caller must buffer the whole packet before calling
/// [`Scanner::packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A row or a continuation: forward it as it arrives.
    Stream,
    /// A packet that steers the state machine: give it whole to `packet`.
    Whole,
}

/// What a whole packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Metadata: column count, column or parameter definition, EOF between sections.
    Other,
    /// An OK packet (or an EOF/OK terminator of a result set) with its status flags.
    Ok {
        status: u16,
    },
    /// A classic EOF terminator with its status flags.
    Eof {
        status: u16,
    },
    Err,
    /// A row, given whole only after [`Scanner::inspect_rows`].
    Row,
    /// `LOCAL INFILE` request: the client must now send the file.
    LocalInfile,
    /// The first packet of a COM_STMT_PREPARE reply.
    PrepareOk {
        stmt_id: u32,
        columns: u16,
        params: u16,
    },
}

/// The reply is not valid protocol: the backend connection cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

#[derive(Debug, Clone)]
pub struct Scanner {
    state: State,
    capabilities: u32,
    /// The previous packet had a full-size payload: this one continues it.
    continuation: bool,
    /// Status flags of the last terminator.
    last_status: Option<u16>,
    /// The command asked for a cursor ([`Expect::ExecuteCursor`]).
    cursor: bool,
    /// Rows are given whole to [`Scanner::packet`] (as [`Seen::Row`]) so
    /// the caller can read them; see [`Scanner::inspect_rows`].
    inspect_rows: bool,
}

impl Scanner {
    /// `capabilities` are those negotiated on the connection the reply
    /// travels on.
    pub fn new(expect: Expect, capabilities: u32) -> Scanner {
        let state = match expect {
            Expect::ResultSets | Expect::ExecuteCursor => State::First,
            Expect::Prepare => State::PrepareFirst,
            Expect::Fetch => State::Rows,
            Expect::FieldList => State::FieldList,
            Expect::Single => State::Single,
            Expect::Text => State::Text,
        };
        Scanner {
            state,
            capabilities,
            continuation: false,
            last_status: None,
            cursor: expect == Expect::ExecuteCursor,
            inspect_rows: false,
        }
    }

    /// Asks for rows whole (each a single packet; a row of 16 MiB or more
    /// still streams): for the few replies whose rows Causeway rewrites.
    pub fn inspect_rows(&mut self) {
        self.inspect_rows = true;
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Status flags of the last OK/EOF seen (the reply's final status once done).
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities & cap::DEPRECATE_EOF != 0
    }

    /// Decides from a packet's header and first payload byte whether it can
    /// be streamed. Advances the state for streamed packets; for `Whole`
    /// the caller must then call [`Scanner::packet`].
    pub fn header(&mut self, h: Header, first: Option<u8>) -> Need {
        if self.continuation {
            self.continuation = h.continues();
            return Need::Stream;
        }
        if self.state == State::Rows {
            let terminator = first == Some(0xFE) && !h.continues();
            let whole_row = self.inspect_rows && !h.continues();
            if !(terminator || first == Some(0xFF) || whole_row) {
                self.continuation = h.continues();
                return Need::Stream;
            }
        }
        Need::Whole
    }

    /// Feeds one whole packet (the first physical packet of a payload when
    /// a payload spans several).
    pub fn packet(&mut self, h: Header, payload: &[u8]) -> Result<Seen, Malformed> {
        self.continuation = h.continues();
        let first = *payload.first().ok_or(Malformed)?;
        let seen = match self.state {
            State::Done => return Err(Malformed),
            State::Text => {
                self.state = State::Done;
                Seen::Other
            }
            State::Single => {
                self.state = State::Done;
                match first {
                    0xFF => Seen::Err,
                    0x00 => self.ok(payload, false)?,
                    0xFE => self.terminator(payload, false)?,
                    _ => return Err(Malformed),
                }
            }
            State::First => match first {
                0x00 => self.ok(payload, true)?,
                0xFF => self.err(),
                0xFB => Seen::LocalInfile,
                _ => {
                    let n = Reader::new(payload).lenenc_int().ok_or(Malformed)?;
                    if n == 0 {
                        return Err(Malformed);
                    }
                    self.state = State::Columns(n);
                    Seen::Other
                }
            },
            State::Columns(n) => {
                if first == 0xFF {
                    return Ok(self.err());
                }
                self.state = match (n - 1, self.deprecate_eof()) {
                    (0, true) => State::Rows,
                    (0, false) => State::ColumnsEof,
                    (left, _) => State::Columns(left),
                };
                Seen::Other
            }
            State::ColumnsEof => {
                if first == 0xFF {
                    return Ok(self.err());
                }
                let st = terminator_status(payload, 0).ok_or(Malformed)?;
                if self.cursor && st & status::CURSOR_EXISTS != 0 {
                    // A cursor was opened: the rows come with COM_STMT_FETCH.
                    self.last_status = Some(st);
                    self.state = State::Done;
                    Seen::Eof { status: st }
                } else {
                    self.state = State::Rows;
                    Seen::Other
                }
            }
            State::Rows => match first {
                0xFF => self.err(),
                0xFE if !h.continues() => self.terminator(payload, true)?,
                _ if self.inspect_rows => Seen::Row,
                _ => return Err(Malformed), // rows are streamed, never given whole
            },
            State::PrepareFirst => match first {
                0xFF => self.err(),
                0x00 => {
                    let mut r = Reader::new(&payload[1..]);
                    let stmt_id = r.u32().ok_or(Malformed)?;
                    let columns = r.u16().ok_or(Malformed)?;
                    let params = r.u16().ok_or(Malformed)?;
                    self.state = self.after_prepare_section(u64::from(params), u64::from(columns));
                    Seen::PrepareOk {
                        stmt_id,
                        columns,
                        params,
                    }
                }
                _ => return Err(Malformed),
            },
            State::Params { params, columns } => {
                self.state = if params > 1 {
                    State::Params {
                        params: params - 1,
                        columns,
                    }
                } else if self.deprecate_eof() {
                    self.after_prepare_section(0, columns)
                } else {
                    State::ParamsEof { columns }
                };
                Seen::Other
            }
            State::ParamsEof { columns } => {
                self.state = self.after_prepare_section(0, columns);
                Seen::Other
            }
            State::PrepColumns(n) => {
                self.state = if n > 1 {
                    State::PrepColumns(n - 1)
                } else if self.deprecate_eof() {
                    State::Done
                } else {
                    State::PrepColumnsEof
                };
                Seen::Other
            }
            State::PrepColumnsEof => {
                self.state = State::Done;
                Seen::Other
            }
            State::FieldList => match first {
                0xFF => self.err(),
                0xFE if !h.continues() => self.terminator(payload, false)?,
                _ => Seen::Other,
            },
        };
        Ok(seen)
    }

    /// After the client's file (or its refusal) has been relayed for a
    /// `LOCAL INFILE` request, the server answers with OK or ERR.
    pub fn local_infile_sent(&mut self) {
        self.state = State::First;
    }

    fn after_prepare_section(&self, params: u64, columns: u64) -> State {
        if params > 0 {
            State::Params { params, columns }
        } else if columns > 0 {
            State::PrepColumns(columns)
        } else {
            State::Done
        }
    }

    fn err(&mut self) -> Seen {
        self.state = State::Done;
        Seen::Err
    }

    fn ok(&mut self, payload: &[u8], may_continue: bool) -> Result<Seen, Malformed> {
        let ok = Ok::decode(payload, self.capabilities).ok_or(Malformed)?;
        self.finish(ok.status, may_continue);
        Ok(Seen::Ok { status: ok.status })
    }

    fn terminator(&mut self, payload: &[u8], may_continue: bool) -> Result<Seen, Malformed> {
        if self.deprecate_eof() {
            self.ok(payload, may_continue)
        } else {
            let st = terminator_status(payload, 0).ok_or(Malformed)?;
            self.finish(st, may_continue);
            Ok(Seen::Eof { status: st })
        }
    }

    fn finish(&mut self, st: u16, may_continue: bool) {
        self.last_status = Some(st);
        self.state = if may_continue && st & status::MORE_RESULTS_EXISTS != 0 {
            State::First
        } else {
            State::Done
        };
    }
}

#[cfg(test)]
mod tests;
