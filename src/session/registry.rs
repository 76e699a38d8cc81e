//! Every live client session, by Causeway's own connection id: what
//! SHOW PROCESSLIST and KILL act on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct Entry {
    pub user: String,
    pub host: String,
    /// Signalled to end the session.
    pub kill: Arc<Notify>,
    /// What the session publishes about itself.
    pub status: Arc<Mutex<Status>>,
    /// What it is doing now (SHOW PROCESSLIST's Command, Time, Info).
    pub activity: Arc<Mutex<Activity>>,
}

/// What a session is doing now: published when each command starts and
/// ends, so it must stay cheap (no allocation: the statement text is the
/// command packet's own `Bytes`, shared, kept as the client sent it).
#[derive(Debug, Clone)]
pub struct Activity {
    /// The server's name for the command (`Sleep`, `Query`, `Execute`, ...).
    pub command: &'static str,
    /// When the session entered this state.
    pub since: Instant,
    /// The statement being run, as bytes in the client's character set.
    pub info: Option<Bytes>,
    /// The backend connection (topology index, server thread id) running
    /// the statement, or that ran the last one.
    pub backend: Option<(usize, u32)>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            command: "Sleep",
            since: Instant::now(),
            info: None,
            backend: None,
        }
    }
}

/// What SHOW CAUSEWAY PROCESSLIST shows of a session beyond its user and host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub database: Option<String>,
    /// `transaction`, `session` or `none`.
    pub pool: &'static str,
    /// Why the session is pinned to its backend connection, if it is.
    pub pin: Option<&'static str>,
    /// The backend connections it holds (`primary#1234`), comma-separated.
    pub backends: String,
    /// The server thread id of the connection held to each backend (0:
    /// none), by topology index: what `backends` was built from.
    pub threads: Vec<u32>,
}

/// One row of SHOW CAUSEWAY PROCESSLIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: u32,
    pub user: String,
    pub host: String,
    pub status: Status,
    pub command: &'static str,
    pub since: Instant,
    pub info: Option<Bytes>,
    pub backend: Option<(usize, u32)>,
}

/// Whether a viewer sees a session in the process list: the server's rule,
/// all sessions with the PROCESS privilege (`sees_all`), else only the
/// viewer's own user's.
pub fn visible(row: &Row, viewer: &str, sees_all: bool) -> bool {
    sees_all || row.user == viewer
}

#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU32,
    sessions: Mutex<HashMap<u32, Entry>>,
}

/// Removes the session from the registry when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    pub id: u32,
    pub kill: Arc<Notify>,
    pub status: Arc<Mutex<Status>>,
    pub activity: Arc<Mutex<Activity>>,
}

impl Registration {
    /// The session starts a command (`info`: its statement text, if any).
    pub fn begin(&self, command: &'static str, info: Option<Bytes>) {
        let old = {
            let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            a.command = command;
            a.since = Instant::now();
            std::mem::replace(&mut a.info, info)
        };
        drop(old);
    }

    /// The command is done: the session sleeps.
    pub fn end(&self) {
        let old = {
            let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
            a.command = "Sleep";
            a.since = Instant::now();
            a.info.take()
        };
        // The packet's buffer is freed (or reused) outside the lock.
        drop(old);
    }

