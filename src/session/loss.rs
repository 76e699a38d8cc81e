//! What a lost backend connection takes with it, and what the client sees.
//!
//! A client must see a lost backend as it would see its server die:
//! - once any byte of a reply has reached the client, the client
//!   connection is closed; an ERR packet after part of a reply would be
//!   read as the rest of it (the client then waits forever);
//! - a connection lost while it held what cannot move to another one
//!   (temporary tables, locks, text prepares, a cursor, ...) ends the
//!   session after an error that says what was lost, instead of the
//!   session carrying on, on a new connection, without it;
//! - a connection lost while it held only the session's open transaction
//!   ends the transaction, not the session: the statement gets an error
//!   that says so, the session is out of the transaction and its next
//!   statement runs on a new connection (as after a rollback by the
//!   server);
//! - otherwise the statement fails with an error and the session goes on:
//!   its next statement gets a new connection with the session's state
//!   (an autocommit read may instead run again elsewhere: `retry.rs`).

use crate::error::Error;
use crate::metrics as m;
use crate::protocol::consts::status;
use crate::router::Pin;

use super::{send_error, Flow, Session};

impl Session {
    /// What the session keeps only in its connection to backend `index`,
    /// and would lose with it: the reason (a pin reason), if anything.
    /// Known from the session's own records, so it can be asked after the
    /// connection is gone. Only what certainly lives there: state made by
    /// statements that always run on the primary, the transaction's own
    /// backend, a cursor's backend. (The pool also pins for a pending
    /// `FOUND_ROWS()` and for user variables it could not read back, which
    /// may live on a replica connection: see `pin_for`.)
    pub(super) fn held_state(&self, index: usize) -> Option<Pin> {
        if self.txn.backend == Some(index) {
            return Some(Pin::Transaction);
        }
        self.held_beyond_transaction(index)
    }

    /// [`Session::held_state`] apart from the open transaction: what a lost
    /// connection takes that ends the session.
    fn held_beyond_transaction(&self, index: usize) -> Option<Pin> {
        if self.conns.pooled && self.held.cursor.is_some_and(|(_, b)| b == index) {
            return Some(Pin::Cursor);
        }
        if !self.is_primary(index) {
            return None;
        }
        let st = &self.state;
        let held = &self.held;
        if !st.temp_tables.is_empty() {
            Some(Pin::TemporaryTable)
        } else if st.table_locks {
            Some(Pin::LockTables)
        } else if st.user_locks {
            Some(Pin::UserLock)
        } else if !held.text_prepares.is_empty() {
            Some(Pin::TextPrepare)
        } else if !held.handlers.is_empty() {
            Some(Pin::Handler)
        } else if !self.conns.pooled {
            // Without a pool, user variables assigned from data exist on
            // the primary connection only.
            st.user_vars_on_primary.then_some(Pin::UserVariable)
        } else if held.next_transaction {
            Some(Pin::SetTransaction)
        } else if held.long_data.is_some() {
            Some(Pin::LongData)
        } else {
            None
        }
    }

    /// The error for state that a connection dropped earlier took with it
    /// (a connection the session no longer has, though it still holds
    /// something only that connection had).
    pub(super) fn lost_state(&self) -> Option<Error> {
        (0..self.conns.open.len()).find_map(|i| {
            let what = self
                .held_beyond_transaction(i)
                .filter(|_| self.conns.open[i].is_none())?;
            Some(Error::SessionLost {
                backend: self.backend_name(i),
                reason: "the connection was closed".into(),
                lost: what.describe(),
            })
        })
    }

