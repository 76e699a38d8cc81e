//! Reads that run again after their backend failed.
//!
//! An autocommit read (and a read split off a transaction to a replica)
//! whose backend connection fails before any byte of its reply reached the
//! client ran nowhere the client can tell: it is planned again, with the
//! backends that failed it excluded (the primary stands in for them), and
//! run there. Only statements that cannot do harm by running twice qualify
//! ([`crate::classify::Class::may_run_twice`]): never a write, never a
//! statement inside the transaction's own connection, never one that held
//! state only its connection had, never one that sent part of its reply.
//!
//! A failure also asks whether the backend itself is down (a refused
//! connection, or a silent backend that does not greet a new one): then
//! routing avoids it ([`crate::cluster::Cluster::mark_down`]) until the
//! monitor sees it healthy again.

use crate::classify::Class;
use crate::error::Error;
use crate::metrics as m;
use crate::protocol::consts::status;

use super::plan::StatementPlan;
use super::{Flow, Session};

/// At most this many runs of one statement (the first included).
const MAX_RUNS: u8 = 3;

/// A read whose backend failed before any byte of its reply reached the
/// client.
#[derive(Debug)]
pub(super) struct Failure {
    /// The backend that failed.
    pub index: usize,
    /// What the client sees when the read is not run again.
    pub error: Error,
    /// The sequence id of that error packet.
    pub seq: u8,
}

/// The runs of one statement so far.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    /// Backends that failed it.
    failed: Vec<usize>,
    runs: u8,
}

impl Session {
    /// Whether a statement whose connection to backend `index` broke
    /// before its reply reached the client may run again.
    pub(super) fn may_retry(&self, index: usize, stmt: Option<(&Class, &[u8])>) -> bool {
        stmt.is_some_and(|(c, _)| c.may_run_twice())
            && self.held_state(index).is_none()
            // On the primary, only outside a transaction (an autocommit
            // read, not the first statement of an implicit transaction).
            && (!self.is_primary(index)
                || self.txn.backend.is_none() && self.status & status::AUTOCOMMIT != 0)
    }

    /// A connection to backend `index` failed with `e` (`hung`: it stayed
    /// silent and failed its check already). If the backend itself is
    /// down, routing is told.
    pub(super) async fn note_failure(&self, index: usize, e: &Error, hung: bool) {
        let known = self
            .ctx
            .cluster
            .topology()
            .backends
            .get(index)
            .is_none_or(|b| !b.up);
        if known {
            return;
        }
        let down = hung
            || matches!(e, Error::BackendUnavailable { .. })
            || !self.ctx.cluster.answers(index).await;
        if down {
            report_down(&self.ctx.cluster, index, e.to_string());
        }
    }

    /// The backend connection `index` failed with `e` before any byte of
    /// the reply reached the client (the connection is dropped already):
    /// the read may run again ([`Flow::Retry`]); anything else gets what
    /// a lost connection gets.
    pub(super) async fn failed_before_reply(
        &mut self,
        index: usize,
        e: Error,
        seq: u8,
        hung: bool,
        stmt: Option<(&Class, &[u8])>,
    ) -> Flow {
        self.note_failure(index, &e, hung).await;
        if !self.may_retry(index, stmt) {
            return self.backend_failed(index, e, seq, false).await;
        }
        let name = self.backend_name(index);
        self.ctx
            .metrics
            .backend(m::BackendCounter::Lost, index, &name);
        tracing::info!(session = self.id, backend = %name, error = %e,
            "read failed before its reply; planning it again");
        Flow::Retry(Box::new(Failure {
            index,
            error: e,
            seq,
        }))
    }

    /// Where a read that failed (`f`) runs next, from `plan` (the read
    /// planned again): see [`Attempts::next`].
    pub(super) fn next_run(
        &self,
        attempts: &mut Attempts,
        f: &Failure,
        plan: StatementPlan,
    ) -> Option<StatementPlan> {
        let index = attempts.next(f.index, plan.index, self.primary)?;
        let name = self.backend_name(f.index);
        self.ctx
            .metrics
            .backend(m::BackendCounter::ReadRetries, f.index, &name);
        Some(match index == plan.index {
            true => plan,
            false => StatementPlan {
                index,
                wait: None,
                ..plan
            },
        })
    }
}

impl Attempts {
    /// After a run failed on backend `failed`, where the next run goes,
    /// the statement planned again for backend `planned`: there, unless
    /// that backend failed it already, then on `primary`; `None` when the
    /// primary failed it too, or the statement ran [`MAX_RUNS`] times.
    fn next(&mut self, failed: usize, planned: usize, primary: usize) -> Option<usize> {
        self.runs = self.runs.saturating_add(1);
        if !self.failed.contains(&failed) {
            self.failed.push(failed);
        }
        if self.runs >= MAX_RUNS {
            return None;
        }
        let index = match self.failed.contains(&planned) {
            true => primary,
            false => planned,
        };
        (!self.failed.contains(&index)).then_some(index)
    }
}

/// Tells routing that backend `index` is down, found so by a statement (a
/// refused connection, a failed check), and counts it
/// (`causeway_backend_marked_down_total`).
pub(super) fn report_down(cluster: &crate::cluster::Cluster, index: usize, reason: String) {
    if let Some(name) = cluster
        .topology()
        .backends
        .get(index)
        .map(|b| b.name.clone())
    {
        metrics::counter!(m::BACKEND_MARKED_DOWN, "backend" => name).increment(1);
    }
    cluster.mark_down(index, reason);
}

#[cfg(test)]
mod tests {
    use super::Attempts;

    #[test]
    fn a_read_goes_where_it_is_planned_unless_that_failed_it() {
        let mut a = Attempts::default();
        // Replica 1 failed; planned again for replica 2: there.
        assert_eq!(a.next(1, 2, 0), Some(2));
        // Replica 2 failed too; planned for replica 1 again: the primary.
        let mut a = Attempts::default();
        assert_eq!(a.next(1, 1, 0), Some(0));
    }

    #[test]
    fn a_read_runs_at_most_three_times_and_never_twice_on_a_failed_primary() {
        let mut a = Attempts::default();
        assert_eq!(a.next(1, 2, 0), Some(2));
        assert_eq!(a.next(2, 0, 0), Some(0));
        // Third failure: no fourth run.
        let mut b = Attempts::default();
        assert_eq!(b.next(0, 0, 0), None, "the primary failed it");
        assert_eq!(a.next(0, 1, 0), None, "three runs");
        // The primary failed; planned for a replica: there.
        let mut c = Attempts::default();
        assert_eq!(c.next(0, 2, 0), Some(2));
        // ... which failed too, planned for it again: nowhere left.
        assert_eq!(c.next(2, 2, 0), None);
    }
}
