//! The session follows the cluster's primary. `Session::primary` is the
//! backend the session treats as the primary: its primary connection holds
//! the session's transactions and the state that cannot move. When the
//! monitor observes another primary, the session moves at its next command
//! outside a transaction: the connections to the old and the new primary
//! (each brought to the state of its old role) are dropped, and the next
//! statement opens what it needs with the session's state. State that
//! lives only on the old primary's connection cannot move: the session
//! reports it lost and ends, as after that server's restart.

use super::Session;
use crate::error::Error;

impl Session {
    /// Whether backend `index` is the session's primary.
    pub(super) fn is_primary(&self, index: usize) -> bool {
        index == self.primary
    }

    /// A transaction is open (autocommit off between transactions is
    /// not one: the next statement starts it wherever it runs).
    fn in_transaction(&self) -> bool {
        self.txn.backend.is_some() || self.status & crate::protocol::consts::status::IN_TRANS != 0
    }

    /// At a command's start: follows a change of primary (one atomic load
    /// when nothing changed). Inside a transaction the session stays where
    /// the transaction runs.
    pub(super) fn follow_roles(&mut self) {
        let epoch = self.ctx.cluster.role_epoch();
        if epoch == self.role_epoch || self.in_transaction() {
            return;
        }
        let topo = self.ctx.cluster.topology();
        self.role_epoch = topo.role_epoch;
        if let Some(p) = topo.primary {
            self.move_primary(p);
        }
    }

    /// Makes `new` the session's primary, if what the old primary's
    /// connection holds allows it; else drops that connection, so the
    /// session reports the loss (see `lost_state`).
    fn move_primary(&mut self, new: usize) {
        let old = self.primary;
        if new == old || new >= self.conns.open.len() {
            return;
        }
        tracing::info!(
            session = self.id,
            from = old,
            to = new,
            "following the new primary"
        );
        if self.held_state(old).is_some() {
            self.conns.open[old] = None;
            return;
        }
        self.conns.open[old] = None;
        self.conns.open[new] = None;
        self.forget_backend_statements(old);
        self.forget_backend_statements(new);
        self.primary = new;
    }

    /// The primary a statement for it runs on: the session's, once it
    /// follows the cluster's. While the cluster has no primary (or a
    /// switchover holds writes) waits up to `timeouts.write_hold_ms`; fails
    /// at once on a split brain. A statement inside a transaction runs
    /// where the transaction is. The command counts as a use of the
    /// primary (`Txn::primary_use`) until it ends.
    pub(super) async fn primary_now(&mut self) -> Result<usize, Error> {
        if self.in_transaction() {
            return Ok(self.primary);
        }
        let cluster = self.ctx.cluster.clone();
        // A use taken earlier in this command (a statement the old primary
        // refused as read-only) must not hold up a switchover it waits for.
        self.txn.primary_use = None;
        let mut known = cluster.positions().primary() == Some(self.primary);
        loop {
            if known {
                if let Some(u) = cluster.try_use_primary(self.primary) {
                    self.txn.primary_use = Some(u);
                    return Ok(self.primary);
                }
            }
            let p = cluster.wait_for_primary().await?;
            self.role_epoch = cluster.role_epoch();
            self.move_primary(p);
            if self.primary != p {
                return Err(self.lost_state().unwrap_or(Error::NoPrimary {
                    waited_ms: 0,
                    reason: "the session could not move to the new primary".into(),
                }));
            }
            known = true;
        }
    }

    /// After a command: a transaction open on the primary keeps the
    /// session's use of it (a switchover waits for it to end); otherwise
    /// the use ends with the command.
    pub(super) fn settle_primary_use(&mut self) {
        let open = self.txn.backend.filter(|&b| self.is_primary(b));
        let used = self.txn.primary_use.as_ref().map(|u| u.index());
        match open {
            Some(b) if used != Some(b) => {
                self.txn.primary_use = Some(self.ctx.cluster.use_primary(b));
            }
            Some(_) => {}
            None => self.txn.primary_use = None,
        }
    }
}

impl Session {
    /// Where a COM_STMT_PREPARE runs: the session's primary when the
    /// cluster's primary is up, else a backend that is up (no wait).
    pub(super) fn prepare_backend(&self) -> usize {
        let cluster = &self.ctx.cluster;
        if cluster.positions().primary() == Some(self.primary) {
            return self.primary;
        }
        let topo = cluster.topology();
        if topo.backends.get(self.primary).is_some_and(|b| b.up) {
            return self.primary;
        }
        super::early::login_backend(&topo).unwrap_or(self.primary)
    }
}

impl Session {
    /// Whether a read-only refusal (1290) of this command may be kept from
    /// the client and the command run on the new primary: a text statement
    /// or an execute, on the session's primary, outside a transaction (so
    /// nothing before it depends on that server), once per command.
    pub(super) fn may_follow_read_only(
        &self,
        index: usize,
        raw: &[u8],
        stmt: Option<(&crate::classify::Class, &[u8])>,
    ) -> bool {
        use crate::classify::Kind;
        use crate::protocol::consts::com;
        // Only where the caller runs a `Flow::Fallback` on the primary:
        // classified text statements other than reads, and executes.
        let planned = match raw.first() {
            Some(&com::QUERY) => {
                stmt.is_some_and(|(c, _)| !matches!(c.kind, Kind::Read | Kind::Show))
            }
            Some(&com::STMT_EXECUTE) => true,
            _ => false,
        };
        planned
            && self.is_primary(index)
            && !self.read_only_followed
            && (!self.in_transaction() || self.replay_ready(index))
    }

    /// The primary refused a statement as read-only: it was made read-only
    /// (a switchover) before the monitor saw it. The statement did not run;
    /// the session waits for the new primary (as writes wait while there
    /// is none) and the caller runs it there (`Flow::Fallback`).
    pub(super) async fn primary_turned_read_only(&mut self, index: usize) -> super::Flow {
        self.read_only_followed = true;
        let cluster = self.ctx.cluster.clone();
        if self.txn.backend == Some(index) {
            // Inside a transaction that can be replayed: it cannot commit
            // there; it ends there and runs again on the new primary.
            let backend = self.backend_name(index);
            self.transaction_met_read_only(index);
            let lost = Error::TransactionLost {
                backend,
                reason: "the server turned read-only (a switchover)".into(),
            };
            return match self.replay_or(index, lost, 1, true) {
                Ok(flow) => flow,
                Err(e) => self.fail(1, &e).await,
            };
        }
        cluster.saw_read_only(index);
        match self.primary_now().await {
            Ok(_) => super::Flow::Fallback,
            Err(e) => self.fail(1, &e).await,
        }
    }
}

impl Session {
    /// A statement inside a transaction on the session's primary met the
    /// server's read-only refusal (relayed: earlier statements of the
    /// transaction ran there, so it cannot move): the primary was made
    /// read-only under the transaction, which can never commit there. The
    /// transaction ends (its connection is dropped, so the server rolls it
    /// back) and the session follows the new primary at its next command,
    /// as after a lost transaction.
    pub(super) fn transaction_met_read_only(&mut self, index: usize) {
        if !self.is_primary(index) || self.txn.backend != Some(index) {
            return;
        }
        tracing::warn!(
            session = self.id,
            backend = index,
            "the primary turned read-only under a transaction; the transaction is over"
        );
        self.ctx.cluster.saw_read_only(index);
        self.conns.open[index] = None;
        self.txn.backend = None;
        self.txn.written = false;
        self.status &= !crate::protocol::consts::status::IN_TRANS;
    }
}