    /// A backend connection broke mid-command (see the module comment).
    /// After part of the reply reached the client, the client connection
    /// is closed with no error packet. State only that connection held
    /// (temporary tables, locks, ...) is gone with it: the client gets an
    /// error that says so, then the connection is closed rather than
    /// silently continue without it. The open transaction alone is gone
    /// with it: the client gets an error that says so and the session goes
    /// on outside the transaction. Otherwise the client gets an error and
    /// the session goes on.
    pub(super) async fn backend_failed(
        &mut self,
        index: usize,
        e: Error,
        seq: u8,
        sent: bool,
    ) -> Flow {
        let name = self.backend_name(index);
        self.ctx
            .metrics
            .backend(m::BackendCounter::Lost, index, &name);
        tracing::warn!(session = self.id, error = %e, sent, "backend connection failed");
        let transaction = self.txn.backend == Some(index);
        if transaction {
            self.txn.backend = None;
            self.txn.written = false;
            self.status &= !status::IN_TRANS;
        }
        if sent {
            return Flow::Close;
        }
        match self.held_beyond_transaction(index) {
            Some(what) => {
                send_error(
                    &self.ctx.metrics,
                    &mut self.client.stream,
                    seq,
                    &session_lost(e, name, what),
                )
                .await;
                Flow::Close
            }
            None if transaction => {
                match self.replay_or(index, transaction_lost(e, name), seq, false) {
                    Ok(flow) => flow,
                    Err(e) => self.fail(seq, &e).await,
                }
            }
            None => self.fail(seq, &e).await,
        }
    }

    /// The open transaction, when the connection that held it was dropped
    /// earlier (a connection the session no longer has): the transaction
    /// is over, and the error says so.
    pub(super) fn lost_transaction(&mut self) -> Option<Error> {
        let index = self
            .txn
            .backend
            .filter(|&i| self.conns.open.get(i).is_some_and(Option::is_none))?;
        self.txn.backend = None;
        self.txn.written = false;
        self.status &= !status::IN_TRANS;
        Some(Error::TransactionLost {
            backend: self.backend_name(index),
            reason: "the connection was closed".into(),
        })
    }

    /// Reports `e` for a statement that did not run; if what failed took
    /// state only a lost connection had, the session ends instead; if it
    /// took the open transaction, the error says the transaction is over.
    pub(super) async fn fail_unless_lost(&mut self, seq: u8, e: &Error) -> Flow {
        if let Some(lost) = self.lost_state() {
            send_error(&self.ctx.metrics, &mut self.client.stream, seq, &lost).await;
            return Flow::Close;
        }
        match self.lost_transaction() {
            Some(lost) => self.fail(seq, &lost).await,
            None => self.fail(seq, e).await,
        }
    }

    /// The configured name of backend `index`.
    pub(super) fn backend_name(&self, index: usize) -> String {
        self.ctx
            .cluster
            .topology()
            .backends
            .get(index)
            .map(|b| b.name.clone())
            .unwrap_or_default()
    }
}

/// Why a connection was lost, for an error that names the backend itself.
fn lost_reason(e: Error) -> String {
    match e {
        Error::BackendLost { reason, .. } => reason,
        Error::BackendProtocol { .. } => "it sent a malformed packet".into(),
        other => other.to_string(),
    }
}

/// `e`, for a connection that held `what`: the session is over.
pub(super) fn session_lost(e: Error, backend: String, what: Pin) -> Error {
    Error::SessionLost {
        backend,
        reason: lost_reason(e),
        lost: what.describe(),
    }
}

/// `e`, for the connection of the session's open transaction: the
/// transaction is over, the session goes on.
pub(super) fn transaction_lost(e: Error, backend: String) -> Error {
    Error::TransactionLost {
        backend,
        reason: lost_reason(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_session_says_what_it_lost() {
        let e = session_lost(
            Error::BackendLost {
                backend: "primary".into(),
                reason: "the backend closed the connection".into(),
            },
            "primary".into(),
            Pin::TemporaryTable,
        );
        assert_eq!(e.code().0, 1927);
        assert_eq!(
            e.to_string(),
            "Causeway lost its connection to backend 'primary' (the backend closed the \
             connection) and with it the session's temporary tables: the connection is closed"
        );
    }
}
