//! Every live client session, by Causeway's own connection id: what
//! SHOW PROCESSLIST and KILL act on.
//!
//! Ids are the handshake's connection id. They never repeat while a
//! session holds one: the counter wraps within its bits and skips every id
//! in use (logged-in sessions and logins in progress). The high bits carry
//! the instance number (`[proxy] instance`), so several Causeway instances
//! in front of one cluster hand out disjoint ids.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::cluster::Privileges;
use crate::error::Error;

/// Bits of an id that count sessions; the bits above hold the instance.
pub const ID_BITS: u32 = 24;
/// Largest instance number: ids stay below 2^31, as some connectors keep
/// the connection id in a signed 32-bit integer.
pub const MAX_INSTANCE: u32 = crate::config::MAX_INSTANCE;
const _: () = assert!(MAX_INSTANCE < 1 << (31 - ID_BITS));
const ID_MASK: u32 = (1 << ID_BITS) - 1;

#[derive(Debug)]
pub struct Entry {
    pub user: String,
    pub host: String,
    /// What the account may do to other sessions (KILL, PROCESSLIST).
    pub privileges: Privileges,
    /// Signalled to end the session.
    pub kill: Arc<Notify>,
    /// Set with `kill`: the session has been killed (checked where a
    /// signal could be missed).
    pub killed: Arc<AtomicBool>,
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
    /// A statement runs on `backend` now (what `KILL QUERY` interrupts).
    pub running: bool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            command: "Sleep",
            since: Instant::now(),
            info: None,
            backend: None,
            running: false,
        }
    }
}

/// Where a session's statement runs while it runs: what `KILL QUERY`
/// interrupts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Topology index of the backend.
    pub backend: usize,
    /// The backend connection's thread id on that server.
    pub thread_id: u32,
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
    /// The instance number, already shifted into the high bits.
    prefix: u32,
    /// The next session number to try (low bits only).
    next_id: AtomicU32,
    sessions: Mutex<HashMap<u32, Entry>>,
    /// Ids handed to logins in progress, not yet registered.
    reserved: Mutex<HashSet<u32>>,
}

/// Removes the session from the registry when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    pub id: u32,
    pub kill: Arc<Notify>,
    pub killed: Arc<AtomicBool>,
    pub status: Arc<Mutex<Status>>,
    pub activity: Arc<Mutex<Activity>>,
}

/// An id held for a login in progress; given back when dropped unless the
/// session registered under it.
pub struct Reservation {
    registry: Arc<Registry>,
    pub id: u32,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self
            .registry
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        r.remove(&self.id);
    }
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

    /// Publishes the statement the session runs now (`None`: it is idle).
    pub fn set_running(&self, running: Option<Running>) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.running = running.is_some();
        if let Some(r) = running {
            a.backend = Some((r.backend, r.thread_id));
        }
    }

    /// Whether the session has been killed.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// Who asks to kill: their account and privileges.
#[derive(Debug, Clone, Copy)]
pub struct Killer<'a> {
    pub user: &'a str,
    pub privileges: Privileges,
}

impl Killer<'_> {
    /// The server's rule: one's own sessions (same user), or any with
    /// `CONNECTION ADMIN` or `SUPER`. `PROCESS` only lets one see them.
    fn may_kill(&self, owner: &str) -> bool {
        self.user == owner || self.privileges.connection_admin || self.privileges.super_
    }
}

/// Where the session of `e` runs a statement now, if it runs one.
fn running_of(e: &Entry) -> Option<Running> {
    let a = e.activity.lock().unwrap_or_else(|e| e.into_inner());
    match a.backend {
        Some((backend, thread_id)) if a.running => Some(Running { backend, thread_id }),
        _ => None,
    }
}

