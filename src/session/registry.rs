//! Every live client session, by Causeway's own connection id: what
//! SHOW PROCESSLIST and KILL act on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Entry {
    pub user: String,
    pub host: String,
    /// Signalled to end the session.
    pub kill: Arc<Notify>,
    /// What the session publishes about itself.
    pub status: Arc<Mutex<Status>>,
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
}

/// One row of SHOW CAUSEWAY PROCESSLIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: u32,
    pub user: String,
    pub host: String,
    pub status: Status,
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
}

impl Registration {
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
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(
                id,
                Entry {
                    user,
                    host,
                    kill: kill.clone(),
                    status: status.clone(),
                },
            );
        }
        Registration {
            registry: self.clone(),
            id,
            kill,
            status,
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
                    .map(|(id, e)| Row {
                        id: *id,
                        user: e.user.clone(),
                        host: e.host.clone(),
                        status: e.status.lock().map(|s| s.clone()).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|r| r.id);
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
}
