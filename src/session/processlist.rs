//! The process list as the server shows it, of Causeway's client sessions
//! (never of its backend connections): `SHOW [FULL] PROCESSLIST`,
//! `information_schema.PROCESSLIST` (rewritten into a derived table of the
//! sessions' rows, which the primary then filters, sorts and projects),
//! and `SHOW CAUSEWAY PROCESSLIST` (the same columns, then the operator's:
//! pool, pin, backend connections and the backend thread running the
//! statement).
//!
//! Who sees whom is the server's rule: everyone with the PROCESS privilege,
//! otherwise one's own user's sessions ([`super::registry::visible`]).

use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;

use crate::classify::{processlist_refs, RefRole};
use crate::protocol::command::Command;
use crate::protocol::resultset::{column_type as ty, encode_result, flag, Column};

use super::registry::Row;
use super::{Flow, Session};

/// How many characters of a statement SHOW PROCESSLIST shows without FULL.
const INFO_WIDTH: usize = 100;

/// The server's name for a command, as SHOW PROCESSLIST's `Command`.
pub(super) fn command_name(cmd: &Command<'_>) -> &'static str {
    match cmd {
        Command::Quit => "Quit",
        Command::InitDb(_) => "Init DB",
        Command::Query(_) => "Query",
        Command::FieldList { .. } => "Field List",
        Command::Statistics => "Statistics",
        Command::Ping => "Ping",
        Command::ProcessKill(_) => "Kill",
        Command::ChangeUser(_) => "Change user",
        Command::StmtPrepare(_) => "Prepare",
        Command::StmtExecute { .. } => "Execute",
        Command::StmtSendLongData { .. } => "Long Data",
        Command::StmtClose(_) => "Close stmt",
        Command::StmtReset(_) => "Reset stmt",
        Command::SetOption(_) => "Set option",
        Command::StmtFetch { .. } => "Fetch",
        Command::StmtBulkExecute { .. } => "Bulk_execute",
        Command::ResetConnection => "Reset connection",
        Command::Unsupported(_) => "Error",
    }
}

/// `State`: empty while asleep; the asking session's own statement is
/// `starting`, as the server shows it; Causeway does not see the server's
/// stage of another session's statement, which shows as `executing`.
fn state_of(row: &Row, own_id: u32) -> &'static str {
    if row.id == own_id {
        "starting"
    } else if row.command == "Sleep" {
        ""
    } else {
        "executing"
    }
}

/// `Info` for display: the text read as UTF-8, the first 100 characters
/// unless `full`.
fn display_info(info: Option<&Bytes>, full: bool) -> Option<String> {
    let text = String::from_utf8_lossy(info?);
    Some(if full {
        text.into_owned()
    } else {
        text.chars().take(INFO_WIDTH).collect()
    })
}

/// The server's SHOW PROCESSLIST columns, declared as the server does.
fn server_columns(full: bool) -> [Column<'static>; 9] {
    let info = if full {
        Column {
            column_type: ty::LONG_BLOB,
            ..Column::text("Info", 150_994_944, 0)
        }
    } else {
        Column::text("Info", 300, 0)
    };
    [
        Column::number("Id", ty::LONGLONG, 11, flag::NOT_NULL, 0),
        Column::text("User", 384, flag::NOT_NULL),
        Column::text("Host", 192, flag::NOT_NULL),
        Column::text("db", 192, 0),
        Column::text("Command", 48, flag::NOT_NULL),
        Column::number("Time", ty::LONG, 7, flag::NOT_NULL, 0),
        Column::text("State", 90, 0),
        info,
        Column::number("Progress", ty::DOUBLE, 7, flag::NOT_NULL, 3),
    ]
}

