//! The session's side of the transaction-level pool: borrow a backend
//! connection when a statement needs one, bring it to the session's state,
//! learn what the statement left behind, and give the connection back after
//! the command unless something pins the session to it.
//!
//! Pins (state that lives in one server connection and cannot be copied):
//!
//! | reason            | set by                                   | released by                       |
//! |-------------------|------------------------------------------|-----------------------------------|
//! | `transaction`     | the server's `IN_TRANS` status flag       | COMMIT / ROLLBACK (flag cleared)  |
//! | `temporary_table` | `CREATE TEMPORARY TABLE`                  | `DROP TEMPORARY TABLE` of the last|
//! | `lock_tables`     | `LOCK TABLES`, `FLUSH TABLES .. READ LOCK` | `UNLOCK TABLES`, `BEGIN`         |
//! | `user_lock`       | `GET_LOCK()`                              | `RELEASE_LOCK()` of each, `RELEASE_ALL_LOCKS()` |
//! | `text_prepare`    | `PREPARE s FROM ..`                       | `DEALLOCATE PREPARE` of each      |
//! | `found_rows`      | `SELECT SQL_CALC_FOUND_ROWS ..`           | the next statement                |
//! | `cursor`          | COM_STMT_EXECUTE opening a cursor         | last row fetched, reset, close    |
//! | `long_data`       | COM_STMT_SEND_LONG_DATA                   | the execute, COM_STMT_RESET       |
//! | `user_variable`   | a user variable Causeway cannot replay    | the variable set to a plain value |
//! | `handler`         | `HANDLER t OPEN`                          | `HANDLER t CLOSE` of each         |
//!
//! Not pins: binary prepared statements (prepared again on the connection
//! a session borrows, and kept prepared there for the next session), user
//! variables (their values are read back after a statement assigns them and
//! replayed), `LAST_INSERT_ID()` (the connection's value is set before a
//! statement that reads it) and `ROW_COUNT()` (replaced by the session's
//! own value).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::classify::{
    handler, lock_calls, prepared_name, user_var_names, Class, Flags, HandlerOp, Kind,
};
use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::BackendConn;
use crate::pool::txn_pool::{Applied, GroupKey};
use crate::pool::Vars;
use crate::protocol::consts::{com, status};
use crate::protocol::reply::Expect;
use crate::router::Pin;

use super::relay::ReplyInfo;
use super::state::{is_string_type, quote_ident, string_literal, user_var_literal, LOGIN_VARS};
use super::{drain_reply, Session};

