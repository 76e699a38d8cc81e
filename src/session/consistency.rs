//! Consistency for one session's reads: the level that applies, the
//! position a read must see, the replica that has it (or the one to wait
//! on), the pipelined wait itself, and what the session learns for later
//! reads (its writes' positions, and a floor from what it has read).
//!
//! Monotonic reads: after a read on backend `b` finishes at `t`, the session
//! may move to another replica only once it knows an upper bound of what it
//! read: a poll of `b` sent after `t`, or a fresh primary position. Until
//! then it stays on `b` (a replica's position only moves forward within an
//! epoch).

use std::time::{Duration, Instant};

use crate::classify::Class;
use crate::config::{OnTimeout, Policy};
use crate::consistency::{self, distance, Level};
use crate::error::{echo, Error, ServerError, MAX_ECHO};
use crate::metrics::Served;
use crate::position::Position;
use crate::protocol::consts::com;
use crate::protocol::reply::Expect;
use crate::router::{self, Loads};

use super::global_read::Checked;
use super::plan::Snapshot;
use super::{drain_reply, Session};

/// A read that finished on a backend: what it saw is bounded only by a
/// position learned after `at`.
#[derive(Debug, Clone, Copy)]
pub struct ReadMark {
    pub backend: usize,
    pub epoch: u64,
    pub at: Instant,
}

/// A wait to run before a read on a replica, in the same write.
#[derive(Debug, Clone)]
pub struct Wait {
    pub pos: Position,
    /// The epoch of the replica's position the wait was planned in.
    pub epoch: u64,
    pub level: Level,
    pub timeout: Duration,
    pub on_timeout: OnTimeout,
    /// Global level: the read goes out at once, and the fresh primary
    /// position is checked against the replica's position when it arrives
    /// (see `global_read`); `pos` is then what else the read needs.
    pub check: Option<consistency::FreshTicket>,
}

/// Where a read runs, after consistency.
#[derive(Debug)]
pub enum Plan {
    /// On this backend, without waiting.
    Run(usize),
    /// On this replica, after waiting for a position.
    Wait(usize, Wait),
    /// On the primary: no replica can serve it.
    Primary,
    Fail(Error),
}

/// The outcome of a pipelined wait.
pub enum Waited {
    /// The replica reached the position; the read's reply follows.
    Reached,
    /// It did not in time; the read's reply was read and dropped.
    TimedOut,
    /// Global level: the replica had the fresh primary position before the
    /// read ran; the read's reply follows.
    Covered,
    /// Global level: no fresh primary position in time; the read's reply
    /// was read and dropped and the primary serves the read.
    NoPosition,
}

impl Plan {
    /// The backend the read runs on and the wait before it.
    pub fn into_target(self, primary: usize) -> Result<(usize, Option<Wait>), Error> {
        match self {
            Plan::Run(i) => Ok((i, None)),
            Plan::Wait(i, w) => Ok((i, Some(w))),
            Plan::Primary => Ok((primary, None)),
            Plan::Fail(e) => Err(e),
        }
    }
}

impl Session {
    /// The policy for the session's user and current database.
    pub(super) fn policy(&self) -> std::sync::Arc<Policy> {
        self.ctx
            .cluster
            .config()
            .policy_for(&self.account.user, self.database.as_deref())
            .clone()
    }

    /// The level for a statement: its hint, else the session's `SET CAUSEWAY
    /// CONSISTENCY`, else the user's configured level, else the policy's.
    pub(super) fn level_for(&self, snap: &Snapshot, class: &Class) -> Result<Level, Error> {
        if let Some(h) = &class.hints.consistency {
            return Level::parse(h).ok_or_else(|| bad_value("consistency", h));
        }
        Ok(self
            .causal
            .level_override
            .or_else(|| snap.config.consistency_for(&self.account.user))
            .unwrap_or(snap.policy.consistency.level))
    }