/// One row's cells under [`server_columns`].
fn server_cells(row: &Row, own_id: u32, now: Instant, full: bool) -> Vec<Option<String>> {
    vec![
        Some(row.id.to_string()),
        Some(row.user.clone()),
        Some(row.host.clone()),
        row.status.database.clone(),
        Some(row.command.to_string()),
        Some(
            now.saturating_duration_since(row.since)
                .as_secs()
                .to_string(),
        ),
        Some(state_of(row, own_id).to_string()),
        display_info(row.info.as_ref(), full),
        Some("0.000".to_string()),
    ]
}

impl Session {
    /// The statement text a command carries (`Info`): the payload after
    /// the command byte, or the prepared statement's text, shared, not
    /// copied.
    pub(super) fn command_info(&self, cmd: &Command<'_>, payload: &Bytes) -> Option<Bytes> {
        match cmd {
            Command::Query(_) | Command::StmtPrepare(_) if !payload.is_empty() => {
                Some(payload.slice(1..))
            }
            Command::StmtExecute { stmt_id, .. }
            | Command::StmtFetch { stmt_id, .. }
            | Command::StmtBulkExecute { stmt_id, .. } => {
                self.stmts.by_id.get(stmt_id).map(|e| e.text().clone())
            }
            _ => None,
        }
    }

    /// Whether this session sees every session in the process list: the
    /// server's rule, `PROCESS` (or `SUPER`); otherwise its own user's.
    pub(super) fn sees_all_sessions(&self) -> bool {
        self.account.privileges.process || self.account.privileges.super_
    }

    /// The sessions this one may see.
    fn visible_rows(&self) -> Vec<Row> {
        self.ctx
            .registry
            .visible_rows(&self.account.user, self.sees_all_sessions())
    }

    /// `SHOW [FULL] PROCESSLIST`.
    pub(super) async fn show_processlist(&mut self, full: bool, seq: u8) -> Flow {
        let now = Instant::now();
        let rows: Vec<Vec<Option<String>>> = self
            .visible_rows()
            .iter()
            .map(|r| server_cells(r, self.id, now, full))
            .collect();
        self.send_columns(seq, &server_columns(full), &rows).await
    }

    /// `SHOW CAUSEWAY PROCESSLIST`: the server's columns (Info whole), then
    /// the session's pool, pin, the backend connections it holds and the
    /// one running its statement (or that ran its last).
    pub(super) async fn causeway_processlist(&mut self, seq: u8) -> Flow {
        let now = Instant::now();
        let topo = self.ctx.cluster.topology();
        let rows: Vec<Vec<Option<String>>> = self
            .visible_rows()
            .into_iter()
            .map(|r| {
                let mut cells = server_cells(&r, self.id, now, true);
                let pool = if r.status.pool.is_empty() {
                    "none"
                } else {
                    r.status.pool
                };
                let thread = r.backend.map(|(i, t)| {
                    let name = topo.backends.get(i).map(|b| b.name.as_str()).unwrap_or("?");
                    format!("{name}#{t}")
                });
                cells.push(Some(pool.to_string()));
                cells.push(r.status.pin.map(str::to_string));
                cells.push((!r.status.backends.is_empty()).then_some(r.status.backends));
                cells.push(thread);
                cells
            })
            .collect();
        let mut columns = server_columns(true).to_vec();
        columns.extend([
            Column::text("Pool", 48, flag::NOT_NULL),
            Column::text("Pin", 192, 0),
            Column::text("Backends", 1024, 0),
            Column::text("Backend_thread", 192, 0),
        ]);
        self.send_columns(seq, &columns, &rows).await
    }