    /// Publishes the session's status if it changed.
    pub fn publish(&self, status: &Status) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if *s != *status {
            *s = status.clone();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.sessions.lock() {
            m.remove(&self.id);
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            next_id: AtomicU32::new(1),
            sessions: Mutex::default(),
        })
    }

    /// A fresh connection id (never 0).
    pub fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    pub fn register(self: &Arc<Self>, id: u32, user: String, host: String) -> Registration {
        let kill = Arc::new(Notify::new());
        let status = Arc::new(Mutex::new(Status::default()));
        let activity = Arc::new(Mutex::new(Activity::default()));
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(
                id,
                Entry {
                    user,
                    host,
                    kill: kill.clone(),
                    status: status.clone(),
                    activity: activity.clone(),
                },
            );
        }
        Registration {
            registry: self.clone(),
            id,
            kill,
            status,
            activity,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks session `id` to end, if `user` owns it.
    pub fn kill(&self, id: u32, user: &str) -> Result<(), crate::error::Error> {
        let m = self
            .sessions
            .lock()
            .map_err(|_| crate::error::Error::NoSuchThread(id))?;
        let e = m.get(&id).ok_or(crate::error::Error::NoSuchThread(id))?;
        if e.user != user {
            return Err(crate::error::Error::NotOwnerOfThread(id));
        }
        e.kill.notify_one();
        Ok(())
    }

    /// Every session with its published status, sorted by id.
    pub fn rows(&self) -> Vec<Row> {
        let mut v: Vec<Row> = self
            .sessions
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(id, e)| {
                        let a = e.activity.lock().map(|a| a.clone()).unwrap_or_default();
                        Row {
                            id: *id,
                            user: e.user.clone(),
                            host: e.host.clone(),
                            status: e.status.lock().map(|s| s.clone()).unwrap_or_default(),
                            command: a.command,
                            since: a.since,
                            info: a.info,
                            backend: a.backend,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.id);
        v
    }

    /// The sessions `viewer` may see (all of them if `sees_all`), sorted
    /// by id.
    pub fn visible_rows(&self, viewer: &str, sees_all: bool) -> Vec<Row> {
        let mut v = self.rows();
        v.retain(|r| visible(r, viewer, sees_all));
        v
    }

    /// (id, user, host) of every session, sorted by id.
    pub fn list(&self) -> Vec<(u32, String, String)> {
        let mut v: Vec<_> = self
            .sessions
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(id, e)| (*id, e.user.clone(), e.host.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Resolves once the shutdown flag is true (never, if the sender is gone
/// without setting it). Holds no lock guard across the await, so it can be
/// used in `select!` inside spawned tasks.
pub async fn shutdown_signalled(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_kill_and_drop() {
        let r = Registry::new();
        let id = r.next_id();
        let reg = r.register(id, "app".into(), "127.0.0.1".into());
        assert_eq!(r.list(), vec![(id, "app".into(), "127.0.0.1".into())]);
        assert!(matches!(
            r.kill(id, "other"),
            Err(crate::error::Error::NotOwnerOfThread(_))
        ));
        assert!(r.kill(id, "app").is_ok());
        drop(reg);
        assert!(r.is_empty());
        assert!(matches!(
            r.kill(id, "app"),
            Err(crate::error::Error::NoSuchThread(_))
        ));
    }

    #[test]
    fn activity_is_published_and_cleared() {
        let r = Registry::new();
        let reg = r.register(7, "app".into(), "127.0.0.1:5000".into());
        assert_eq!(r.rows()[0].command, "Sleep");
        reg.begin("Query", Some(Bytes::from_static(b"SELECT \xff")));
        let row = &r.rows()[0];
        assert_eq!(row.command, "Query");
        assert_eq!(row.info.as_deref(), Some(&b"SELECT \xff"[..]));
        reg.end();
        let row = &r.rows()[0];
        assert_eq!((row.command, row.info.is_none()), ("Sleep", true));
    }

    #[test]
    fn each_user_sees_its_own_sessions_unless_it_sees_all() {
        let r = Registry::new();
        let _a = r.register(1, "alice".into(), "h:1".into());
        let _b = r.register(2, "bob".into(), "h:2".into());
        let _a2 = r.register(3, "alice".into(), "h:3".into());
        let ids = |v: Vec<Row>| v.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(r.visible_rows("alice", false)), vec![1, 3]);
        assert_eq!(ids(r.visible_rows("bob", false)), vec![2]);
        assert_eq!(ids(r.visible_rows("carol", false)), Vec::<u32>::new());
        assert_eq!(ids(r.visible_rows("bob", true)), vec![1, 2, 3]);
    }
}