    /// Where a read that the router sent to replica `index` runs. With
    /// `fixed` (a hint or rule named the backend) it runs there, waiting if
    /// needed, or on the primary.
    pub(super) async fn plan_read(
        &mut self,
        snap: &mut Snapshot,
        index: usize,
        class: &Class,
        fixed: bool,
    ) -> Plan {
        let level = match self.level_for(snap, class) {
            Ok(l) => l,
            Err(e) => return Plan::Fail(e),
        };
        self.causal.planned_level = Some(level);
        let mut need: Option<Position> = match &class.hints.after {
            Some(t) => match consistency::decode_token(t) {
                Some(p) => Some(p),
                None => return Plan::Fail(bad_value("after", t)),
            },
            None => None,
        };
        if level == Level::Eventual && need.is_none() {
            return Plan::Run(index);
        }
        let Snapshot {
            topo,
            policy,
            known,
            outstanding,
            lags,
            tick,
            ..
        } = snap;
        let (topo, policy) = (&**topo, &**policy);
        let loads = Loads {
            outstanding,
            tick: *tick,
            lag_ms: lags,
        };
        let cfg = &policy.consistency;
        let positions = self.ctx.cluster.positions().clone();
        let by_position = level != Level::Eventual;
        let eligible = |i: usize| router::may_read(policy, topo, loads, i, by_position);
        let mut sticky = None;
        let mut pending = None;
        match level {
            Level::Eventual => {}
            Level::Session => {
                if self.causal.need_fresh {
                    match positions.fresh_primary(cfg.wait_timeout()).await {
                        Some(p) => {
                            merge(&mut self.causal.last_write, &p);
                            self.causal.need_fresh = false;
                        }
                        None => return Plan::Primary,
                    }
                }
                if let Some(mark) = self.causal.read_mark {
                    let s = positions.sample(mark.backend);
                    let later = s
                        .as_ref()
                        .filter(|s| s.epoch == mark.epoch && s.started > mark.at);
                    if let Some(p) = later.and_then(|s| s.pos.clone()) {
                        merge(&mut self.causal.floor, &p);
                        self.causal.read_mark = None;
                    } else if !self.is_primary(mark.backend)
                        && (!fixed || mark.backend == index)
                        && s.is_some_and(|s| s.epoch == mark.epoch)
                        && eligible(mark.backend)
                    {
                        sticky = Some(mark.backend);
                    } else {
                        match positions.fresh_primary(cfg.wait_timeout()).await {
                            Some(p) => {
                                merge(&mut self.causal.floor, &p);
                                self.causal.read_mark = None;
                            }
                            None => return Plan::Primary,
                        }
                    }
                }
                for p in [&self.causal.last_write, &self.causal.floor]
                    .into_iter()
                    .flatten()
                {
                    merge(&mut need, p);
                }
                // Staying on a replica that is further from what the session
                // needs than another would mean a longer wait: learn an upper
                // bound of what was read there instead, and choose freely.
                if let (Some(b), Some(n)) = (sticky, need.as_ref()) {
                    let dist = |i: usize| {
                        positions
                            .sample(i)
                            .and_then(|s| s.pos.as_ref().map(|p| distance(p, n)))
                            .unwrap_or(u64::MAX)
                    };
                    let mine = dist(b);
                    let closer = mine > 0
                        && (0..topo.backends.len()).any(|i| {
                            i != b && !topo.is_primary(i) && eligible(i) && dist(i) < mine
                        });
                    if closer {
                        match positions.fresh_primary(cfg.wait_timeout()).await {
                            Some(p) => {
                                merge(&mut self.causal.floor, &p);
                                merge(&mut need, &p);
                                self.causal.read_mark = None;
                                sticky = None;
                            }
                            None => return Plan::Primary,
                        }
                    }
                }
            }
            Level::Global => {
                let ticket = positions.request_fresh();
                // The session's own write is in the fresh position: a replica
                // chosen without it would have to run the read again.
                if let Some(w) = &self.causal.last_write {
                    merge(&mut need, w);
                }
                match positions.latest_primary() {
                    // A quiet primary: plan by the newest known position; the
                    // fresh one is checked once the read is under way.
                    Some(p) if positions.primary_quiet() => {
                        merge(&mut need, &p);
                        pending = Some(ticket);
                    }
                    // Writes flow (or nothing is known yet): the fresh
                    // position would not prove a read sent now; plan by it.
                    _ => match ticket.wait(cfg.wait_timeout()).await {
                        Some(p) => merge(&mut need, &p),
                        None => return Plan::Primary,
                    },
                }
            }
            Level::Bounded(bound) => {
                let target = match positions.bounded_target(bound, Instant::now()) {
                    Some(p) => Some(p),
                    None => positions.fresh_primary(cfg.wait_timeout()).await,
                };
                match target {
                    Some(p) => merge(&mut need, &p),
                    None => return Plan::Primary,
                }
            }
        }
        let run = |i: usize, need: Option<&Position>| {
            super::global_read::run_or_check(i, pending.as_ref(), need, level, cfg, &positions)
        };
        // The candidates, walked in topology order without a list: the
        // replica a hint or rule named, else the one the session sticks
        // to, else every eligible replica.
        let only = if fixed { Some(index) } else { sticky };
        let n = topo.backends.len().max(index + 1);
        let is_cand = |i: usize| match only {
            Some(b) => i == b,
            None => eligible(i),
        };
        let cands = (1..n).filter(|&i| is_cand(i));
        let need = match need {
            Some(n) if !n.is_empty() => n,
            need => {
                return match is_cand(index) {
                    true => run(index, need.as_ref()),
                    false => router::pick_from(policy, topo, loads, cands)
                        .map_or(Plan::Primary, |i| run(i, need.as_ref())),
                }
            }
        };
        // One look at each candidate's position (the buffer is the
        // snapshot's, reused from statement to statement).
        known.clear();
        known.extend(cands.clone().filter_map(|i| {
            let s = positions.sample(i)?;
            s.pos.is_some().then_some((i, s))
        }));
        let covers = |s: &consistency::Sample| s.pos.as_ref().is_some_and(|p| p.covers(&need));
        if known.iter().any(|(i, s)| *i == index && covers(s)) {
            return run(index, Some(&need));
        }
        let covering = known.iter().filter(|(_, s)| covers(s)).map(|(i, _)| *i);
        if let Some(i) = router::pick_from(policy, topo, loads, covering) {
            return run(i, Some(&need));
        }
        // The replicas lack even the newest known primary position: a wait
        // is coming anyway, for the fresh position.
        let mut need = need;
        if let Some(ticket) = pending {
            match ticket.wait(cfg.wait_timeout()).await {
                Some(p) => need.merge(&p),
                None => return Plan::Primary,
            }
        }
        // None has it yet: wait on the one closest to it (the router's
        // choice on a tie, then the least busy).
        let best = known.iter().min_by_key(|(i, s)| {
            (
                s.pos.as_ref().map_or(u64::MAX, |p| distance(p, &need)),
                *i != index,
                outstanding.get(*i).copied().unwrap_or(0),
            )
        });
        match best {
            Some((i, s)) => Plan::Wait(
                *i,
                Wait {
                    pos: need,
                    epoch: s.epoch,
                    level,
                    timeout: cfg.wait_timeout(),
                    on_timeout: cfg.on_timeout,
                    check: None,
                },
            ),
            None => Plan::Primary,
        }
    }

