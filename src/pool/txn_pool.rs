//! The transaction-level pool: client sessions hold no backend connection
//! between transactions. A session borrows one for an autocommit statement
//! or a transaction and gives it back when the server's status flags say
//! the transaction is over (and nothing pins the session to it).
//!
//! Per backend there is a fair queue (a FIFO semaphore) of at most
//! `max_per_backend` borrowers, and at most that many connections open.
//! Idle connections are kept per [`GroupKey`] (user, character set, client
//! capabilities: what a connection cannot change after login). A borrower
//! that finds none of its kind while the backend is at its maximum closes
//! the oldest idle connection of another kind and opens its own.
//!
//! Each pooled connection carries what it has been brought to
//! ([`Applied`]: session variables, database, user variables, prepared
//! statements); the session diffs that against its own state before it
//! runs anything, so nothing of one client's session is seen by another.
//! A connection the server closed while idle (`wait_timeout`, `KILL`) is
//! found out before it is handed out and dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::BackendConn;
use crate::error::Error;

/// What a connection cannot change after it logged in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub user: String,
    pub charset: u16,
    /// The client capabilities the connection mirrors.
    pub capabilities: u32,
}

/// The session state a pooled connection has been brought to.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Session variables that differ from the connection's login state,
    /// as the server reported them.
    pub vars: BTreeMap<String, String>,
    pub database: Option<String>,
    /// User variables set on the connection, as SQL literals.
    pub user_vars: BTreeMap<String, String>,
    /// Values the login set for variables whose `DEFAULT` is something
    /// else (the character sets of the handshake).
    pub baseline: BTreeMap<String, String>,
    /// Multi-statements as COM_SET_OPTION last set them (`None`: as the
    /// login's capabilities say).
    pub multi_statements: Option<bool>,
    /// Statements prepared on the connection: the COM_STMT_PREPARE payload
    /// and the server's statement id, oldest first.
    pub stmts: VecDeque<(Vec<u8>, u32)>,
}

/// Most statements kept prepared on one pooled connection; the least
/// recently used is closed when another is needed. Kept small so that many
/// pooled connections stay well under the server's
/// `max_prepared_stmt_count` (16,382 by default).
pub const MAX_STMTS_PER_CONN: usize = 64;

impl Applied {
    /// The server id of a statement prepared with this payload.
    pub fn stmt(&mut self, prepare: &[u8]) -> Option<u32> {
        let i = self.stmts.iter().position(|(p, _)| p == prepare)?;
        // Most recently used last.
        let e = self.stmts.remove(i)?;
        let id = e.1;
        self.stmts.push_back(e);
        Some(id)
    }

    /// Records a statement prepared on the connection; returns the ids of
    /// statements it displaces (to close).
    pub fn add_stmt(&mut self, prepare: Vec<u8>, id: u32) -> Vec<u32> {
        let mut closed = Vec::new();
        if let Some(i) = self.stmts.iter().position(|(p, _)| *p == prepare) {
            if let Some((_, old)) = self.stmts.remove(i) {
                closed.push(old);
            }
        }
        while self.stmts.len() >= MAX_STMTS_PER_CONN {
            match self.stmts.pop_front() {
                Some((_, old)) => closed.push(old),
                None => break,
            }
        }
        self.stmts.push_back((prepare, id));
        closed
    }
}

/// Counts a connection as open until it is dropped, wherever that happens.
#[derive(Debug)]
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a connection of the transaction-level pool carries.
#[derive(Debug)]
pub struct Pooled {
    pub key: GroupKey,
    pub applied: Applied,
    _ticket: Ticket,
}

struct IdleConn {
    conn: BackendConn,
    since: Instant,
}

/// The pool of one backend.
pub struct BackendPool {
    pub name: String,
    /// Borrowers, first come first served.
    queue: Arc<Semaphore>,
    /// The number of permits `queue` was given.
    max: Mutex<usize>,
    /// Connections open (idle or borrowed).
    open: Arc<AtomicUsize>,
    idle: Mutex<VecDeque<IdleConn>>,
}

/// The right to use one connection of a backend; holding it is what a
/// borrower waits for in the queue.
pub struct Lease {
    pool: Arc<BackendPool>,
    /// The queue was full when it was asked for.
    pub waited: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.pool.name)
    }
}

/// Every backend's pool, by backend name and address (a reload that keeps
/// a backend keeps its pool).
#[derive(Default)]
pub struct TxnPool {
    backends: Mutex<HashMap<(String, String), Arc<BackendPool>>>,
}

impl TxnPool {
    pub fn new() -> TxnPool {
        TxnPool::default()
    }

