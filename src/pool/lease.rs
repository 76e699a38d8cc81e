//! The pool of backend connections, one [`BackendPool`] per backend. Both
//! the transaction-level pool (client sessions hold no backend connection
//! between transactions: a session borrows one for an autocommit statement
//! or a transaction and gives it back when the server's status flags say
//! the transaction is over and nothing pins the session to it) and the
//! session-level pool (a session keeps its connections until it ends) are
//! instances of [`Pool`].
//!
//! Per backend there is a fair queue (a FIFO semaphore) of at most
//! `max_per_backend` borrowers, and at most that many connections open.
//! Idle connections are kept per [`GroupKey`] (user, character set, client
//! capabilities: what a connection cannot change after login). A borrower
//! that finds none of its kind while the backend is at its maximum closes
//! the oldest idle connection of another kind and opens its own.
//!
//! Nothing is shared by all borrowers: finding a backend's pool reads an
//! immutable list (published whole when a backend is added), and a borrow
//! of one backend touches only that backend's queue and idle list. A
//! borrow allocates nothing: the session makes its [`GroupKey`] once and
//! lends it by reference.
//!
//! Each pooled connection carries what it has been brought to
//! ([`Applied`]). A connection the server closed while idle
//! (`wait_timeout`, `KILL`) is found out before it is handed out and
//! dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::conn::BackendConn;
use crate::error::Error;

pub use super::applied::{Applied, MAX_STMTS_PER_CONN};

/// What a connection cannot change after it logged in. Made once per
/// session (the user is shared, not copied, by every connection of it).
#[derive(Debug, Clone, Eq)]
pub struct GroupKey {
    pub user: Arc<str>,
    pub charset: u16,
    /// The client capabilities the connection mirrors (MariaDB's extended
    /// ones in the high 32 bits).
    pub capabilities: u64,
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.charset == other.charset
            && self.capabilities == other.capabilities
            && (Arc::ptr_eq(&self.user, &other.user) || self.user == other.user)
    }
}

impl GroupKey {
    pub fn new(user: &str, charset: u16, capabilities: u64) -> GroupKey {
        GroupKey {
            user: Arc::from(user),
            charset,
            capabilities,
        }
    }

    /// Whether this is the key of `user` with `charset` and `capabilities`.
    pub fn is_for(&self, user: &str, charset: u16, capabilities: u64) -> bool {
        self.charset == charset && self.capabilities == capabilities && &*self.user == user
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

/// What a connection of the pool carries.
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
    address: String,
    /// Borrowers, first come first served. A [`Lease`] holds one permit.
    queue: Semaphore,
    /// The number of permits `queue` was given.
    max: AtomicUsize,
    /// Held while `max` and the permits are changed together.
    resizing: Mutex<()>,
    /// Connections open (idle or borrowed).
    open: Arc<AtomicUsize>,
    idle: Mutex<VecDeque<IdleConn>>,
}

/// The right to use one connection of a backend; holding it is what a
/// borrower waits for in the queue. Dropping it lets the next one in.
pub struct Lease {
    pool: Arc<BackendPool>,
    /// The queue was full when it was asked for.
    pub waited: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.queue.add_permits(1);
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.pool.name)
    }
}

/// Every backend's pool, by backend name and address (a reload that keeps
/// a backend keeps its pool).
pub struct Pool {
    /// Read by every borrow without a lock; replaced whole (rarely: a
    /// backend seen for the first time).
    backends: ArcSwap<Vec<Arc<BackendPool>>>,
    /// Serialises adding backends.
    adding: Mutex<()>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            backends: ArcSwap::from_pointee(Vec::new()),
            adding: Mutex::new(()),
        }
    }
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The pool of backend `name` at `address`, sized to `max` connections.
    pub fn backend(&self, name: &str, address: &str, max: usize) -> Arc<BackendPool> {
        let find = |list: &[Arc<BackendPool>]| {
            list.iter()
                .find(|p| p.name == name && p.address == address)
                .cloned()
        };
        let p = match find(&self.backends.load()) {
            Some(p) => p,
            None => {
                let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
                let list = self.backends.load_full();
                match find(&list) {
                    Some(p) => p,
                    None => {
                        let p = Arc::new(BackendPool::new(name, address, max));
                        let mut next = Vec::with_capacity(list.len() + 1);
                        next.extend(list.iter().cloned());
                        next.push(p.clone());
                        self.backends.store(Arc::new(next));
                        p
                    }
                }
            }
        };
        p.resize(max);
        p
    }

    /// (backend, idle, busy) for every backend's pool.
    pub fn usage(&self) -> Vec<(String, usize, usize)> {
        self.backends
            .load()
            .iter()
            .map(|p| {
                let idle = p.idle_count();
                let open = p.open.load(Ordering::Acquire);
                (p.name.clone(), idle, open.saturating_sub(idle))
            })
            .collect()
    }

    /// Idle connections over every backend.
    pub fn idle_total(&self) -> usize {
        self.backends.load().iter().map(|p| p.idle_count()).sum()
    }

    /// Closes idle connections unused for longer than `keep`.
    pub fn sweep(&self, keep: Duration) {
        for p in self.backends.load_full().iter() {
            let expired: Vec<IdleConn> = {
                let mut idle = p.idle.lock().unwrap_or_else(|e| e.into_inner());
                // Oldest first: the expired ones are a prefix.
                let n = idle
                    .iter()
                    .take_while(|i| i.since.elapsed() >= keep)
                    .count();
                idle.drain(..n).collect()
            };
            // Closed outside the lock.
            drop(expired);
        }
    }
}