    /// Counts a read under a level other than eventual by how it was served.
    pub(super) fn count_consistent(&self, level: Level, served: Served) {
        self.ctx
            .metrics
            .consistency_read_label(level.label(), served);
    }

    /// Sends the wait and then the read to replica `index` in one write,
    /// and reads the wait's reply. On a timeout the read's reply is read
    /// and dropped, so the connection is ready for the next command.
    pub(super) async fn send_with_wait(
        &mut self,
        index: usize,
        w: &Wait,
        raw: &[u8],
        expect: Expect,
    ) -> Result<Waited, Error> {
        let checked;
        let w = match w.check {
            None => w,
            Some(_) => match self.read_then_check(index, w, raw, expect).await? {
                Checked::Done(waited) => return Ok(waited),
                Checked::Wait(retry) => {
                    checked = retry;
                    &checked
                }
            },
        };
        // Global reads of one batch share one wait per replica.
        let _lead = match self.share_wait(index, w, raw).await? {
            Ok(lead) => lead,
            Err(waited) => return Ok(waited),
        };
        let positions = self.ctx.cluster.positions().clone();
        let flavor = positions.flavor();
        let sql = flavor.wait_statement(&w.pos, w.timeout);
        let mut wait_cmd = Vec::with_capacity(sql.len() + 1);
        wait_cmd.push(com::QUERY);
        wait_cmd.extend_from_slice(sql.as_bytes());
        let limit = w.timeout + self.ctx.cluster.config().timeouts.connect();
        let metrics = self.ctx.metrics.clone();
        let conn = self.backend(index).await?;
        conn.send_commands(&[&wait_cmd, raw]).await?;
        let started = Instant::now();
        let reply = match tokio::time::timeout(limit, conn.read_table()).await {
            Ok(r) => r,
            Err(_) => Err(conn.lost(format!("no answer to a position wait in {limit:?}"))),
        };
        metrics.consistency_wait_label(w.level.label(), started.elapsed().as_secs_f64());
        let reached = match reply {
            Ok(t) => {
                let v = t.rows.first().and_then(|r| r.first()).cloned().flatten();
                flavor.wait_reached(v.as_deref())
            }
            Err(Error::Server(_)) => false,
            Err(e) => return Err(e),
        };
        if reached {
            positions.learn(index, w.epoch, &w.pos);
            return Ok(Waited::Reached);
        }
        match drain_reply(conn, expect).await {
            Ok(_) | Err(Error::Server(_)) => Ok(Waited::TimedOut),
            Err(e) => Err(e),
        }
    }
}

pub(super) fn merge(into: &mut Option<Position>, p: &Position) {
    match into {
        Some(q) => q.merge(p),
        None => *into = Some(p.clone()),
    }
}

/// ERROR 1231 (42000), as the server says for a bad variable value (the
/// value cut as the server cuts it: a hint may carry a megabyte).
pub fn bad_value(name: &str, value: &str) -> Error {
    let (name, value) = (echo(name, 64), echo(value, MAX_ECHO));
    Error::Server(ServerError {
        code: 1231,
        sql_state: *b"42000",
        message: format!("Variable '{name}' can't be set to the value of '{value}'"),
    })
}

/// ERROR 1969 (70100): no replica reached the read's position in time and
/// the policy says to fail rather than use the primary.
pub fn wait_timed_out(w: &Wait) -> Error {
    Error::Server(ServerError {
        code: 1969,
        sql_state: *b"70100",
        message: format!(
            "Causeway: no replica reached the position this read needs ({}) within {} ms (consistency={})",
            w.pos,
            w.timeout.as_millis(),
            w.level
        ),
    })
}
