//! Bringing a backend connection to the session's state before a
//! statement runs on it (database, session variables, user variables,
//! the multi-statements option), by difference from what it was brought
//! to last time.

use super::{drain_watched, Session};
use crate::error::Error;
use crate::protocol::consts::com;
use crate::protocol::reply::Expect;

impl Session {
    /// Brings backend `index` to the session's database, variables and
    /// replayable user variables. Several statements may be needed; each
    /// reply is read before the next is sent.
    pub(super) async fn sync(&mut self, index: usize) -> Result<(), Error> {
        if self.conns.pooled {
            return self.sync_pooled(index).await;
        }
        // A new connection (first use, or one lost before) starts from
        // nothing: open it first, so what it must be brought to is
        // measured from there, not from the lost one.
        // A connection the server closed while it sat idle (a restart, a
        // kill, `wait_timeout`) is replaced before the statement is sent,
        // unless it held what cannot move: then the statement fails as on
        // a lost connection (it did not run).
        if let Some(slot) = self.conns.open.get_mut(index) {
            if slot.as_mut().is_some_and(|c| !c.usable_after_idle()) {
                let backend = slot.take().map(|c| c.backend).unwrap_or_default();
                tracing::info!(session = self.id, %backend,
                    "backend connection closed while idle; opening another");
                if self.held_state(index).is_some() {
                    self.txn.replay.current_safe = true;
                    return Err(Error::BackendLost {
                        backend,
                        reason: "the backend closed the connection while it was idle".into(),
                    });
                }
            }
        }
        let fresh = self.conns.open.get(index).is_some_and(Option::is_none);
        if fresh {
            self.backend(index).await?;
        }
        // Compared in place, not cloned: an in-step connection (the usual
        // case) costs no allocation.
        let none = Synced::default();
        let synced = self.conns.synced.get(index).unwrap_or(&none);
        let db_differs = synced.database != self.database;
        let (synced_version, synced_user_vars) = (synced.version, synced.user_vars);
        let set_option = self.set_option_for(synced);
        let mut pre: Vec<Vec<u8>> = Vec::new();
        if let Some(db) = self.database.as_deref().filter(|_| db_differs) {
            let mut p = vec![com::INIT_DB];
            p.extend_from_slice(db.as_bytes());
            pre.push(p);
        }
        if synced_version < self.state.version {
            if let Some(set) = self.state.sync_statement(self.is_primary(index)) {
                let mut p = vec![com::QUERY];
                p.extend_from_slice(set.as_bytes());
                pre.push(p);
            }
        }
        if let Some(p) = set_option {
            pre.push(p);
        }
        // `LAST_INSERT_ID()` is the connection's: a new primary connection
        // (after a restart or a change of primary) gets the session's.
        if let Some(id) = self
            .held
            .last_insert_id
            .filter(|_| fresh && self.is_primary(index))
        {
            let mut p = vec![com::QUERY];
            p.extend_from_slice(format!("SET @@session.last_insert_id = {id}").as_bytes());
            pre.push(p);
        }
        for s in self.state.user_var_sets.iter().skip(synced_user_vars) {
            let mut p = vec![com::QUERY];
            p.extend_from_slice(s);
            pre.push(p);
        }
        if !pre.is_empty() {
            let cluster = self.ctx.cluster.clone();
            let silence = super::relay::Silence::of(&cluster, index);
            let conn = self.backend(index).await?;
            for p in &pre {
                conn.send_command(p).await?;
                drain_watched(conn, Expect::Single, silence).await?;
            }
        }
        if let Some(s) = self.conns.synced.get_mut(index) {
            s.version = self.state.version;
            if db_differs {
                s.database.clone_from(&self.database);
            }
            s.user_vars = self.state.user_var_sets.len();
            s.multi_statements = self.held.multi_statements.or(s.multi_statements);
        }
        Ok(())
    }
}

/// What a backend connection has been brought to.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pub version: u64,
    pub database: Option<String>,
    pub user_vars: usize,
    /// Multi-statements as last set by COM_SET_OPTION on the connection
    /// (`None`: as the login's capabilities said).
    pub multi_statements: Option<bool>,
}