    /// The pool of backend `name` at `address`, sized to `max` connections.
    pub fn backend(&self, name: &str, address: &str, max: usize) -> Arc<BackendPool> {
        let mut m = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        let p = m
            .entry((name.to_string(), address.to_string()))
            .or_insert_with(|| {
                Arc::new(BackendPool {
                    name: name.to_string(),
                    queue: Arc::new(Semaphore::new(max)),
                    max: Mutex::new(max),
                    open: Arc::new(AtomicUsize::new(0)),
                    idle: Mutex::new(VecDeque::new()),
                })
            })
            .clone();
        drop(m);
        p.resize(max);
        p
    }

    /// (backend, idle, busy) for every backend's pool.
    pub fn usage(&self) -> Vec<(String, usize, usize)> {
        let m = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        m.values()
            .map(|p| {
                let idle = p.idle_count();
                let open = p.open.load(Ordering::Acquire);
                (p.name.clone(), idle, open.saturating_sub(idle))
            })
            .collect()
    }

    /// Idle connections over every backend.
    pub fn idle_total(&self) -> usize {
        let m = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        m.values().map(|p| p.idle_count()).sum()
    }

    /// Closes idle connections unused for longer than `keep`.
    pub fn sweep(&self, keep: Duration) {
        let pools: Vec<_> = {
            let m = self.backends.lock().unwrap_or_else(|e| e.into_inner());
            m.values().cloned().collect()
        };
        for p in pools {
            let expired: Vec<IdleConn> = {
                let mut idle = p.idle.lock().unwrap_or_else(|e| e.into_inner());
                let mut kept = VecDeque::with_capacity(idle.len());
                let mut gone = Vec::new();
                for i in idle.drain(..) {
                    if i.since.elapsed() >= keep {
                        gone.push(i);
                    } else {
                        kept.push_back(i);
                    }
                }
                *idle = kept;
                gone
            };
            drop(expired);
        }
    }
}

impl BackendPool {
    /// Follows a new configured maximum.
    fn resize(&self, max: usize) {
        let mut cur = self.max.lock().unwrap_or_else(|e| e.into_inner());
        if max > *cur {
            self.queue.add_permits(max - *cur);
            *cur = max;
        } else if max < *cur {
            // Permits in use come back and are then forgotten, up to the
            // difference; `forget_permits` takes what is available now.
            let gone = self.queue.forget_permits(*cur - max);
            *cur -= gone;
        }
    }

    pub fn max(&self) -> usize {
        *self.max.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits in the queue, at most `timeout`, for the right to use a
    /// connection. The lease says whether it had to wait.
    pub async fn lease(self: &Arc<Self>, timeout: Duration) -> Result<Lease, Error> {
        let (permit, waited) = match self.queue.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => {
                let acquire = self.queue.clone().acquire_owned();
                match tokio::time::timeout(timeout, acquire).await {
                    Ok(Ok(p)) => (p, true),
                    Ok(Err(_)) => return Err(Error::ShuttingDown),
                    Err(_) => {
                        return Err(Error::PoolTimeout {
                            backend: self.name.clone(),
                            waited_ms: timeout.as_millis() as u64,
                            max: self.max(),
                        })
                    }
                }
            }
        };
        Ok(Lease {
            pool: self.clone(),
            waited,
            _permit: permit,
        })
    }
}

impl Lease {
    pub fn backend(&self) -> &str {
        &self.pool.name
    }

    /// An idle connection of kind `key`, preferably at `database`, that is
    /// still open. A session without a database only takes connections
    /// that have none (a connection cannot leave its database).
    pub fn take_idle(&self, key: &GroupKey, database: Option<&str>) -> Option<BackendConn> {
        loop {
            let found = {
                let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                let fits = |i: &IdleConn, exact: bool| {
                    let Some(p) = i.conn.pooled.as_ref() else {
                        return false;
                    };
                    if p.key != *key {
                        return false;
                    }
                    let db = p.applied.database.as_deref();
                    if exact {
                        db == database
                    } else {
                        database.is_some() || db.is_none()
                    }
                };
                // Newest first: the most recently used is the warmest.
                let at = (0..idle.len())
                    .rev()
                    .find(|&i| fits(&idle[i], true))
                    .or_else(|| (0..idle.len()).rev().find(|&i| fits(&idle[i], false)));
                at.and_then(|i| idle.remove(i))
            };
            let mut c = found?.conn;
            if c.still_open() {
                return Some(c);
            }
            tracing::debug!(backend = %self.pool.name, thread = c.thread_id,
                "pooled connection was closed by the server; dropped");
            c.pooled = None;
        }
    }

