//! The session's side of the session-level pool: a new backend connection
//! is first looked for among those earlier sessions of the same user left,
//! and the session's own clean connections go back when it ends.

use crate::admin::metrics as m;
use crate::pool::conn::BackendConn;
use crate::pool::session_pool::{Key as PoolKey, SessionPool};

use super::Session;

impl Session {
    /// The session-level pool, if it serves this session's user.
    fn pool(&self) -> Option<&SessionPool> {
        self.ctx
            .cluster
            .config()
            .session_pool_for(&self.user)
            .then_some(&self.ctx.pool)
    }

    fn pool_key(&self, backend: usize, database: Option<String>) -> PoolKey {
        PoolKey {
            backend,
            user: self.user.clone(),
            database,
            charset: self.charset,
            capabilities: self.caps,
        }
    }

    /// A pooled connection for backend `index`, reset and at the session's
    /// database, if the pool has one.
    pub(super) async fn take_pooled(&mut self, index: usize) -> Option<BackendConn> {
        let pool = self.pool()?;
        let key = self.pool_key(index, self.database.clone());
        let conn = pool.take(&key).await?;
        metrics::gauge!(m::SESSION_POOL_IDLE).set(pool.idle_count() as f64);
        metrics::counter!(m::SESSION_POOL_REUSES, "backend" => conn.backend.clone()).increment(1);
        Some(conn)
    }

    /// At the end of a session: its clean backend connections go to the
    /// session-level pool (unless Causeway is shutting down).
    pub(super) fn return_to_pool(&mut self) {
        let ctx = self.ctx.clone();
        let pool = &ctx.pool;
        if !ctx.cluster.config().session_pool_for(&self.user) {
            return;
        }
        if *self.ctx.shutdown.borrow() {
            return;
        }
        for i in 0..self.backends.len() {
            if let Some(conn) = self.backends[i].take() {
                let db = self.synced.get(i).and_then(|s| s.database.clone());
                pool.put(self.pool_key(i, db), conn);
            }
        }
        metrics::gauge!(m::SESSION_POOL_IDLE).set(pool.idle_count() as f64);
    }
}
