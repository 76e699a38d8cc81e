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

use std::collections::BTreeMap;

use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::BackendConn;
use crate::pool::{Applied, GroupKey};
use crate::protocol::consts::com;
use crate::protocol::reply::Expect;
use crate::router::Pin;

use super::held::Held;
use super::state::LOGIN_VARS;
use super::Session;

impl Session {
    fn group_key(&mut self) -> GroupKey {
        let caps = u64::from(self.client.caps & crate::protocol::consts::cap::MIRRORED_FROM_CLIENT)
            | u64::from(self.client.ext_caps) << 32;
        match &self.held.key {
            Some(k) if k.is_for(&self.account.user, self.client.charset, caps) => k.clone(),
            _ => {
                let k = GroupKey::new(&self.account.user, self.client.charset, caps);
                self.held.key = Some(k.clone());
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
        let pool = if self.conns.keep {
            self.ctx
                .session_pool
                .backend(&b.name, &b.address, UNLIMITED)
        } else {
            self.ctx.txn_pool.backend(
                &b.name,
                &b.address,
                cfg.pool.transaction_pool_max_per_backend,
            )
        };
        let lease = match self.conns.leases[index].take() {
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
        if self.conns.keep {
            if let Some(c) = &idle {
                self.ctx
                    .metrics
                    .backend(m::BackendCounter::SessionPoolReuses, index, &c.backend);
            }
            self.ctx
                .metrics
                .session_pool_idle()
                .set(self.ctx.session_pool.idle_total() as f64);
        }
        let conn = match idle {
            Some(c) => c,
            None => {
                let ticket = lease.new_ticket();
                let params = self.connect_params(b);
                // The lease stays with the session until the command ends,
                // so a retry does not queue again.
                self.conns.leases[index] = Some(lease);
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
                let Some(lease) = self.conns.leases[index].take() else {
                    return Err(Error::ShuttingDown);
                };
                lease.adopt(&mut conn, key, applied, ticket);
                self.conns.leases[index] = Some(lease);
                self.conns.open[index] = Some(conn);
                return Ok(());
            }
        };
        self.conns.leases[index] = Some(lease);
        self.conns.open[index] = Some(conn);
        Ok(())
    }

    /// Brings the borrowed connection for backend `index` to the session's
    /// database, variables and user variables, in one round trip. Any
    /// failure leaves the connection out of the pool; a statement the
    /// server refused is tried once more on a new connection.
    pub(super) async fn sync_pooled(&mut self, index: usize) -> Result<(), Error> {
        let mut fresh = false;
        loop {
            if self.conns.open[index].is_none() {
                self.borrow(index, fresh).await?;
            }
            match self.bring_to_state(index).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.conns.open[index] = None;
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
        let primary = self.is_primary(index);
        // A session that generated no id yet reads 0, as on a new connection.
        let lid = self
            .held
            .wants_last_insert_id
            .then(|| self.held.last_insert_id.unwrap_or(0));
        let cluster = self.ctx.cluster.clone();
        let silence = super::relay::Silence::of(&cluster, index);
        let Some(conn) = self.conns.open[index].as_mut() else {
            return Err(Error::ShuttingDown);
        };
        let Some(p) = conn.pooled.as_mut() else {
            return Ok(());
        };
        let set = self
            .state
            .pooled_set(&p.applied, primary, &self.held.user_values, lid);
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
        let login_multi = self.client.caps & crate::protocol::consts::cap::MULTI_STATEMENTS != 0;
        let want_multi = self.held.multi_statements.unwrap_or(login_multi);
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
                if let Err(e) = super::drain_watched(conn, Expect::Single, silence).await {
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
                p.applied.set_user_vars(&self.held.user_values);
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
        let primary = self.primary;
        let flow = self
            .run(primary, raw, Expect::Single, None, None, None)
            .await;
        let primary = self.primary;
        let ok = self.conns.open[primary].is_some();
        if ok && option <= 1 {
            let multi = option == 0;
            self.held.multi_statements = Some(multi);
            if let Some(p) = self.conns.open[primary]
                .as_mut()
                .and_then(|c| c.pooled.as_mut())
            {
                p.applied.multi_statements = Some(multi);
            }
        }
        flow
    }

    /// After every command: unpinned connections go back to the pool.
    pub(super) fn release_unpinned(&mut self) {
        let mut pin = None;
        for i in 0..self.conns.open.len() {
            if self.conns.open[i].is_some() {
                if let Some(reason) = self.pin_for(i) {
                    pin.get_or_insert(reason);
                    continue;
                }
                let conn = self.conns.open[i].take();
                let lease = self.conns.leases[i].take();
                if let (Some(conn), Some(lease)) = (conn, lease) {
                    lease.give_back(conn);
                }
            } else if self.conns.leases[i].is_some() {
                self.conns.leases[i] = None;
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
        let primary = self.is_primary(index);
        let Some(p) = self.conns.open[index]
            .as_mut()
            .and_then(|c| c.pooled.as_mut())
        else {
            return;
        };
        p.applied.set_vars(self.state.shared_vars(primary));
        p.applied.set_user_vars(&self.held.user_values);
        if let Some(db) = &self.database {
            p.applied.set_database(db);
        }
    }

    /// At the end of the session, its connections go back to the pool. One
    /// that holds state a difference cannot undo (a transaction, temporary
    /// tables, locks, text prepares, a cursor: anything that pins) is reset
    /// first (`COM_RESET_CONNECTION`), or closed if that fails. Nothing goes
    /// back while Causeway shuts down.
    pub(super) async fn end_pooled(&mut self) {
        let shutting_down = *self.ctx.shutdown.borrow();
        let max_idle = self
            .conns
            .keep
            .then(|| self.ctx.cluster.config().pool.session_pool_max_idle);
        for i in 0..self.conns.open.len() {
            // Warnings left on a connection need no reset: the next session
            // that asks for them clears them first.
            let pinned = self.pin_for(i).is_some_and(|r| r != Pin::Diagnostics);
            let (Some(mut conn), Some(lease)) =
                (self.conns.open[i].take(), self.conns.leases[i].take())
            else {
                continue;
            };
            if !self.conns.pooled || shutting_down || conn.pooled.is_none() {
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
        self.conns.open.iter_mut().for_each(|b| *b = None);
        self.conns.leases.iter_mut().for_each(|l| *l = None);
        if self.conns.keep {
            self.ctx
                .metrics
                .session_pool_idle()
                .set(self.ctx.session_pool.idle_total() as f64);
        }
        self.publish_pin(None);
    }

    /// Forgets the session's pool state (COM_RESET_CONNECTION, COM_CHANGE_USER).
    pub(super) fn reset_pooled(&mut self) {
        let published = self.held.published_pin;
        self.held = Held {
            published_pin: published,
            ..Held::default()
        };
    }

    /// COM_RESET_CONNECTION with the transaction pool: a held connection
    /// is reset (it is pinned, so it holds the session's state); the rest
    /// of the session's state lives in Causeway and is simply forgotten.
    pub(super) async fn reset_pooled_connections(&mut self) -> Result<(), Error> {
        let db = self.database.clone();
        for i in 0..self.conns.open.len() {
            let Some(conn) = self.conns.open[i].as_mut() else {
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
                Err(_) => self.conns.open[i] = None,
            }
        }
        Ok(())
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
