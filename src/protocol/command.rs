//! Client commands (the first byte of a command-phase payload), decoded into
//! borrowed views. Only what Causeway acts on is decoded; the original bytes
//! are forwarded as they are.

use super::buf::Reader;
use super::consts::{cap, com};

/// A decoded command. Borrowed from the payload: no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Quit,
    InitDb(&'a [u8]),
    Query(&'a [u8]),
    FieldList {
        table: &'a [u8],
    },
    Statistics,
    Ping,
    ProcessKill(u32),
    ChangeUser(ChangeUser<'a>),
    StmtPrepare(&'a [u8]),
    StmtExecute {
        stmt_id: u32,
        flags: u8,
    },
    StmtSendLongData {
        stmt_id: u32,
    },
    StmtClose(u32),
    StmtReset(u32),
    SetOption(u16),
    StmtFetch {
        stmt_id: u32,
        rows: u32,
    },
    /// MariaDB's COM_STMT_BULK_EXECUTE: the statement, then rows of
    /// parameters.
    StmtBulkExecute {
        stmt_id: u32,
        flags: u16,
    },
    ResetConnection,
    /// Anything Causeway does not relay: replication, shutdown, debug, and
    /// unknown command bytes. Answered with ER_UNKNOWN_COM_ERROR.
    Unsupported(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser<'a> {
    pub user: &'a [u8],
    pub auth_response: &'a [u8],
    pub database: &'a [u8],
    pub charset: Option<u16>,
    pub auth_plugin: Option<&'a [u8]>,
}

/// Why a command could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    /// A known command whose body is too short or inconsistent.
    Malformed(u8),
}

impl<'a> Command<'a> {
    /// Decodes one command payload. `capabilities` are the ones negotiated
    /// with this client (COM_CHANGE_USER's layout depends on them).
    pub fn decode(payload: &'a [u8], capabilities: u32) -> Result<Command<'a>, CommandError> {
        let (&code, body) = payload.split_first().ok_or(CommandError::Empty)?;
        let bad = CommandError::Malformed(code);
        let mut r = Reader::new(body);
        let cmd = match code {
            com::QUIT => Command::Quit,
            com::INIT_DB => Command::InitDb(body),
            com::QUERY => Command::Query(body),
            com::FIELD_LIST => Command::FieldList {
                table: r.nul_or_eof_bytes(),
            },
            com::STATISTICS => Command::Statistics,
            com::PING => Command::Ping,
            com::PROCESS_KILL => Command::ProcessKill(r.u32().ok_or(bad)?),
            com::CHANGE_USER => {
                Command::ChangeUser(ChangeUser::decode(body, capabilities).ok_or(bad)?)
            }
            com::STMT_PREPARE => Command::StmtPrepare(body),
            com::STMT_EXECUTE => {
                let stmt_id = r.u32().ok_or(bad)?;
                let flags = r.u8().ok_or(bad)?;
                r.u32().ok_or(bad)?; // iteration count, always 1
                Command::StmtExecute { stmt_id, flags }
            }
            com::STMT_SEND_LONG_DATA => {
                let stmt_id = r.u32().ok_or(bad)?;
                r.u16().ok_or(bad)?;
                Command::StmtSendLongData { stmt_id }
            }
            com::STMT_CLOSE => Command::StmtClose(r.u32().ok_or(bad)?),
            com::STMT_RESET => Command::StmtReset(r.u32().ok_or(bad)?),
            com::SET_OPTION => Command::SetOption(r.u16().ok_or(bad)?),
            com::STMT_FETCH => Command::StmtFetch {
                stmt_id: r.u32().ok_or(bad)?,
                rows: r.u32().ok_or(bad)?,
            },
            com::RESET_CONNECTION => Command::ResetConnection,
            com::STMT_BULK_EXECUTE => Command::StmtBulkExecute {
                stmt_id: r.u32().ok_or(bad)?,
                flags: r.u16().ok_or(bad)?,
            },
            other => Command::Unsupported(other),
        };
        Ok(cmd)
    }

    /// Every value [`Command::label`] returns.
    pub const LABELS: &'static [&'static str] = &[
        "quit",
        "init_db",
        "query",
        "field_list",
        "statistics",
        "ping",
        "process_kill",
        "change_user",
        "stmt_prepare",
        "stmt_execute",
        "stmt_send_long_data",
        "stmt_close",
        "stmt_reset",
        "set_option",
        "stmt_fetch",
        "stmt_bulk_execute",
        "reset_connection",
        "unsupported",
    ];

    /// A fixed label per command kind, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Command::Quit => "quit",
            Command::InitDb(_) => "init_db",
            Command::Query(_) => "query",
            Command::FieldList { .. } => "field_list",
            Command::Statistics => "statistics",
            Command::Ping => "ping",
            Command::ProcessKill(_) => "process_kill",
            Command::ChangeUser(_) => "change_user",
            Command::StmtPrepare(_) => "stmt_prepare",
            Command::StmtExecute { .. } => "stmt_execute",
            Command::StmtSendLongData { .. } => "stmt_send_long_data",
            Command::StmtClose(_) => "stmt_close",
            Command::StmtReset(_) => "stmt_reset",
            Command::SetOption(_) => "set_option",
            Command::StmtFetch { .. } => "stmt_fetch",
            Command::StmtBulkExecute { .. } => "stmt_bulk_execute",
            Command::ResetConnection => "reset_connection",
            Command::Unsupported(_) => "unsupported",
        }
    }
}

impl<'a> ChangeUser<'a> {
    fn decode(body: &'a [u8], capabilities: u32) -> Option<ChangeUser<'a>> {
        let mut r = Reader::new(body);
        let user = r.nul_bytes()?;
        let auth_response = if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?
        } else {
            r.nul_bytes()?
        };
        let database = r.nul_or_eof_bytes();
        let charset = if r.remaining() >= 2 { r.u16() } else { None };
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            Some(r.nul_or_eof_bytes())
        } else {
            None
        };
        Some(ChangeUser {
            user,
            auth_response,
            database,
            charset,
            auth_plugin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: u32 = cap::PROXY_OFFERS;

    #[test]
    fn decodes_common_commands() {
        assert_eq!(
            Command::decode(b"\x03SELECT 1", CAPS),
            Ok(Command::Query(b"SELECT 1"))
        );
        assert_eq!(
            Command::decode(b"\x02app", CAPS),
            Ok(Command::InitDb(b"app"))
        );
        assert_eq!(Command::decode(b"\x0e", CAPS), Ok(Command::Ping));
        assert_eq!(
            Command::decode(b"\xfa\xff\xff\xff\xff\x80\x00\x08\x00", CAPS),
            Ok(Command::StmtBulkExecute {
                stmt_id: u32::MAX,
                flags: 128
            })
        );
        assert_eq!(
            Command::decode(b"\xfa\x01\x00", CAPS),
            Err(CommandError::Malformed(0xfa))
        );
        assert_eq!(Command::decode(b"\x01", CAPS), Ok(Command::Quit));
        assert_eq!(
            Command::decode(b"\x19\x05\x00\x00\x00", CAPS),
            Ok(Command::StmtClose(5))
        );
        assert_eq!(
            Command::decode(b"\x17\x01\x00\x00\x00\x01\x01\x00\x00\x00", CAPS),
            Ok(Command::StmtExecute {
                stmt_id: 1,
                flags: 1
            })
        );
        assert_eq!(
            Command::decode(b"\x1c\x02\x00\x00\x00\x0a\x00\x00\x00", CAPS),
            Ok(Command::StmtFetch {
                stmt_id: 2,
                rows: 10
            })
        );
        assert_eq!(
            Command::decode(b"\x04t1\x00%", CAPS),
            Ok(Command::FieldList { table: b"t1" })
        );
        assert_eq!(
            Command::decode(b"\x1b\x01\x00", CAPS),
            Ok(Command::SetOption(1))
        );
    }

    #[test]
    fn unknown_and_malformed() {
        assert_eq!(Command::decode(b"", CAPS), Err(CommandError::Empty));
        assert_eq!(
            Command::decode(b"\x99", CAPS),
            Ok(Command::Unsupported(0x99))
        );
        assert_eq!(
            Command::decode(b"\x12abc", CAPS),
            Ok(Command::Unsupported(0x12))
        );
        assert_eq!(
            Command::decode(b"\x19\x01", CAPS),
            Err(CommandError::Malformed(0x19))
        );
        assert_eq!(
            Command::decode(b"\x17\x01\x00\x00\x00", CAPS),
            Err(CommandError::Malformed(0x17))
        );
        assert_eq!(
            Command::decode(b"\x11noterminator", CAPS),
            Err(CommandError::Malformed(0x11))
        );
    }

    #[test]
    fn change_user_with_plugin() {
        let mut p = b"\x11bob\x00\x14".to_vec();
        p.extend_from_slice(&[7u8; 20]);
        p.extend_from_slice(b"db1\x00\x2d\x00mysql_native_password\x00");
        let Ok(Command::ChangeUser(c)) = Command::decode(&p, CAPS) else {
            panic!("not decoded");
        };
        assert_eq!(c.user, b"bob");
        assert_eq!(c.auth_response, &[7u8; 20]);
        assert_eq!(c.database, b"db1");
        assert_eq!(c.charset, Some(45));
        assert_eq!(c.auth_plugin, Some(&b"mysql_native_password"[..]));
    }

    /// Collation ids above 255 (utf8mb4_croatian_ci is 608) keep all 16 bits.
    #[test]
    fn change_user_collation_is_sixteen_bits() {
        let mut p = b"\x11bob\x00\x14".to_vec();
        p.extend_from_slice(&[7u8; 20]);
        p.extend_from_slice(b"db1\x00");
        p.extend_from_slice(&608u16.to_le_bytes());
        p.extend_from_slice(b"mysql_native_password\x00");
        let Ok(Command::ChangeUser(c)) = Command::decode(&p, CAPS) else {
            panic!("not decoded");
        };
        assert_eq!(c.charset, Some(608));
        assert_eq!(c.auth_plugin, Some(&b"mysql_native_password"[..]));
    }
}
