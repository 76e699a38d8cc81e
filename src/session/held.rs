//! State the session's statements leave on server connections that cannot
//! always move with it — what pins a pooled session to its connection
//! (see the table in [`super::pooled`]), what must be replayed on another
//! connection — and what the session learns about it from each reply.

use super::relay::ReplyInfo;
use super::Session;
use crate::classify::{handler, lock_calls, prepared_name, Class, Flags, HandlerOp, Kind};
use crate::pool::GroupKey;
use crate::pool::Vars;
use crate::protocol::consts::status;
use crate::router::Pin;
use std::collections::{BTreeMap, BTreeSet};

/// What the transaction-level pool needs to know about a session beyond
/// its [`super::state::SessionState`].
#[derive(Debug)]
pub struct Held {
    /// User variables by lower-case name, as SQL literals (shared with the
    /// connections brought to them; changed copy-on-write).
    pub user_values: Vars,
    /// The pool key of the session's connections, made once.
    pub key: Option<GroupKey>,
    /// User variables whose values could not be written back as literals.
    pub unreplayable: BTreeSet<String>,
    /// Names of text-protocol prepared statements.
    pub text_prepares: BTreeSet<String>,
    /// Tables (or aliases) opened with `HANDLER ... OPEN`.
    pub handlers: BTreeSet<String>,
    /// A `SQL_CALC_FOUND_ROWS` result awaits `FOUND_ROWS()`.
    pub found_rows: bool,
    /// `SET TRANSACTION ..` (no `SESSION`) set the next transaction's
    /// characteristics on the primary connection; that transaction must
    /// run there.
    pub next_transaction: bool,
    /// The statement (client id) and backend holding an open cursor.
    pub cursor: Option<(u32, usize)>,
    /// COM_STMT_SEND_LONG_DATA was sent for this statement (client id).
    pub long_data: Option<u32>,
    /// User-level locks held, by name, with their recursion count.
    pub locks: BTreeMap<String, u32>,
    /// A lock was taken by a name Causeway could not read.
    pub opaque_locks: bool,
    /// The session's last generated id (`LAST_INSERT_ID()`).
    pub last_insert_id: Option<u64>,
    /// `ROW_COUNT()` of the session's last statement.
    pub row_count: i64,
    /// The next statement reads the last insert id.
    pub wants_last_insert_id: bool,
    /// Multi-statements as the client's COM_SET_OPTION last set them.
    pub multi_statements: Option<bool>,
    /// The pin reason last published.
    pub published_pin: Option<Pin>,
    /// The backend whose connection holds the session's diagnostics area
    /// (warnings and errors a `SHOW WARNINGS` would show).
    pub diag_backend: Option<usize>,
    /// ... and that area is not empty: with a pool, the connection stays
    /// with the session until a statement clears it.
    pub diag_pending: bool,
    /// A statement set user variables Causeway could not read back (their
    /// names are unknown): they live on the primary connection, which the
    /// session keeps.
    pub hidden_vars: bool,
    /// The statement about to be executed was just prepared on its
    /// connection (the server reports that as a state change).
    pub fresh_prepare: bool,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            user_values: Vars::default(),
            key: None,
            unreplayable: BTreeSet::new(),
            text_prepares: BTreeSet::new(),
            handlers: BTreeSet::new(),
            found_rows: false,
            next_transaction: false,
            cursor: None,
            long_data: None,
            locks: BTreeMap::new(),
            opaque_locks: false,
            last_insert_id: None,
            // What a new connection's first ROW_COUNT() gives.
            row_count: -1,
            wants_last_insert_id: false,
            multi_statements: None,
            published_pin: None,
            diag_backend: None,
            diag_pending: false,
            hidden_vars: false,
            fresh_prepare: false,
        }
    }
}

