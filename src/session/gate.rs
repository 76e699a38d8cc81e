//! Who may connect: established sessions are capped by
//! `proxy.max_connections` (more get ERROR 1040, as from the server), and
//! connections still logging in are capped apart by `proxy.max_handshakes`.
//! A connection that has not finished its login holds no session slot, so
//! sockets that connect and say nothing cannot lock real clients out: when
//! the handshake cap is reached, the connection that has been logging in
//! the longest is dropped to make room (a real client finishes in
//! milliseconds; a silent one waits for its timeout).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::error::Error;

pub struct Gate {
    max_sessions: usize,
    max_pending: usize,
    sessions: AtomicUsize,
    pending: Mutex<PendingSet>,
    /// Sessions per account (`user@host` of the account matched), for
    /// accounts with a limit.
    per_account: Mutex<HashMap<String, u32>>,
}

/// A limit on one account's sessions, and which error says it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLimit {
    /// `user@host` of the account.
    pub account: String,
    pub user: String,
    pub max: u32,
    /// The account's own `MAX_USER_CONNECTIONS` (ERROR 1226) rather than
    /// the server's `max_user_connections` or Causeway's per-user cap
    /// (ERROR 1203).
    pub own: bool,
}

#[derive(Default)]
struct PendingSet {
    next: u64,
    /// Connections logging in, oldest first, with what drops each.
    by_age: BTreeMap<u64, Arc<Notify>>,
}

/// A connection that is logging in; dropped, it leaves the handshake count.
pub struct Pending {
    gate: Arc<Gate>,
    id: u64,
    dropped: Arc<Notify>,
}

/// A session slot, given back when dropped.
pub struct Seat {
    gate: Arc<Gate>,
    account: Option<String>,
}

impl Gate {
    pub fn new(max_sessions: usize, max_pending: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max_sessions,
            max_pending: max_pending.max(1),
            sessions: AtomicUsize::new(0),
            pending: Mutex::default(),
            per_account: Mutex::default(),
        })
    }

    /// Whether every session slot is taken (a new connection is refused at
    /// once, before the greeting, as the server does).
    pub fn full(&self) -> bool {
        self.sessions.load(Ordering::Acquire) >= self.max_sessions
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    pub fn logging_in(&self) -> usize {
        self.lock().by_age.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingSet> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection as logging in, dropping the one that has
    /// been at it the longest if the handshake cap is reached.
    pub fn begin(self: &Arc<Self>) -> Pending {
        let dropped = Arc::new(Notify::new());
        let mut set = self.lock();
        while set.by_age.len() >= self.max_pending {
            match set.by_age.pop_first() {
                Some((_, oldest)) => oldest.notify_one(),
                None => break,
            }
        }
        let id = set.next;
        set.next += 1;
        set.by_age.insert(id, dropped.clone());
        Pending {
            gate: self.clone(),
            id,
            dropped,
        }
    }
}

impl Pending {
    /// Resolves when this connection is dropped to make room for another.
    pub async fn dropped(&self) {
        self.dropped.notified().await
    }

    /// The login succeeded: a session slot, unless every one is taken or
    /// the account is at its limit (the error the client gets).
    pub fn establish(self, limit: Option<&UserLimit>) -> Result<Seat, Error> {
        let gate = self.gate.clone();
        drop(self);
        let mut n = gate.sessions.load(Ordering::Acquire);
        loop {
            if n >= gate.max_sessions {
                return Err(Error::TooManyConnections);
            }
            match gate
                .sessions
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        let mut seat = Seat {
            gate: gate.clone(),
            account: None,
        };
        if let Some(l) = limit {
            let mut per = gate.per_account.lock().unwrap_or_else(|e| e.into_inner());
            let count = per.entry(l.account.clone()).or_default();
            if *count >= l.max {
                return Err(if l.own {
                    Error::UserLimitReached {
                        user: l.user.clone(),
                        limit: l.max,
                    }
                } else {
                    Error::TooManyUserConnections(l.user.clone())
                });
            }
            *count += 1;
            seat.account = Some(l.account.clone());
        }
        Ok(seat)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.gate.lock().by_age.remove(&self.id);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.gate.sessions.fetch_sub(1, Ordering::AcqRel);
        if let Some(a) = &self.account {
            let mut per = self
                .gate
                .per_account
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    per.remove(a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_login_makes_room_and_sessions_are_capped_apart() {
        let gate = Gate::new(2, 3);
        let a = gate.begin();
        let b = gate.begin();
        let c = gate.begin();
        assert_eq!(gate.logging_in(), 3);
        // A fourth login drops the oldest one.
        let d = gate.begin();
        tokio::time::timeout(std::time::Duration::from_secs(1), a.dropped())
            .await
            .expect("the oldest is told to go");
        assert_eq!(gate.logging_in(), 3);
        drop(a);
        assert_eq!(gate.logging_in(), 3, "already out of the count");
        // Sessions: two slots; logins in progress take none.
        let s1 = b.establish(None).expect("a slot");
        let s2 = c.establish(None).expect("a slot");
        assert!(gate.full());
        assert!(
            matches!(d.establish(None), Err(Error::TooManyConnections)),
            "no third session"
        );
        assert_eq!(gate.logging_in(), 0);
        drop(s1);
        assert!(!gate.full());
        let e = gate.begin();
        let _s3 = e.establish(None).expect("the freed slot");
        drop(s2);
        assert_eq!(gate.sessions(), 1);
    }

    #[tokio::test]
    async fn accounts_at_their_limit_get_the_servers_errors() {
        let gate = Gate::new(100, 100);
        let own = UserLimit {
            account: "app@%".into(),
            user: "app".into(),
            max: 2,
            own: true,
        };
        let a = gate.begin().establish(Some(&own)).unwrap();
        let _b = gate.begin().establish(Some(&own)).unwrap();
        let e = gate.begin().establish(Some(&own)).err().unwrap();
        assert!(matches!(e, Error::UserLimitReached { limit: 2, .. }), "{e}");
        // Another account is counted apart; the global limit says 1203.
        let global = UserLimit {
            account: "bob@%".into(),
            user: "bob".into(),
            max: 1,
            own: false,
        };
        let _c = gate.begin().establish(Some(&global)).unwrap();
        let e = gate.begin().establish(Some(&global)).err().unwrap();
        assert!(matches!(e, Error::TooManyUserConnections(_)), "{e}");
        // A session that ends frees its account's slot; refused ones took none.
        drop(a);
        assert!(gate.begin().establish(Some(&own)).is_ok());
        assert_eq!(gate.sessions(), 2);
    }
}