impl BackendPool {
    fn new(name: &str, address: &str, max: usize) -> BackendPool {
        BackendPool {
            name: name.to_string(),
            address: address.to_string(),
            queue: Semaphore::new(max),
            max: AtomicUsize::new(max),
            resizing: Mutex::new(()),
            open: Arc::new(AtomicUsize::new(0)),
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Follows a new configured maximum.
    fn resize(&self, max: usize) {
        if self.max.load(Ordering::Acquire) == max {
            return;
        }
        let _resizing = self.resizing.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.max.load(Ordering::Acquire);
        if max > cur {
            self.queue.add_permits(max - cur);
            self.max.store(max, Ordering::Release);
        } else if max < cur {
            // `forget_permits` takes what is free now; permits in use are
            // taken on a later call, when they have come back.
            let gone = self.queue.forget_permits(cur - max);
            self.max.store(cur - gone, Ordering::Release);
        }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Acquire)
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits in the queue, at most `timeout`, for the right to use a
    /// connection. The lease says whether it had to wait.
    pub async fn lease(self: &Arc<Self>, timeout: Duration) -> Result<Lease, Error> {
        let waited = match self.queue.try_acquire() {
            Ok(p) => {
                p.forget();
                false
            }
            Err(_) => match tokio::time::timeout(timeout, self.queue.acquire()).await {
                Ok(Ok(p)) => {
                    p.forget();
                    true
                }
                Ok(Err(_)) => return Err(Error::ShuttingDown),
                Err(_) => {
                    return Err(Error::PoolTimeout {
                        backend: self.name.clone(),
                        waited_ms: timeout.as_millis() as u64,
                        max: self.max(),
                    })
                }
            },
        };
        // The permit is given back when the lease is dropped.
        Ok(Lease {
            pool: self.clone(),
            waited,
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
        if conn.pooled.is_none() || conn.in_transaction() || conn.stream.buffered() > 0 {
            return;
        }
        let mut gone = None;
        {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(max) = max_idle {
                let key = conn.pooled.as_ref().map(|p| &p.key);
                let same = |i: &IdleConn| i.conn.pooled.as_ref().map(|p| &p.key) == key;
                if idle.iter().filter(|i| same(i)).count() >= max {
                    gone = idle.iter().position(same).and_then(|i| idle.remove(i));
                    if max == 0 {
                        drop(idle);
                        drop(gone);
                        return;
                    }
                }
            }
            idle.push_back(IdleConn {
                conn,
                since: Instant::now(),
            });
        }
        // Closed outside the lock.
        drop(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_is_fair_and_times_out() {
        let pool = Pool::new();
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
        let pool = Pool::new();
        let b = pool.backend("r", "x:2", 1);
        let _one = b.lease(Duration::from_millis(10)).await.unwrap();
        let b = pool.backend("r", "x:2", 2);
        let _two = b.lease(Duration::from_millis(10)).await.unwrap();
        assert_eq!(b.max(), 2);
        assert!(b.lease(Duration::from_millis(10)).await.is_err());
        // Shrinking while both are in use takes effect as they come back.
        pool.backend("r", "x:2", 1);
        drop(_two);
        let b = pool.backend("r", "x:2", 1);
        assert_eq!(b.max(), 1);
        assert!(b.lease(Duration::from_millis(10)).await.is_err());
        drop(_one);
        assert!(b.lease(Duration::from_millis(10)).await.is_ok());
    }

    #[tokio::test]
    async fn backends_have_their_own_pools() {
        let pool = Pool::new();
        let a = pool.backend("a", "x:1", 1);
        let b = pool.backend("b", "x:2", 1);
        let _held = a.lease(Duration::from_millis(10)).await.unwrap();
        // A borrow of one backend never waits for another's.
        assert!(b.lease(Duration::from_millis(10)).await.is_ok());
        // The same name at a new address is another backend.
        let moved = pool.backend("a", "x:3", 1);
        assert!(moved.lease(Duration::from_millis(10)).await.is_ok());
        assert!(Arc::ptr_eq(&a, &pool.backend("a", "x:1", 1)));
        assert_eq!(pool.usage().len(), 3);
    }

    #[test]
    fn group_keys_compare_by_contents() {
        let k = GroupKey::new("app", 45, 7);
        assert_eq!(k, GroupKey::new("app", 45, 7));
        assert_ne!(k, GroupKey::new("app", 46, 7));
        assert_ne!(k, GroupKey::new("other", 45, 7));
        assert!(k.is_for("app", 45, 7) && !k.is_for("app", 45, 8));
    }
}
