//! State a client's statements leave on "the connection" that must follow
//! the session when Causeway spreads its statements over several backend
//! connections:
//! - the multi-statements option (COM_SET_OPTION), brought to every
//!   backend connection before use like session variables;
//! - the diagnostics area (warnings, errors): statements that read it
//!   (`SHOW WARNINGS`, `SHOW ERRORS`, `SHOW COUNT(*) ..`, `@@warning_count`,
//!   `@@error_count`, `GET DIAGNOSTICS`) run on the connection that ran the
//!   statement whose diagnostics a direct connection would show.

use crate::protocol::consts::{cap, com};
use crate::protocol::reply::Expect;

use super::routing::Synced;
use super::{Flow, Session};

impl Session {
    /// COM_SET_OPTION without a pool: runs on the primary connection and is
    /// remembered, so that every other backend connection is brought to it
    /// before its next statement (see [`Session::set_option_for`]).
    pub(super) async fn set_option(&mut self, option: u16, raw: &[u8]) -> Flow {
        let flow = self.forward(raw, Expect::Single).await;
        let ran = self.backends.first().is_some_and(Option::is_some);
        // Only options 0 (on) and 1 (off) exist; the server refuses others.
        if ran && option <= 1 {
            let multi = option == 0;
            self.ps.multi_statements = Some(multi);
            if let Some(s) = self.synced.first_mut() {
                s.multi_statements = Some(multi);
            }
        }
        flow
    }

    /// The COM_SET_OPTION that brings a connection (last brought to
    /// `synced`) to the session's multi-statements option, if it differs.
    pub(super) fn set_option_for(&self, synced: &Synced) -> Option<Vec<u8>> {
        let login = self.caps & cap::MULTI_STATEMENTS != 0;
        let want = self.ps.multi_statements.unwrap_or(login);
        if synced.multi_statements.unwrap_or(login) == want {
            return None;
        }
        let v: u16 = if want { 0 } else { 1 };
        let mut p = vec![com::SET_OPTION];
        p.extend_from_slice(&v.to_le_bytes());
        Some(p)
    }
}