/// A session `KILL QUERY` found running a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryTarget {
    /// The session is idle: nothing to interrupt.
    Idle,
    Running(Running),
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Registry::with_instance(0)
    }

    /// A registry whose ids carry `instance` in their high bits (at most
    /// [`MAX_INSTANCE`]; larger values are masked, config validation
    /// refuses them first).
    pub fn with_instance(instance: u32) -> Arc<Registry> {
        Arc::new(Registry {
            prefix: (instance & MAX_INSTANCE) << ID_BITS,
            next_id: AtomicU32::new(1),
            sessions: Mutex::default(),
            reserved: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection id, held until the session registers or the
    /// reservation drops. Never 0 in its low bits, never an id in use;
    /// `None` only if every id of this instance is taken.
    pub fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        let sessions = self.lock();
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..=ID_MASK {
            let low = self.next_id.fetch_add(1, Ordering::Relaxed) & ID_MASK;
            if low == 0 {
                continue;
            }
            let id = self.prefix | low;
            if !sessions.contains_key(&id) && reserved.insert(id) {
                return Some(Reservation {
                    registry: self.clone(),
                    id,
                });
            }
        }
        None
    }

    pub fn register(
        self: &Arc<Self>,
        id: u32,
        user: String,
        host: String,
        privileges: Privileges,
    ) -> Registration {
        let kill = Arc::new(Notify::new());
        let killed = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(Status::default()));
        let activity = Arc::new(Mutex::new(Activity::default()));
        self.lock().insert(
            id,
            Entry {
                user,
                host,
                privileges,
                kill: kill.clone(),
                killed: killed.clone(),
                status: status.clone(),
                activity: activity.clone(),
            },
        );
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        Registration {
            registry: self.clone(),
            id,
            kill,
            killed,
            status,
            activity,
        }
    }

    /// COM_CHANGE_USER: session `id` now belongs to `user`, with its
    /// privileges (what PROCESSLIST and KILL see), updated in place.
    pub fn set_user(&self, id: u32, user: &str, privileges: Privileges) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.user = user.to_string();
            e.privileges = privileges;
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `KILL [CONNECTION] id`: asks session `id` to end, if `killer` may.
    pub fn kill(&self, id: u32, killer: Killer<'_>) -> Result<(), Error> {
        let m = self.lock();
        let e = m.get(&id).ok_or(Error::NoSuchThread(id.into()))?;
        if !killer.may_kill(&e.user) {
            return Err(Error::NotOwnerOfThread(id));
        }
        e.killed.store(true, Ordering::Release);
        e.kill.notify_one();
        Ok(())
    }

    /// `KILL QUERY id`: where session `id` runs a statement now, if
    /// `killer` may interrupt it.
    pub fn query_target(&self, id: u32, killer: Killer<'_>) -> Result<QueryTarget, Error> {
        let m = self.lock();
        let e = m.get(&id).ok_or(Error::NoSuchThread(id.into()))?;
        if !killer.may_kill(&e.user) {
            return Err(Error::NotOwnerOfThread(id));
        }
        Ok(running_of(e).map_or(QueryTarget::Idle, QueryTarget::Running))
    }

    /// The sessions of `user` (from `host`, when given and not `%`), by id,
    /// if `killer` may kill them all: what `KILL USER` acts on. Refused
    /// as a whole, as the server does, when one of them is not the
    /// killer's to kill.
    pub fn sessions_of(
        &self,
        user: &str,
        host: Option<&str>,
        killer: Killer<'_>,
    ) -> Result<Vec<(u32, Option<Running>)>, Error> {
        let m = self.lock();
        let mut out: Vec<(u32, Option<Running>)> = Vec::new();
        for (id, e) in m.iter() {
            // The entry's host carries the client's port (`ip:port`).
            let ip = e
                .host
                .rsplit_once(':')
                .map_or(e.host.as_str(), |(ip, _)| ip);
            let host_ok = host.is_none_or(|h| h == "%" || h.eq_ignore_ascii_case(ip));
            if e.user != user || !host_ok {
                continue;
            }
            if !killer.may_kill(&e.user) {
                return Err(Error::KillUserDenied {
                    user: user.to_string(),
                    host: host.unwrap_or("%").to_string(),
                });
            }
            out.push((*id, running_of(e)));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
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
mod tests;