impl Session {
    /// Why backend connection `index` must stay with the session, if it must.
    pub(super) fn pin_for(&self, index: usize) -> Option<Pin> {
        let conn = self.conns.open.get(index)?.as_ref()?;
        if conn.in_transaction() {
            return Some(Pin::Transaction);
        }
        if let Some(held) = self.held_state(index) {
            return Some(held);
        }
        if self.held.diag_pending && self.held.diag_backend == Some(index) {
            return Some(Pin::Diagnostics);
        }
        if !self.is_primary(index) {
            None
        } else if self.held.found_rows {
            Some(Pin::FoundRows)
        } else if !self.held.unreplayable.is_empty() || self.held.hidden_vars {
            Some(Pin::UserVariable)
        } else {
            None
        }
    }

    /// Counts and shows a change of the session's pin.
    pub(super) fn publish_pin(&mut self, pin: Option<Pin>) {
        if pin == self.held.published_pin {
            return;
        }
        match (self.held.published_pin, pin) {
            (None, Some(r)) => {
                self.ctx.metrics.pin_label(r.label());
                self.ctx.metrics.pinned_sessions().increment(1.0);
            }
            (Some(_), None) => self.ctx.metrics.pinned_sessions().decrement(1.0),
            (Some(_), Some(r)) => self.ctx.metrics.pin_label(r.label()),
            (None, None) => {}
        }
        self.held.published_pin = pin;
    }

    /// Learns what a statement left on the connection that the pool must
    /// carry or pin: generated ids, row counts, text prepares, pending
    /// `FOUND_ROWS()`.
    pub(super) fn learn_pooled(&mut self, info: &ReplyInfo, stmt: Option<(&Class, &[u8])>) {
        if info.last_insert_id != 0 {
            self.held.last_insert_id = Some(info.last_insert_id);
        }
        self.held.wants_last_insert_id = false;
        let Some((class, sql)) = stmt else { return };
        self.held.found_rows = !info.error && class.flags.contains(Flags::CALC_FOUND_ROWS);
        if info.error {
            return;
        }
        match class.kind {
            Kind::Prepare => {
                if let Some(name) = prepared_name(sql) {
                    self.held.text_prepares.insert(name);
                }
            }
            Kind::Deallocate => {
                if let Some(name) = prepared_name(sql) {
                    self.held.text_prepares.remove(&name);
                }
            }
            _ => {}
        }
        // `HANDLER t OPEN [AS a]` is closed by its alias if it has one. A
        // statement that starts with `HANDLER` is never a read: reads are
        // not lexed again for it.
        if class.kind == Kind::Read {
            return;
        }
        match handler(sql) {
            Some(HandlerOp::Open(name)) => {
                self.held.handlers.insert(name);
            }
            Some(HandlerOp::Close(name)) => {
                self.held.handlers.remove(&name);
            }
            None => {}
        }
    }

    /// Updates the user-level locks the session holds after a statement
    /// that called a lock function succeeded.
    pub(super) fn learn_locks(&mut self, sql: &[u8]) {
        let calls = lock_calls(sql);
        if calls.release_all {
            self.held.locks.clear();
            self.held.opaque_locks = false;
        }
        for name in calls.release {
            if let Some(n) = self.held.locks.get_mut(&name) {
                *n -= 1;
                if *n == 0 {
                    self.held.locks.remove(&name);
                }
            }
        }
        for name in calls.get {
            *self.held.locks.entry(name).or_insert(0) += 1;
        }
        self.held.opaque_locks |= calls.opaque;
        self.state.user_locks = self.held.opaque_locks || !self.held.locks.is_empty();
    }

    /// The cursor pin ends when the server says the last row was sent.
    pub(super) fn learn_fetch(&mut self, index: usize) {
        let done = self.conns.open[index]
            .as_ref()
            .is_none_or(|c| c.status & status::LAST_ROW_SENT != 0);
        if done {
            self.held.cursor = None;
        }
    }

    /// The session's `ROW_COUNT()` after a statement, whichever backend
    /// ran it (every session needs it: its next statement may run on
    /// another backend connection).
    pub(super) fn learn_row_count(&mut self, info: &ReplyInfo) {
        self.held.row_count = if info.error || info.result_set {
            -1
        } else {
            info.affected_rows as i64
        };
    }
}