/// What the transaction-level pool needs to know about a session beyond
/// its [`super::state::SessionState`].
#[derive(Debug)]
pub struct PoolSession {
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

impl Default for PoolSession {
    fn default() -> Self {
        PoolSession {
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
    fn group_key(&mut self) -> GroupKey {
        let caps = self.caps & crate::protocol::consts::cap::MIRRORED_FROM_CLIENT;
        match &self.ps.key {
            Some(k) if k.is_for(&self.user, self.charset, caps) => k.clone(),
            _ => {
                let k = GroupKey::new(&self.user, self.charset, caps);
                self.ps.key = Some(k.clone());
                k
            }
        }
    }

    /// Borrows a connection to backend `index` from the transaction-level
    /// pool (waiting in its queue if all are in use): an idle one of the
    /// same user, character set and capabilities, else a new one. `fresh`
    /// skips the idle ones.
    pub(super) async fn borrow(&mut self, index: usize, fresh: bool) -> Result<(), Error> {
        let topo = self.ctx.cluster.topology();
        let Some(b) = topo.backends.get(index) else {
            return Err(Error::BackendUnavailable {
                backend: format!("#{index}"),
                address: String::new(),
                reason: "no such backend".into(),
            });
        };
        let cfg = self.ctx.cluster.config();
        // The session-level pool has no maximum: each session holds its
        // connections for as long as it is connected.
        let pool = if self.hold {
            self.ctx
                .session_conns
                .backend(&b.name, &b.address, UNLIMITED)
        } else {
            self.ctx.txn_pool.backend(
                &b.name,
                &b.address,
                cfg.pool.transaction_pool_max_per_backend,
            )
        };
        let lease = match self.leases[index].take() {
            Some(l) => l,
            None => {
                let timeout =
                    std::time::Duration::from_millis(cfg.pool.transaction_pool_queue_timeout_ms);
                match pool.lease(timeout).await {
                    Ok(l) => {
                        if l.waited {
                            self.ctx.metrics.backend(
                                m::BackendCounter::TxnPoolWaits,
                                index,
                                &b.name,
                            );
                        }
                        l
                    }
                    Err(e) => {
                        if matches!(e, Error::PoolTimeout { .. }) {
                            self.ctx.metrics.backend(
                                m::BackendCounter::TxnPoolTimeouts,
                                index,
                                &b.name,
                            );
                        }
                        return Err(e);
                    }
                }
            }
        };
        let key = self.group_key();
        let idle = if fresh {
            None
        } else {
            lease.take_idle(&key, self.database.as_deref())
        };
        if self.hold {
            if let Some(c) = &idle {
                self.ctx
                    .metrics
                    .backend(m::BackendCounter::SessionPoolReuses, index, &c.backend);
            }
            self.ctx
                .metrics
                .session_pool_idle()
                .set(self.ctx.session_conns.idle_total() as f64);
        }
        let conn = match idle {
            Some(c) => c,
            None => {
                let ticket = lease.new_ticket();
                let params = self.connect_params(b);
                // The lease stays with the session until the command ends,
                // so a retry does not queue again.
                self.leases[index] = Some(lease);
                let mut conn = BackendConn::connect(&params).await?;
                self.ctx
                    .metrics
                    .backend(m::BackendCounter::Connects, index, &b.name);
                let baseline = login_values(&mut conn).await?;
                let applied = Applied {
                    database: self.database.clone(),
                    baseline,
                    ..Applied::default()
                };
                let Some(lease) = self.leases[index].take() else {
                    return Err(Error::ShuttingDown);
                };
                lease.adopt(&mut conn, key, applied, ticket);
                self.leases[index] = Some(lease);
                self.backends[index] = Some(conn);
                return Ok(());
            }
        };
        self.leases[index] = Some(lease);
        self.backends[index] = Some(conn);
        Ok(())
    }

    /// Brings the borrowed connection for backend `index` to the session's
    /// database, variables and user variables, in one round trip. Any
    /// failure leaves the connection out of the pool; a statement the
    /// server refused is tried once more on a new connection.
    pub(super) async fn sync_pooled(&mut self, index: usize) -> Result<(), Error> {
        let mut fresh = false;
        loop {
            if self.backends[index].is_none() {
                self.borrow(index, fresh).await?;
            }
            match self.bring_to_state(index).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.backends[index] = None;
                    // A pinned connection's state is not on a new one.
                    let held = self.held_state(index).is_some();
                    if fresh || held || !matches!(e, Error::Server(_)) {
                        return Err(e);
                    }
                    tracing::warn!(session = self.id, error = %e,
                        "a pooled connection could not take the session's state; opening a new one");
                    fresh = true;
                }
            }
        }
    }

