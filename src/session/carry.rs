//! State a client's statements leave on "the connection" that must follow
//! the session when Causeway spreads its statements over several backend
//! connections:
//! - the multi-statements option (COM_SET_OPTION), brought to every
//!   backend connection before use like session variables;
//! - the diagnostics area (warnings, errors): statements that read it
//!   (`SHOW WARNINGS`, `SHOW ERRORS`, `SHOW COUNT(*) ..`, `@@warning_count`,
//!   `@@error_count`, `GET DIAGNOSTICS`) run on the connection that ran the
//!   statement whose diagnostics a direct connection would show;
//! - user variables set by statements that do not name them (`CALL`,
//!   `EXECUTE`, `EXECUTE IMMEDIATE`, compound statements, triggers fired by
//!   a data change).
//!
//! The server clears a connection's diagnostics area at a statement that
//! uses a table or that raises a condition; other statements (`SELECT 1`,
//! `SET`, `SELECT @a`) leave it as it was. The session follows the same
//! rule to know which connection holds the area that counts.

use crate::classify::{reads_a_table, reads_diagnostics, Class, Flags, Kind};
use crate::error::Error;
use crate::protocol::consts::{cap, com};
use crate::protocol::reply::Expect;

use super::relay::ReplyInfo;
use super::state::{is_string_type, string_literal};
use super::state::{quote_ident, user_var_literal};
use super::sync::Synced;
use super::{drain_reply, Flow, Session};
use crate::classify::user_var_names;
use std::sync::Arc;

/// A statement that uses a table and raises nothing: it empties the
/// diagnostics area of a pooled connection before a session that has none
/// reads it there (the area may hold another session's warnings).
const CLEAR_DIAGNOSTICS: &[u8] =
    b"\x03DO (SELECT 1 FROM information_schema.CHARACTER_SETS LIMIT 0)";

/// Lists the connection's user variables (MariaDB's `USER_VARIABLES`
/// information schema table).
const USER_VARIABLE_NAMES: &str = "SELECT VARIABLE_NAME FROM information_schema.USER_VARIABLES";

/// Whether `class` (of `sql`) reads the diagnostics area. Only shapes that
/// can be such a statement are looked at closer.
pub(super) fn is_diagnostics(class: &Class, sql: &[u8]) -> bool {
    let candidate = matches!(class.kind, Kind::Show | Kind::Unknown)
        || (class.kind == Kind::Read && class.flags.contains(Flags::SIDE_EFFECT_FN));
    candidate && reads_diagnostics(&String::from_utf8_lossy(sql))
}

/// Whether a statement may set user variables without naming them (a
/// stored procedure or function, a trigger, a text prepared statement, a
/// compound statement) and its reply says it changed the session's state.
fn set_hidden_vars(class: &Class, sql: &[u8], info: &ReplyInfo) -> bool {
    let may = match class.kind {
        Kind::Call | Kind::Execute | Kind::Unknown => !is_diagnostics(class, sql),
        // Variables a read or write names are followed by name already.
        Kind::Write | Kind::Read | Kind::LockingRead => !class
            .flags
            .intersects(Flags::USER_VAR_ASSIGN | Flags::SELECT_INTO),
        _ => false,
    };
    may && info.state_changed && !info.error
}

impl Session {
    /// COM_SET_OPTION without a pool: runs on the primary connection and is
    /// remembered, so that every other backend connection is brought to it
    /// before its next statement (see [`Session::set_option_for`]).
    pub(super) async fn set_option(&mut self, option: u16, raw: &[u8]) -> Flow {
        let flow = self.forward(raw, Expect::Single).await;
        let p = self.primary;
        let ran = self.conns.open.get(p).is_some_and(Option::is_some);
        // Only options 0 (on) and 1 (off) exist; the server refuses others.
        if ran && option <= 1 {
            let multi = option == 0;
            self.held.multi_statements = Some(multi);
            if let Some(s) = self.conns.synced.get_mut(p) {
                s.multi_statements = Some(multi);
            }
        }
        flow
    }

    /// The COM_SET_OPTION that brings a connection (last brought to
    /// `synced`) to the session's multi-statements option, if it differs.
    pub(super) fn set_option_for(&self, synced: &Synced) -> Option<Vec<u8>> {
        let login = self.client.caps & cap::MULTI_STATEMENTS != 0;
        let want = self.held.multi_statements.unwrap_or(login);
        if synced.multi_statements.unwrap_or(login) == want {
            return None;
        }
        let v: u16 = if want { 0 } else { 1 };
        let mut p = vec![com::SET_OPTION];
        p.extend_from_slice(&v.to_le_bytes());
        Some(p)
    }

