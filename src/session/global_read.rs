//! Global-level reads that overlap the fresh primary position request with
//! the read itself.
//!
//! A global read must see every write committed before it started, so it
//! needs a primary position `P` from a poll sent after it arrived. Instead of
//! waiting for `P` and only then sending the read, the read is sent at once
//! to a replica whose known position covers the newest primary position
//! known so far, and its reply is left unread until `P` arrives:
//!
//! - `S`, the replica's sample taken just before the read was sent, is a
//!   lower bound of what the replica had when it ran the read (the sample's
//!   query ran before the read was sent, and a replica's position only
//!   moves forward);
//! - if `S` covers `P` (and whatever else the read needs), the read saw
//!   every write `P` holds, so its reply is relayed;
//! - otherwise the reply is read and dropped, and the read runs again
//!   behind a wait for `P`, as before.
//!
//! The proof never uses the newest known position: it only chooses the
//! replica, so a wrong guess costs a second run, never a stale answer.

use std::time::Instant;

use tokio::sync::watch;

use crate::consistency::{FreshTicket, LeadGuard, Level, Positions, WaitShare};
use crate::error::Error;
use crate::position::Position;
use crate::protocol::reply::Expect;

use super::consistency::{Plan, Wait, Waited};
use super::{drain_reply, Session};

/// What became of a read sent before its fresh position was known.
pub enum Checked {
    /// Served (or given up): nothing more to send.
    Done(Waited),
    /// The replica's position did not cover the fresh one: the read's reply
    /// was dropped; it runs again behind this wait.
    Wait(Wait),
}

/// The plan for a read the replica `i` serves without a wait at what is
/// known now. At the global level (`pending` is the fresh position request)
/// that becomes a read checked against the fresh position once it comes.
pub fn run_or_check(
    i: usize,
    pending: Option<&FreshTicket>,
    need: Option<&Position>,
    level: Level,
    cfg: &crate::config::Consistency,
    positions: &Positions,
) -> Plan {
    let Some(ticket) = pending.filter(|_| positions.primary() != Some(i)) else {
        return Plan::Run(i);
    };
    let pos = need.cloned().unwrap_or_else(|| empty(positions));
    Plan::Wait(
        i,
        Wait {
            pos,
            epoch: positions.sample(i).map_or(0, |s| s.epoch),
            level,
            timeout: cfg.wait_timeout(),
            on_timeout: cfg.on_timeout,
            check: Some(ticket.clone()),
        },
    )
}

fn empty(positions: &Positions) -> Position {
    match positions.flavor() {
        crate::consistency::Flavor::MariaDb => Position::Maria(Default::default()),
        crate::consistency::Flavor::Mysql => Position::Mysql(Default::default()),
    }
}

impl Session {
    /// Sends the read to replica `index` now, then waits for the fresh
    /// primary position of `w.check` and decides whether the read's reply
    /// (still unread) may be relayed.
    pub(super) async fn read_then_check(
        &mut self,
        index: usize,
        w: &Wait,
        raw: &[u8],
        expect: Expect,
    ) -> Result<Checked, Error> {
        let positions = self.ctx.cluster.positions().clone();
        let conn = self.backend(index).await?;
        // Taken before the read is sent: its position was reached before
        // the read ran.
        let before = positions.sample(index);
        conn.send_command(raw).await?;
        let fresh = match &w.check {
            Some(ticket) => ticket.clone().wait(w.timeout).await,
            None => Some(w.pos.clone()),
        };
        let Some(p) = fresh else {
            drain(conn, expect).await?;
            return Ok(Checked::Done(Waited::NoPosition));
        };
        let mut need = w.pos.clone();
        need.merge(&p);
        let had = before.as_ref().and_then(|s| s.pos.as_ref());
        if had.is_some_and(|q| q.covers(&need)) {
            return Ok(Checked::Done(Waited::Covered));
        }
        positions.early_read_missed();
        drain(conn, expect).await?;
        Ok(Checked::Wait(Wait {
            pos: need,
            epoch: before.map_or(w.epoch, |s| s.epoch),
            check: None,
            ..w.clone()
        }))
    }
}

impl Session {
    /// Before a global read's wait on replica `index`: the lead of a shared
    /// wait gets its guard back (hold it until what the wait proved is
    /// learned); a follower waits for the lead and, if the lead's wait
    /// proved what the read needs, sends the read alone (`Ok(Err(..))`
    /// carries the outcome). `Ok(Ok(None))`: send an own wait, as alone.
    pub(super) async fn share_wait(
        &mut self,
        index: usize,
        w: &Wait,
        raw: &[u8],
    ) -> Result<Result<Option<LeadGuard>, Waited>, Error> {
        if w.level != Level::Global {
            return Ok(Ok(None));
        }
        let positions = self.ctx.cluster.positions().clone();
        let rx = match positions.share_wait(index, w.epoch, &w.pos) {
            WaitShare::Lead(g) => return Ok(Ok(Some(g))),
            WaitShare::Alone => return Ok(Ok(None)),
            WaitShare::Follow(rx) => rx,
        };
        match self.follow(index, w, rx, raw).await? {
            Some(waited) => Ok(Err(waited)),
            None => Ok(Ok(None)),
        }
    }

    /// Waits for the lead's wait to end; then sends the read alone when
    /// the lead's wait proved what it needs. `None`: send an own wait.
    async fn follow(
        &mut self,
        index: usize,
        w: &Wait,
        mut done: watch::Receiver<()>,
        raw: &[u8],
    ) -> Result<Option<Waited>, Error> {
        let positions = self.ctx.cluster.positions().clone();
        let started = Instant::now();
        // Nothing is ever sent: `changed` returns when the lead drops the
        // sender, its wait over.
        let ended = tokio::time::timeout(w.timeout, done.changed())
            .await
            .is_ok();
        let waited = started.elapsed();
        self.ctx
            .metrics
            .consistency_wait_label(w.level.label(), waited.as_secs_f64());
        if !positions.known_covers(index, w.epoch, &w.pos) {
            // The lead's wait did not prove it (timed out, replica failed):
            // an own wait, within what is left of the read's time.
            return Ok((!ended || waited >= w.timeout).then_some(Waited::TimedOut));
        }
        let conn = self.backend(index).await?;
        conn.send_command(raw).await?;
        Ok(Some(Waited::Reached))
    }
}

/// Reads and drops a reply; a server error in it is part of the reply.
async fn drain(conn: &mut crate::pool::conn::BackendConn, expect: Expect) -> Result<(), Error> {
    match drain_reply(conn, expect).await {
        Ok(_) | Err(Error::Server(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