    /// Room for one more connection: a ticket that counts it as open. At
    /// the backend's maximum, the oldest idle connection (of another kind:
    /// there is none of ours) is closed to make room.
    pub fn new_ticket(&self) -> Ticket {
        let max = self.pool.max();
        if self.pool.open.load(Ordering::Acquire) >= max {
            let oldest = {
                let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.pop_front()
            };
            drop(oldest);
        }
        self.pool.open.fetch_add(1, Ordering::AcqRel);
        Ticket(self.pool.open.clone())
    }

    /// Marks `conn`, opened under `ticket`, as a connection of this pool.
    pub fn adopt(&self, conn: &mut BackendConn, key: GroupKey, applied: Applied, ticket: Ticket) {
        conn.pooled = Some(Box::new(Pooled {
            key,
            applied,
            _ticket: ticket,
        }));
    }

    /// Gives `conn` back for others (unless it is in a transaction or not
    /// a pooled connection: then it is closed). The lease ends with it.
    pub fn give_back(self, conn: BackendConn) {
        self.give_back_capped(conn, None);
    }

    /// Like [`Lease::give_back`], keeping at most `max_idle` idle
    /// connections of the same kind (the oldest goes).
    pub fn give_back_capped(self, conn: BackendConn, max_idle: Option<usize>) {
        let Some(key) = conn.pooled.as_ref().map(|p| p.key.clone()) else {
            return;
        };
        if conn.in_transaction() || conn.stream.buffered() > 0 {
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(max) = max_idle {
            let same: Vec<usize> = (0..idle.len())
                .filter(|&i| idle[i].conn.pooled.as_ref().is_some_and(|p| p.key == key))
                .collect();
            if same.len() >= max {
                let gone = same.first().and_then(|&i| idle.remove(i));
                drop(idle);
                drop(gone);
                if max == 0 {
                    return;
                }
                idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            }
        }
        idle.push_back(IdleConn {
            conn,
            since: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_cache_is_bounded_and_most_recent_last() {
        let mut a = Applied::default();
        for i in 0..MAX_STMTS_PER_CONN as u32 {
            assert!(a.add_stmt(format!("s{i}").into_bytes(), i).is_empty());
        }
        assert_eq!(a.stmt(b"s0"), Some(0));
        // s0 was used last: s1 is the oldest now.
        assert_eq!(a.add_stmt(b"new".to_vec(), 999), vec![1]);
        assert_eq!(a.stmt(b"s1"), None);
        assert_eq!(a.stmt(b"s0"), Some(0));
        // Preparing the same text again replaces the old statement.
        assert_eq!(a.add_stmt(b"new".to_vec(), 1000), vec![999]);
        assert_eq!(a.stmt(b"new"), Some(1000));
    }

    #[tokio::test]
    async fn the_queue_is_fair_and_times_out() {
        let pool = TxnPool::new();
        let b = pool.backend("primary", "x:1", 1);
        let first = b.lease(Duration::from_millis(50)).await.unwrap();
        let e = b.lease(Duration::from_millis(30)).await.unwrap_err();
        assert!(matches!(e, Error::PoolTimeout { max: 1, .. }), "{e}");
        // Waiters are served in arrival order, whoever polls first.
        use std::future::Future;
        use std::task::Poll;
        type Waiter = std::pin::Pin<Box<dyn Future<Output = Result<Lease, Error>>>>;
        let (b0, b1) = (b.clone(), b.clone());
        let mut w0: Waiter = Box::pin(async move { b0.lease(Duration::from_secs(5)).await });
        let mut w1: Waiter = Box::pin(async move { b1.lease(Duration::from_secs(5)).await });
        async fn pending(f: &mut Waiter) -> bool {
            std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_pending())).await
        }
        assert!(pending(&mut w0).await);
        assert!(pending(&mut w1).await);
        drop(first);
        assert!(
            pending(&mut w1).await,
            "the second waiter does not jump the queue"
        );
        let l0 = w0.await.unwrap();
        drop(l0);
        assert!(w1.await.is_ok());
    }

    #[tokio::test]
    async fn resizing_follows_the_configuration() {
        let pool = TxnPool::new();
        let b = pool.backend("r", "x:2", 1);
        let _one = b.lease(Duration::from_millis(10)).await.unwrap();
        let b = pool.backend("r", "x:2", 2);
        let _two = b.lease(Duration::from_millis(10)).await.unwrap();
        assert_eq!(b.max(), 2);
        assert!(b.lease(Duration::from_millis(10)).await.is_err());
    }
}