    /// Runs a statement that reads the diagnostics area where the session's
    /// area is: on the connection that ran the statement that last set it.
    pub(super) async fn diagnostics(&mut self, raw: &[u8], class: &Class, text: &[u8]) -> Flow {
        let n = self.conns.open.len();
        let index = self
            .held
            .diag_backend
            .filter(|&i| i < n)
            .unwrap_or(self.primary);
        let held = self.conns.open.get(index).is_some_and(Option::is_some);
        if self.conns.pooled && !(self.held.diag_pending && held) {
            if let Err(e) = self.clear_diagnostics(index).await {
                return self.fail(1, &e).await;
            }
        }
        self.ctx
            .metrics
            .route(super::route_target(index, self.primary), "diagnostics");
        let flow = self
            .run(
                index,
                raw,
                Expect::ResultSets,
                Some((class, text)),
                None,
                None,
            )
            .await;
        // `GET DIAGNOSTICS @n = NUMBER` sets user variables there.
        let names = crate::classify::user_var_names(text);
        if class.kind != Kind::Show && !names.is_empty() {
            if self.conns.pooled {
                self.capture_named(index, names).await;
            } else {
                self.capture_for_replay(index, names).await;
            }
        }
        flow
    }

    /// Empties the diagnostics area of the (borrowed) connection to
    /// backend `index`.
    pub(super) async fn clear_diagnostics(&mut self, index: usize) -> Result<(), Error> {
        self.sync(index).await?;
        let conn = self.backend(index).await?;
        conn.send_command(CLEAR_DIAGNOSTICS).await?;
        drain_reply(conn, Expect::Single).await?;
        Ok(())
    }

    /// After a statement ran on backend `index`: whether it set the
    /// session's diagnostics area (and whether that area holds anything).
    pub(super) fn learn_diagnostics(
        &mut self,
        index: usize,
        info: &ReplyInfo,
        stmt: Option<(&Class, &[u8])>,
    ) {
        let raised = info.error || info.warnings > 0;
        let sets = raised
            || match stmt {
                Some((c, sql)) if is_diagnostics(c, sql) => false,
                // A read of no table that raised nothing leaves the area
                // as it was, wherever it is.
                Some((c, sql)) if c.kind == Kind::Read => {
                    self.held.diag_backend != Some(index)
                        && c.reads_table.unwrap_or_else(|| reads_a_table(sql))
                }
                _ => true,
            };
        if sets {
            self.held.diag_backend = Some(index);
            self.held.diag_pending = raised;
        }
    }

    /// After a statement that set user variables it does not name (see
    /// [`set_hidden_vars`]) ran on backend `index`, they must be readable
    /// wherever the session's next statements run, and survive the loss of
    /// that connection (a restart, a change of primary): every user
    /// variable of that connection is read back (their names from
    /// `information_schema.USER_VARIABLES`) and carried like literal
    /// assignments. The read-back uses a table, which would clear the
    /// statement's warnings: a statement on the primary that left warnings
    /// instead keeps its variables on the primary connection (pooled: the
    /// connection stays with the session).
    pub(super) async fn learn_hidden_vars(
        &mut self,
        index: usize,
        info: &ReplyInfo,
        stmt: Option<(&Class, &[u8])>,
    ) {
        let Some((class, sql)) = stmt else { return };
        // A statement prepared on this connection just before its execute
        // makes the server report a state change (the prepare) in the
        // execute's reply: that is no sign of variables set by a read or a
        // write (a stored function called by such a first execute is
        // missed).
        let fresh_prepare = std::mem::take(&mut self.held.fresh_prepare)
            && matches!(class.kind, Kind::Read | Kind::Write | Kind::LockingRead);
        if fresh_prepare || !set_hidden_vars(class, sql, info) {
            return;
        }
        if info.warnings == 0 {
            if let Some(names) = self.user_variable_names(index).await {
                if self.conns.pooled {
                    self.capture_named(index, names).await;
                    self.held.hidden_vars &= !self.is_primary(index);
                } else {
                    self.capture_for_replay(index, names).await;
                }
                return;
            }
        }
        if self.is_primary(index) {
            self.held.hidden_vars = true;
            self.state.user_vars_on_primary = true;
        }
    }