    async fn bring_to_state(&mut self, index: usize) -> Result<(), Error> {
        let primary = index == 0;
        // A session that generated no id yet reads 0, as on a new connection.
        let lid = self
            .ps
            .wants_last_insert_id
            .then(|| self.ps.last_insert_id.unwrap_or(0));
        let Some(conn) = self.backends[index].as_mut() else {
            return Err(Error::ShuttingDown);
        };
        let Some(p) = conn.pooled.as_mut() else {
            return Ok(());
        };
        let set = self
            .state
            .pooled_set(&p.applied, primary, &self.ps.user_values, lid);
        let init_db = self
            .database
            .as_ref()
            .filter(|db| p.applied.database.as_ref() != Some(*db))
            .map(|db| {
                let mut v = vec![com::INIT_DB];
                v.extend_from_slice(db.as_bytes());
                v
            });
        let set = set.map(|sql| {
            let mut v = vec![com::QUERY];
            v.extend_from_slice(sql.as_bytes());
            v
        });
        let login_multi = self.caps & crate::protocol::consts::cap::MULTI_STATEMENTS != 0;
        let want_multi = self.ps.multi_statements.unwrap_or(login_multi);
        let option = (p.applied.multi_statements.unwrap_or(login_multi) != want_multi).then(|| {
            let v: u16 = if want_multi { 0 } else { 1 };
            let mut p = vec![com::SET_OPTION];
            p.extend_from_slice(&v.to_le_bytes());
            p
        });
        let cmds: Vec<&[u8]> = init_db
            .iter()
            .chain(option.iter())
            .chain(set.iter())
            .map(Vec::as_slice)
            .collect();
        if !cmds.is_empty() {
            conn.send_commands(&cmds).await?;
            let mut first = None;
            for _ in 0..cmds.len() {
                if let Err(e) = drain_reply(conn, Expect::Single).await {
                    if !matches!(e, Error::Server(_)) {
                        return Err(e);
                    }
                    first.get_or_insert(e);
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
            // Nothing sent means the connection already matched.
            if let Some(p) = conn.pooled.as_mut() {
                p.applied.set_vars(self.state.shared_vars(primary));
                p.applied.set_user_vars(&self.ps.user_values);
                p.applied.multi_statements = Some(want_multi);
                if let Some(db) = &self.database {
                    p.applied.set_database(db);
                }
            }
        }
        Ok(())
    }

    /// COM_SET_OPTION with the transaction pool: run on a borrowed primary
    /// connection, then remembered and repeated on any other.
    pub(super) async fn set_option_pooled(&mut self, option: u16, raw: &[u8]) -> super::Flow {
        let flow = self.run(0, raw, Expect::Single, None, None, None).await;
        let ok = self.backends[0].is_some();
        if ok && option <= 1 {
            let multi = option == 0;
            self.ps.multi_statements = Some(multi);
            if let Some(p) = self.backends[0].as_mut().and_then(|c| c.pooled.as_mut()) {
                p.applied.multi_statements = Some(multi);
            }
        }
        flow
    }

    /// Why backend connection `index` must stay with the session, if it must.
    pub(super) fn pin_for(&self, index: usize) -> Option<Pin> {
        let conn = self.backends.get(index)?.as_ref()?;
        if conn.in_transaction() {
            return Some(Pin::Transaction);
        }
        if let Some(held) = self.held_state(index) {
            return Some(held);
        }
        if self.ps.diag_pending && self.ps.diag_backend == Some(index) {
            return Some(Pin::Diagnostics);
        }
        if index != 0 {
            None
        } else if self.ps.found_rows {
            Some(Pin::FoundRows)
        } else if !self.ps.unreplayable.is_empty() || self.ps.hidden_vars {
            Some(Pin::UserVariable)
        } else {
            None
        }
    }

    /// After every command: unpinned connections go back to the pool.
    pub(super) fn release_unpinned(&mut self) {
        let mut pin = None;
        for i in 0..self.backends.len() {
            if self.backends[i].is_some() {
                if let Some(reason) = self.pin_for(i) {
                    pin.get_or_insert(reason);
                    continue;
                }
                let conn = self.backends[i].take();
                let lease = self.leases[i].take();
                if let (Some(conn), Some(lease)) = (conn, lease) {
                    lease.give_back(conn);
                }
            } else if self.leases[i].is_some() {
                self.leases[i] = None;
            }
        }
        self.publish_pin(pin);
    }

    /// Records that the connection to backend `index` has the session's
    /// state: it was brought to it before the statement that just ran
    /// there, and what that statement changed is now the session's. Other
    /// connections keep what they were last brought to (a connection the
    /// session held but did not use since it changed a variable does not
    /// have the change, and must not pass for having it).
    pub(super) fn mark_applied(&mut self, index: usize) {
        let Some(p) = self.backends[index]
            .as_mut()
            .and_then(|c| c.pooled.as_mut())
        else {
            return;
        };
        p.applied.set_vars(self.state.shared_vars(index == 0));
        p.applied.set_user_vars(&self.ps.user_values);
        if let Some(db) = &self.database {
            p.applied.set_database(db);
        }
    }

    /// Counts and shows a change of the session's pin.
    pub(super) fn publish_pin(&mut self, pin: Option<Pin>) {
        if pin == self.ps.published_pin {
            return;
        }
        match (self.ps.published_pin, pin) {
            (None, Some(r)) => {
                self.ctx.metrics.pin_label(r.label());
                self.ctx.metrics.pinned_sessions().increment(1.0);
            }
            (Some(_), None) => self.ctx.metrics.pinned_sessions().decrement(1.0),
            (Some(_), Some(r)) => self.ctx.metrics.pin_label(r.label()),
            (None, None) => {}
        }
        self.ps.published_pin = pin;
    }

    /// At the end of the session, its connections go back to the pool. One
    /// that holds state a difference cannot undo (a transaction, temporary
    /// tables, locks, text prepares, a cursor: anything that pins) is reset
    /// first (`COM_RESET_CONNECTION`), or closed if that fails. Nothing goes
    /// back while Causeway shuts down.
    pub(super) async fn end_pooled(&mut self) {
        let shutting_down = *self.ctx.shutdown.borrow();
        let max_idle = self
            .hold
            .then(|| self.ctx.cluster.config().pool.session_pool_max_idle);
        for i in 0..self.backends.len() {
            // Warnings left on a connection need no reset: the next session
            // that asks for them clears them first.
            let pinned = self.pin_for(i).is_some_and(|r| r != Pin::Diagnostics);
            let (Some(mut conn), Some(lease)) = (self.backends[i].take(), self.leases[i].take())
            else {
                continue;
            };
            if !self.tp || shutting_down || conn.pooled.is_none() {
                continue;
            }
            if pinned {
                let db = self.database.clone();
                if conn.reset(db.as_deref()).await.is_err() {
                    continue;
                }
                if let Some(p) = conn.pooled.as_mut() {
                    let baseline = std::mem::take(&mut p.applied.baseline);
                    p.applied = Applied {
                        database: db,
                        baseline,
                        multi_statements: p.applied.multi_statements,
                        ..Applied::default()
                    };
                }
            }
            lease.give_back_capped(conn, max_idle);
        }
        self.backends.iter_mut().for_each(|b| *b = None);
        self.leases.iter_mut().for_each(|l| *l = None);
        if self.hold {
            self.ctx
                .metrics
                .session_pool_idle()
                .set(self.ctx.session_conns.idle_total() as f64);
        }
        self.publish_pin(None);
    }

    /// The session's `ROW_COUNT()` after a statement, whichever backend
    /// ran it (every session needs it: its next statement may run on
    /// another backend connection).
    pub(super) fn learn_row_count(&mut self, info: &ReplyInfo) {
        self.ps.row_count = if info.error || info.result_set {
            -1
        } else {
            info.affected_rows as i64
        };
    }

    /// Learns what a statement left on the connection that the pool must
    /// carry or pin: generated ids, row counts, text prepares, pending
    /// `FOUND_ROWS()`.
    pub(super) fn learn_pooled(&mut self, info: &ReplyInfo, stmt: Option<(&Class, &[u8])>) {
        if info.last_insert_id != 0 {
            self.ps.last_insert_id = Some(info.last_insert_id);
        }
        self.ps.wants_last_insert_id = false;
        let Some((class, sql)) = stmt else { return };
        self.ps.found_rows = !info.error && class.flags.contains(Flags::CALC_FOUND_ROWS);
        if info.error {
            return;
        }
        match class.kind {
            Kind::Prepare => {
                if let Some(name) = prepared_name(sql) {
                    self.ps.text_prepares.insert(name);
                }
            }
            Kind::Deallocate => {
                if let Some(name) = prepared_name(sql) {
                    self.ps.text_prepares.remove(&name);
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
                self.ps.handlers.insert(name);
            }
            Some(HandlerOp::Close(name)) => {
                self.ps.handlers.remove(&name);
            }
            None => {}
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
        let Some(conn) = self.backends.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let table = match conn.query_table(&select).await {
            Ok(t) => t,
            Err(e) => {
                if !matches!(e, Error::Server(_)) {
                    self.backends[index] = None;
                }
                self.ps.unreplayable.extend(names);
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
                    self.ps.unreplayable.remove(&name);
                    Arc::make_mut(&mut self.ps.user_values).remove(&name);
                }
                Some(lit) => {
                    self.ps.unreplayable.remove(&name);
                    Arc::make_mut(&mut self.ps.user_values).insert(name, lit);
                }
                None => {
                    Arc::make_mut(&mut self.ps.user_values).remove(&name);
                    self.ps.unreplayable.insert(name);
                }
            }
        }
        if let Some(p) = self.backends[index]
            .as_mut()
            .and_then(|c| c.pooled.as_mut())
        {
            p.applied.set_user_vars(&self.ps.user_values);
        }
    }

    /// Forgets the session's pool state (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub(super) fn reset_pooled(&mut self) {
        let published = self.ps.published_pin;
        self.ps = PoolSession {
            published_pin: published,
            ..PoolSession::default()
        };
    }

    /// COM_RESET_CONNECTION with the transaction pool: a held connection
    /// is reset (it is pinned, so it holds the session's state); the rest
    /// of the session's state lives in Causeway and is simply forgotten.
    pub(super) async fn reset_pooled_connections(&mut self) -> Result<(), Error> {
        let db = self.database.clone();
        for i in 0..self.backends.len() {
            let Some(conn) = self.backends[i].as_mut() else {
                continue;
            };
            match conn.reset(db.as_deref()).await {
                Ok(()) => {
                    if let Some(p) = conn.pooled.as_mut() {
                        let baseline = std::mem::take(&mut p.applied.baseline);
                        p.applied = Applied {
                            database: db.clone(),
                            baseline,
                            ..Applied::default()
                        };
                    }
                }
                Err(_) => self.backends[i] = None,
            }
        }
        Ok(())
    }

    /// Updates the user-level locks the session holds after a statement
    /// that called a lock function succeeded.
    pub(super) fn learn_locks(&mut self, sql: &[u8]) {
        let calls = lock_calls(sql);
        if calls.release_all {
            self.ps.locks.clear();
            self.ps.opaque_locks = false;
        }
        for name in calls.release {
            if let Some(n) = self.ps.locks.get_mut(&name) {
                *n -= 1;
                if *n == 0 {
                    self.ps.locks.remove(&name);
                }
            }
        }
        for name in calls.get {
            *self.ps.locks.entry(name).or_insert(0) += 1;
        }
        self.ps.opaque_locks |= calls.opaque;
        self.state.user_locks = self.ps.opaque_locks || !self.ps.locks.is_empty();
    }

    /// The cursor pin ends when the server says the last row was sent.
    pub(super) fn learn_fetch(&mut self, index: usize) {
        let done = self.backends[index]
            .as_ref()
            .is_none_or(|c| c.status & status::LAST_ROW_SENT != 0);
        if done {
            self.ps.cursor = None;
        }
    }
}

/// Permits of the session-level pool's queue: never the limit.
const UNLIMITED: usize = 1 << 24;

/// The values the login gave the variables that `DEFAULT` would not
/// restore.
async fn login_values(conn: &mut BackendConn) -> Result<BTreeMap<String, String>, Error> {
    let sql = format!(
        "SELECT {}",
        LOGIN_VARS
            .iter()
            .map(|v| format!("@@session.{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let t = conn.query_table(&sql).await?;
    let mut out = BTreeMap::new();
    if let Some(row) = t.rows.first() {
        for (name, v) in LOGIN_VARS.iter().zip(row) {
            out.insert(name.to_string(), v.clone().unwrap_or_default());
        }
    }
    Ok(out)
}