    /// A result set with declared columns.
    async fn send_columns(
        &mut self,
        seq: u8,
        columns: &[Column<'_>],
        rows: &[Vec<Option<String>>],
    ) -> Flow {
        self.scratch.clear();
        encode_result(
            &mut self.scratch,
            seq,
            self.client.caps,
            self.client.ext_caps,
            self.status,
            columns,
            rows,
        );
        match self.client.stream.write_all(&self.scratch).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    /// The COM_QUERY payload with every `information_schema.PROCESSLIST`
    /// reference of `sql` replaced by a derived table of the sessions this
    /// one may see; `None` if `sql` names none (or not in a query).
    pub(super) fn processlist_rewrite(&self, sql: &[u8]) -> Option<Vec<u8>> {
        let in_schema = self
            .database
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("information_schema"));
        let refs = processlist_refs(sql, in_schema)?;
        let table = derived_table(&self.visible_rows(), self.id, Instant::now());
        let mut out = Vec::with_capacity(1 + sql.len() + refs.len() * (table.len() + 32));
        out.push(crate::protocol::consts::com::QUERY);
        let mut at = 0;
        for r in &refs {
            out.extend_from_slice(sql.get(at..r.start)?);
            match r.role {
                RefRole::ColumnQualifier => out.extend_from_slice(b"PROCESSLIST"),
                RefRole::AliasedTable => out.extend_from_slice(&table),
                RefRole::Table => {
                    out.extend_from_slice(&table);
                    out.extend_from_slice(b" AS PROCESSLIST");
                }
            }
            at = r.end;
        }
        out.extend_from_slice(sql.get(at..)?);
        Some(out)
    }
}

/// `(SELECT .. UNION ALL SELECT ..)`: the rows of
/// `information_schema.PROCESSLIST` with the server's column names. The
/// first, empty, select fixes the column names and types (a huge `ID`
/// makes it a BIGINT, as the server's); one select per session follows.
/// Every value that came from a client is a hex literal: nothing a user
/// name or a statement holds can end the string. `INFO` is the statement
/// read as UTF-8 (invalid bytes become `?`), `INFO_BINARY` its bytes as
/// sent.
pub(super) fn derived_table(rows: &[Row], own_id: u32, now: Instant) -> Vec<u8> {
    const TEMPLATE: &str = "(SELECT -9223372036854775807 AS ID, _utf8mb4'' AS USER, \
        _utf8mb4'' AS HOST, CAST(NULL AS CHAR(64) CHARACTER SET utf8mb4) AS DB, \
        _utf8mb4'' AS COMMAND, 0 AS TIME, \
        CAST(NULL AS CHAR(64) CHARACTER SET utf8mb4) AS STATE, \
        CAST(NULL AS CHAR CHARACTER SET utf8mb4) AS INFO, \
        CAST(0 AS DECIMAL(22,3)) AS TIME_MS, 0 AS STAGE, 0 AS MAX_STAGE, \
        CAST(0 AS DECIMAL(7,3)) AS PROGRESS, -9223372036854775807 AS MEMORY_USED, \
        -9223372036854775807 AS MAX_MEMORY_USED, 0 AS EXAMINED_ROWS, \
        -9223372036854775807 AS QUERY_ID, CAST(NULL AS BINARY) AS INFO_BINARY, \
        -9223372036854775807 AS TID FROM DUAL WHERE 0";
    let mut s = String::with_capacity(TEMPLATE.len() + rows.len() * 256);
    s.push_str(TEMPLATE);
    for r in rows {
        let elapsed = now.saturating_duration_since(r.since);
        let micros = elapsed.as_micros();
        let _ = write!(s, " UNION ALL SELECT {}, ", r.id);
        text_literal(&mut s, r.user.as_bytes());
        s.push_str(", ");
        text_literal(&mut s, r.host.as_bytes());
        s.push_str(", ");
        match &r.status.database {
            Some(db) => text_literal(&mut s, db.as_bytes()),
            None => s.push_str("NULL"),
        }
        s.push_str(", ");
        text_literal(&mut s, r.command.as_bytes());
        let _ = write!(s, ", {}, ", elapsed.as_secs());
        // The server's state for the session reading the table.
        let state = if r.id == own_id {
            "Filling schema table"
        } else {
            state_of(r, own_id)
        };
        text_literal(&mut s, state.as_bytes());
        s.push_str(", ");
        match &r.info {
            Some(info) => {
                s.push_str("CONVERT(");
                hex_literal(&mut s, info);
                s.push_str(" USING utf8mb4)");
            }
            None => s.push_str("NULL"),
        }
        let _ = write!(
            s,
            ", {}.{:03}, 0, 0, 0.000, 0, 0, 0, 0, ",
            micros / 1000,
            micros % 1000
        );
        match &r.info {
            Some(info) => hex_literal(&mut s, info),
            None => s.push_str("NULL"),
        }
        s.push_str(", 0");
    }
    s.push(')');
    s.into_bytes()
}

/// A utf8mb4 string literal of `bytes`, as hex.
fn text_literal(s: &mut String, bytes: &[u8]) {
    s.push_str("_utf8mb4 ");
    hex_literal(s, bytes);
}

/// `X'..'` of `bytes`.
fn hex_literal(s: &mut String, bytes: &[u8]) {
    s.reserve(bytes.len() * 2 + 3);
    s.push_str("X'");
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::registry::Status;
    use std::time::Duration;

    fn row(id: u32, user: &str, command: &'static str, info: Option<&'static [u8]>) -> Row {
        Row {
            id,
            user: user.into(),
            host: "127.0.0.1:5000".into(),
            status: Status::default(),
            command,
            since: Instant::now(),
            info: info.map(Bytes::from_static),
            backend: None,
        }
    }

    #[test]
    fn info_is_truncated_to_100_characters_without_full() {
        let long = "é".repeat(150);
        let info = Bytes::from(long.clone().into_bytes());
        assert_eq!(display_info(Some(&info), true), Some(long.clone()));
        assert_eq!(display_info(Some(&info), false), Some("é".repeat(100)));
        assert_eq!(display_info(None, false), None);
        let bad = Bytes::from_static(b"SELECT '\xff'");
        assert_eq!(
            display_info(Some(&bad), true).as_deref(),
            Some("SELECT '\u{fffd}'")
        );
    }

    #[test]
    fn server_cells_follow_the_server() {
        let mut r = row(5, "app", "Sleep", None);
        r.since = Instant::now() - Duration::from_secs(3);
        let now = Instant::now();
        let cells = server_cells(&r, 9, now, false);
        assert_eq!(cells[0].as_deref(), Some("5"));
        assert_eq!(cells[4].as_deref(), Some("Sleep"));
        assert_eq!(cells[5].as_deref(), Some("3"));
        assert_eq!(cells[6].as_deref(), Some(""));
        assert_eq!(cells[7], None);
        assert_eq!(cells[8].as_deref(), Some("0.000"));
        let own = row(9, "app", "Query", Some(b"SHOW PROCESSLIST"));
        let cells = server_cells(&own, 9, now, false);
        assert_eq!(cells[6].as_deref(), Some("starting"));
        assert_eq!(cells[7].as_deref(), Some("SHOW PROCESSLIST"));
    }

    #[test]
    fn derived_table_quotes_everything_from_clients_as_hex() {
        let rows = [
            row(3, "o'hara\\", "Query", Some(b"SELECT 'x'; -- \xff")),
            row(4, "app", "Sleep", None),
        ];
        let sql = String::from_utf8(derived_table(&rows, 3, Instant::now())).unwrap();
        assert!(sql.starts_with("(SELECT -9223372036854775807 AS ID"));
        assert!(sql.ends_with(", 0)"));
        assert_eq!(sql.matches(" UNION ALL SELECT ").count(), 2);
        assert!(!sql.contains("o'hara"));
        assert!(sql.contains("SELECT 3, _utf8mb4 X'6F27686172615C', "));
        assert!(sql.contains("CONVERT(X'53454C454354202778273B202D2D20FF' USING utf8mb4)"));
        assert!(sql.contains(", X'53454C454354202778273B202D2D20FF', 0"));
        let empty = String::from_utf8(derived_table(&[], 1, Instant::now())).unwrap();
        assert!(empty.ends_with("FROM DUAL WHERE 0)"));
    }
}