    /// The names of the user variables set on the connection to `index`.
    pub(super) async fn user_variable_names(&mut self, index: usize) -> Option<Vec<String>> {
        let conn = self.conns.open.get_mut(index)?.as_mut()?;
        match conn.query_table(USER_VARIABLE_NAMES).await {
            Ok(t) => Some(
                t.rows
                    .iter()
                    .filter_map(|r| r.first().cloned().flatten())
                    .map(|n| n.to_lowercase())
                    .collect(),
            ),
            Err(e) => {
                if !matches!(e, Error::Server(_)) {
                    self.conns.open[index] = None;
                }
                None
            }
        }
    }

    /// Without a pool: reads back user variables `names` on the connection
    /// to backend `index` (where a statement set them) and records them as
    /// assignments to replay on the session's other connections.
    pub(super) async fn capture_for_replay(&mut self, index: usize, names: Vec<String>) {
        let select = format!(
            "SELECT {}",
            names
                .iter()
                .map(|n| format!("@{}", quote_ident(n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some(conn) = self.conns.open.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let Ok(table) = conn.query_table(&select).await else {
            self.conns.open[index] = None;
            return;
        };
        let row = table.rows.first();
        for (i, name) in names.iter().enumerate() {
            let value = row.and_then(|r| r.get(i)).and_then(|v| v.as_deref());
            let (ty, cs) = table.types.get(i).copied().unwrap_or((253, 0));
            match user_var_literal(value, ty, cs) {
                Some(lit) => {
                    let set = format!("SET @{}={lit}", quote_ident(name)).into_bytes();
                    // Read back again unchanged (the last assignment
                    // recorded for it is this one): nothing to add.
                    let last = self
                        .state
                        .user_var_sets
                        .iter()
                        .rev()
                        .find(|s| crate::classify::user_var_names(s).iter().any(|n| n == name));
                    if last != Some(&set) {
                        self.state.user_var_sets.push(set);
                    }
                }
                None => self.state.user_vars_on_primary = true,
            }
        }
        if let Some(s) = self.conns.synced.get_mut(index) {
            s.user_vars = self.state.user_var_sets.len();
        }
    }

    /// Reads back the user variables a statement may have assigned, on the
    /// connection it ran on, so they can be replayed on any other.
    pub(super) async fn capture_user_vars(&mut self, index: usize, class: &Class, sql: &[u8]) {
        let assigns = class.kind == Kind::SetUserVar
            || class
                .flags
                .intersects(Flags::USER_VAR_ASSIGN | Flags::SELECT_INTO);
        if !assigns {
            return;
        }
        let names = user_var_names(sql);
        self.capture_named(index, names).await;
    }

    /// Reads back the user variables `names` on the connection to backend
    /// `index` and records them for replay elsewhere.
    pub(super) async fn capture_named(&mut self, index: usize, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        // The value (for its type), and a string's bytes and character set
        // as they are: the text of the value may not be UTF-8.
        let select = format!(
            "SELECT {}",
            names
                .iter()
                .map(|n| {
                    let v = format!("@{}", quote_ident(n));
                    format!("{v}, HEX({v}), CHARSET({v})")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some(conn) = self.conns.open.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let table = match conn.query_table(&select).await {
            Ok(t) => t,
            Err(e) => {
                if !matches!(e, Error::Server(_)) {
                    self.conns.open[index] = None;
                }
                self.held.unreplayable.extend(names);
                return;
            }
        };
        let row = table.rows.first();
        for (i, name) in names.into_iter().enumerate() {
            let col = |k: usize| {
                row.and_then(|r| r.get(3 * i + k))
                    .and_then(|v| v.as_deref())
            };
            let (ty, cs) = table.types.get(3 * i).copied().unwrap_or((253, 0));
            let literal = match (col(0), col(1), col(2)) {
                (Some(_), Some(hex), Some(charset)) if is_string_type(ty) => {
                    string_literal(hex, charset)
                }
                (value, _, _) => user_var_literal(value, ty, cs),
            };
            match literal {
                Some(lit) if lit == "NULL" => {
                    self.held.unreplayable.remove(&name);
                    Arc::make_mut(&mut self.held.user_values).remove(&name);
                }
                Some(lit) => {
                    self.held.unreplayable.remove(&name);
                    Arc::make_mut(&mut self.held.user_values).insert(name, lit);
                }
                None => {
                    Arc::make_mut(&mut self.held.user_values).remove(&name);
                    self.held.unreplayable.insert(name);
                }
            }
        }
        if let Some(p) = self.conns.open[index]
            .as_mut()
            .and_then(|c| c.pooled.as_mut())
        {
            p.applied.set_user_vars(&self.held.user_values);
        }
    }
}
