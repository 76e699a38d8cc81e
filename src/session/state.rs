//! Session state that follows the session from backend to backend.
//!
//! The server is the source of truth: every backend connection tracks
//! changed session variables (`session_track_system_variables='*'`) and
//! the current schema, so after a `SET` (or a stored procedure, or a SET
//! inside a multi-statement) the OK packet says exactly what changed and to
//! what. The session records those values with a version number; each
//! backend connection remembers the version it was last brought to, and
//! before a statement runs on a connection that is behind, the whole
//! difference is applied in one `SET SESSION ...` (plus `COM_INIT_DB` when the
//! database differs), pipelined with the statement itself.
//!
//! User variables are not tracked by the server: literal assignments
//! (`SET @a = 1`) are replayed; assignments from data (`SELECT ... INTO @v`,
//! `@v := col`, `SET @v = (SELECT ...)`) run on the primary and send later
//! reads of user variables there too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::pool::Applied;
use crate::pool::{same_vars, Vars};
use crate::router::{Isolation, Pin};

/// Variables the login itself sets (from the handshake's character set):
/// `DEFAULT` would not bring them back, their login values do.
pub const LOGIN_VARS: &[&str] = &[
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

/// Variables that are not session state to copy: `last_gtid` is a
/// position; the tracking settings are Causeway's own.
const NOT_SYNCED: &[&str] = &[
    "last_gtid",
    "last_insert_id",
    "identity",
    "insert_id",
    "session_track_system_variables",
    "session_track_schema",
    "session_track_state_change",
];

/// Copied to the primary only: replica connections keep autocommit on, so a
/// read can never leave a transaction (and its snapshot) open on a replica.
const PRIMARY_ONLY: &[&str] = &["autocommit"];

#[derive(Debug, Default, Clone)]
pub struct SessionState {
    /// Session variables the server reported as changed, by name; shared
    /// with the connections brought to them, so changed copy-on-write.
    vars: Vars,
    /// `vars` without the primary-only ones, when it has any (else replica
    /// connections are brought to `vars` itself).
    replica_vars: Option<Vars>,
    /// Bumped whenever `vars` changes.
    pub version: u64,
    /// Literal user-variable assignments, in order, to replay elsewhere:
    /// the statements as the client sent them (its bytes, in its character
    /// set).
    pub user_var_sets: Vec<Vec<u8>>,
    /// User variables were assigned from data on the primary.
    pub user_vars_on_primary: bool,
    /// Temporary tables the session created: names as the client wrote
    /// them (its bytes, unquoted, without database).
    pub temp_tables: Vec<Vec<u8>>,
    /// `LOCK TABLES` in effect.
    pub table_locks: bool,
    /// `GET_LOCK()` was called and not every lock released.
    pub user_locks: bool,
}

impl SessionState {
    /// Records variables reported by the server; returns whether anything changed.
    pub fn record_vars(&mut self, changes: &[(String, String)]) -> bool {
        let mut changed = false;
        for (k, v) in changes {
            let k = k.to_ascii_lowercase();
            if NOT_SYNCED.contains(&k.as_str()) {
                continue;
            }
            if self.vars.get(&k) != Some(v) {
                Arc::make_mut(&mut self.vars).insert(k, v.clone());
                changed = true;
            }
        }
        // A new connection character set brings its default collation: a
        // collation recorded before (`SET NAMES .. COLLATE`) no longer holds.
        let reported = |name: &str| changes.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if reported("character_set_connection")
            && !reported("collation_connection")
            && self.vars.contains_key("collation_connection")
        {
            Arc::make_mut(&mut self.vars).remove("collation_connection");
            changed = true;
        }
        if changed {
            self.changed();
        }
        changed
    }

    /// `SET NAMES .. COLLATE c`: the server does not report the collation
    /// as changed, only the character sets.
    pub fn set_collation(&mut self, collation: &str) -> bool {
        if self.var("collation_connection") == Some(collation) {
            return false;
        }
        Arc::make_mut(&mut self.vars).insert("collation_connection".into(), collation.to_string());
        self.changed();
        true
    }

    /// After `vars` changed: a new version, and the replicas' view anew.
    fn changed(&mut self) {
        self.version += 1;
        self.replica_vars = PRIMARY_ONLY
            .iter()
            .any(|k| self.vars.contains_key(*k))
            .then(|| {
                let only_replica = self
                    .vars
                    .iter()
                    .filter(|(k, _)| !PRIMARY_ONLY.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()));
                Arc::new(only_replica.collect())
            });
    }

    /// The variables a connection of this role must have, as the map the
    /// session shares with connections brought to it.
    pub fn shared_vars(&self, primary: bool) -> &Vars {
        match &self.replica_vars {
            Some(r) if !primary => r,
            _ => &self.vars,
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The session's isolation level as last reported.
    pub fn isolation(&self) -> Isolation {
        self.var("transaction_isolation")
            .or_else(|| self.var("tx_isolation"))
            .and_then(Isolation::parse)
            .unwrap_or_default()
    }

    /// One statement that brings a connection to the recorded variables,
    /// or `None` when there is nothing to set.
    pub fn sync_statement(&self, primary: bool) -> Option<String> {
        let mut s = String::from("SET SESSION ");
        let mut n = 0;
        for (k, v) in self.vars.iter() {
            if !primary && PRIMARY_ONLY.contains(&k.as_str()) {
                continue;
            }
            if n > 0 {
                s.push_str(", ");
            }
            n += 1;
            s.push_str(k);
            s.push('=');
            s.push_str(&sql_value(k, v));
        }
        (n > 0).then_some(s)
    }

    /// The variables a connection of this role must have.
    pub fn vars_for(&self, primary: bool) -> Vars {
        self.shared_vars(primary).clone()
    }

    /// One `SET` that brings a pooled connection from what it has
    /// (`applied`) to this session's variables and user variables (`user`,
    /// SQL literals by name), and sets its last insert id; `None` when
    /// there is nothing to do. Variables the connection has and the
    /// session has not go back to their login values (`DEFAULT`, or the
    /// handshake's character sets); user variables the session does not
    /// have become NULL, which is what reading an unset one gives.
    pub fn pooled_set(
        &self,
        applied: &Applied,
        primary: bool,
        user: &BTreeMap<String, String>,
        last_insert_id: Option<u64>,
    ) -> Option<String> {
        let mine = |k: &str| {
            if !primary && PRIMARY_ONLY.contains(&k) {
                None
            } else {
                self.vars.get(k)
            }
        };
        let mut items: Vec<String> = Vec::new();
        // In step (the map this session shares, or an equal one): nothing
        // to compare name by name.
        let names: BTreeSet<&String> = if same_vars(self.shared_vars(primary), &applied.vars) {
            BTreeSet::new()
        } else {
            self.vars.keys().chain(applied.vars.keys()).collect()
        };
        for k in names {
            let have = applied.vars.get(k);
            match (mine(k), have) {
                (Some(v), h) if h != Some(v) => {
                    items.push(format!("@@session.{k}={}", sql_value(k, v)))
                }
                // Setting the character set (above, in name order) already
                // brought its default collation back.
                (None, Some(_))
                    if k == "collation_connection"
                        && mine("character_set_connection").is_some() =>
                {
                    let cs = mine("character_set_connection").map(String::as_str);
                    items.push(format!(
                        "@@session.character_set_connection={}",
                        sql_value("character_set_connection", cs.unwrap_or_default())
                    ))
                }
                (None, Some(_)) => items.push(match applied.baseline.get(k) {
                    Some(b) => format!("@@session.{k}={}", sql_value(k, b)),
                    None => format!("@@session.{k}=DEFAULT"),
                }),
                _ => {}
            }
        }
        let user_same = std::ptr::eq(user, &*applied.user_vars) || *user == *applied.user_vars;
        for (k, v) in user.iter().filter(|_| !user_same) {
            if applied.user_vars.get(k) != Some(v) {
                items.push(format!("@{}={v}", quote_ident(k)));
            }
        }
        for k in applied.user_vars.keys().filter(|_| !user_same) {
            if !user.contains_key(k) {
                // A binary NULL: what a variable never set reads as (a plain
                // NULL would keep the old value's type).
                items.push(format!("@{}=CAST(NULL AS BINARY)", quote_ident(k)));
            }
        }
        if let Some(id) = last_insert_id {
            items.push(format!("@@session.last_insert_id={id}"));
        }
        (!items.is_empty()).then(|| format!("SET {}", items.join(", ")))
    }

    /// Forgets everything (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub fn reset(&mut self) {
        let version = self.version + 1;
        *self = SessionState::default();
        self.version = version;
    }

    /// Why the session must stay on the primary, if it must.
    pub fn pin(&self) -> Option<Pin> {
        if self.table_locks {
            Some(Pin::LockTables)
        } else if self.user_locks {
            Some(Pin::UserLock)
        } else {
            None
        }
    }

    pub fn mentions_temp_table(&self, sql: &[u8]) -> bool {
        self.temp_tables
            .iter()
            .any(|t| crate::classify::mentions_table(sql, t))
    }

    /// Records the temporary tables a statement that succeeded created and
    /// dropped. A drop removes the table of exactly that name, else one
    /// that differs only in case (the server folds names under
    /// `lower_case_table_names`, and then two such tables cannot exist).
    pub fn learn_temp_tables(&mut self, changes: Vec<crate::classify::TempTableChange>) {
        for c in changes {
            let exact = self.temp_tables.iter().position(|t| *t == c.name);
            if c.create {
                if exact.is_none() {
                    self.temp_tables.push(c.name);
                }
                continue;
            }
            let at = exact.or_else(|| {
                self.temp_tables
                    .iter()
                    .position(|t| crate::classify::same_table_name(t, &c.name))
            });
            if let Some(i) = at {
                self.temp_tables.remove(i);
            }
        }
    }
}

/// `name` as a backquoted identifier.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A user variable's value as a SQL literal of the same type, from its
/// text and the column type and character set it was read with; `None`
/// when Causeway cannot write it so that it reads back the same.
pub fn user_var_literal(value: Option<&str>, column_type: u8, charset: u16) -> Option<String> {
    let Some(v) = value else {
        return Some("NULL".into());
    };
    let hex = |v: &str| v.bytes().map(|b| format!("{b:02X}")).collect::<String>();
    match column_type {
        // TINY SHORT LONG LONGLONG INT24 YEAR, DECIMAL NEWDECIMAL
        1 | 2 | 3 | 8 | 9 | 13 | 0 | 246 => {
            let ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.');
            ok.then(|| v.to_string())
        }
        // FLOAT DOUBLE: an exponent makes the literal a double.
        4 | 5 => {
            let ok = !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
            match (ok, v.contains(['e', 'E'])) {
                (false, _) => None,
                (true, true) => Some(v.to_string()),
                (true, false) => Some(format!("{v}e0")),
            }
        }
        6 => Some("NULL".into()),
        _ => {
            let introducer = charset_name(charset)?;
            if v.is_empty() {
                return Some(format!("_{introducer}''"));
            }
            Some(format!("_{introducer} X'{}'", hex(v)))
        }
    }
}

/// Whether a column type is a string (not a number, not NULL).
pub fn is_string_type(column_type: u8) -> bool {
    !matches!(column_type, 0..=6 | 8 | 9 | 13 | 246)
}

/// A string value as a literal of the same bytes and character set, from
/// `HEX()` and `CHARSET()` of it: `_latin1 X'E9'`. `None` if either is not
/// what those functions return.
pub fn string_literal(hex: &str, charset: &str) -> Option<String> {
    let hex_ok = hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let cs_ok = !charset.is_empty()
        && charset
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !(hex_ok && cs_ok) {
        return None;
    }
    if hex.is_empty() {
        return Some(format!("_{charset}''"));
    }
    Some(format!("_{charset} X'{hex}'"))
}

/// The character set of a collation id, for the common ones.
fn charset_name(id: u16) -> Option<&'static str> {
    match id {
        63 => Some("binary"),
        45 | 46 | 224..=247 | 255 | 305..=323 => Some("utf8mb4"),
        33 | 83 | 192..=215 | 223 => Some("utf8mb3"),
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => Some("latin1"),
        11 | 65 => Some("ascii"),
        _ => None,
    }
}

/// A value as SQL: numbers bare, everything else a quoted string.
fn sql_value(name: &str, v: &str) -> String {
    if v.is_empty() && name.starts_with("character_set_") {
        return "NULL".into();
    }
    let numeric = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && v.parse::<f64>().is_ok();
    if numeric {
        return v.to_string();
    }
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    for c in v.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests;
