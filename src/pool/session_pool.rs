//! The session-level pool: when a client disconnects, its clean, idle
//! backend connections are kept for a while, and a new session of the same
//! user (same backend, current database, character set and client
//! capabilities) takes one over instead of connecting and logging in again.
//! A connection is reset (`COM_RESET_CONNECTION`) before it is handed out,
//! so nothing of the previous client's session survives; one that fails the
//! reset (closed by the server while pooled, killed) is dropped, never
//! handed to a client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conn::BackendConn;

/// What must match for a pooled connection to serve a new session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub backend: usize,
    pub user: String,
    /// The connection's current database when it was pooled.
    pub database: Option<String>,
    pub charset: u8,
    /// The client capabilities the connection mirrors.
    pub capabilities: u32,
}

struct Idle {
    conn: BackendConn,
    since: Instant,
}

pub struct SessionPool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    keep: Duration,
    max_per_key: usize,
}

impl SessionPool {
    pub fn new(keep: Duration, max_per_key: usize) -> SessionPool {
        SessionPool {
            idle: Mutex::new(HashMap::new()),
            keep,
            max_per_key,
        }
    }

    /// Keeps `conn` for a later session with the same key. Connections in
    /// a transaction are closed instead.
    pub fn put(&self, key: Key, conn: BackendConn) {
        if conn.in_transaction() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(key).or_default();
        list.retain(|i| i.since.elapsed() < self.keep);
        if list.len() < self.max_per_key {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// A reset connection for `key`, if one is pooled and still works.
    pub async fn take(&self, key: &Key) -> Option<BackendConn> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let list = idle.get_mut(key)?;
                list.retain(|i| i.since.elapsed() < self.keep);
                let c = list.pop().map(|i| i.conn);
                if list.is_empty() {
                    idle.remove(key);
                }
                c?
            };
            let mut conn = candidate;
            if conn.reset(key.database.as_deref()).await.is_ok() {
                return Some(conn);
            }
        }
    }

    /// Connections kept now.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}
