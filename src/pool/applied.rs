//! What a pooled connection has been brought to ([`Applied`]): session
//! variables, database, user variables, prepared statements. The session
//! compares it with its own state before it runs anything on the
//! connection, so nothing of one client's session is seen by another.
//!
//! The variable maps are shared, not copied: a session keeps its maps in
//! an [`Arc`] that it replaces (copy-on-write) whenever they change, and a
//! connection records the `Arc` it was last brought to. The same `Arc`
//! means the same contents, whichever session the connection served since,
//! so a connection already in step costs a pointer compare; recording that
//! a connection is in step costs a reference count, never a copy.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Variables by name with their values (session variables as the server
/// reported them, or user variables as SQL literals), shared between a
/// session and the connections brought to them.
pub type Vars = Arc<BTreeMap<String, String>>;

/// Whether two shared maps hold the same variables: the same `Arc` (the
/// common case once a connection was brought to a session), else the
/// same contents (another session's maps that happen to be equal).
pub fn same_vars(a: &Vars, b: &Vars) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// The session state a pooled connection has been brought to.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Session variables that differ from the connection's login state,
    /// as the server reported them.
    pub vars: Vars,
    pub database: Option<String>,
    /// User variables set on the connection, as SQL literals.
    pub user_vars: Vars,
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
    /// Records that the connection now has `vars` (unless it has that very
    /// map already: then not even a reference count changes).
    pub fn set_vars(&mut self, vars: &Vars) {
        if !Arc::ptr_eq(&self.vars, vars) {
            self.vars = vars.clone();
        }
    }

    /// Records that the connection now has the user variables `user`.
    pub fn set_user_vars(&mut self, user: &Vars) {
        if !Arc::ptr_eq(&self.user_vars, user) {
            self.user_vars = user.clone();
        }
    }

    /// Records that the connection is at `database` (no copy when it is
    /// there already).
    pub fn set_database(&mut self, database: &str) {
        if self.database.as_deref() != Some(database) {
            self.database = Some(database.to_string());
        }
    }

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

    #[test]
    fn maps_are_shared_not_copied() {
        let mut session: Vars = Arc::default();
        Arc::make_mut(&mut session).insert("time_zone".into(), "+02:00".into());
        let mut a = Applied::default();
        assert!(!same_vars(&a.vars, &session));
        a.set_vars(&session);
        assert!(Arc::ptr_eq(&a.vars, &session), "recorded by reference");
        // The session changes its map: copy-on-write leaves the
        // connection's record as it was.
        Arc::make_mut(&mut session).insert("sql_mode".into(), "".into());
        assert_eq!(a.vars.len(), 1);
        assert!(!same_vars(&a.vars, &session));
        // Another session's equal map is the same state.
        let other: Vars = Arc::new((*a.vars).clone());
        assert!(same_vars(&a.vars, &other));
    }
}
