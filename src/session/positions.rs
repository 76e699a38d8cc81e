//! What a session learns of replication positions: its writes' positions
//! from replies, and the position it must read at the session level.

use super::consistency::{merge, ReadMark};
use super::Session;
use crate::classify::{Class, Kind};
use crate::consistency::{self};
use crate::error::Error;
use crate::position::Position;
use std::time::Instant;

impl Session {
    /// What the session learns about positions from a statement's reply on
    /// backend `index`: a read leaves a mark for monotonic reads; a write
    /// whose position the server did not report makes the next read ask the
    /// primary for its position instead of guessing.
    pub(super) fn learn_positions(
        &mut self,
        index: usize,
        class: &Class,
        was_written: bool,
        got_gtid: bool,
        in_trans: bool,
    ) {
        match class.kind {
            Kind::Read | Kind::LockingRead | Kind::Show => {
                let epoch = self
                    .ctx
                    .cluster
                    .positions()
                    .sample(index)
                    .map_or(0, |s| s.epoch);
                self.causal.read_mark = Some(ReadMark {
                    backend: index,
                    epoch,
                    at: Instant::now(),
                });
            }
            _ => {}
        }
        if got_gtid {
            self.causal.need_fresh = false;
            return;
        }
        let may_write = match class.kind {
            Kind::Write | Kind::Call | Kind::Unknown | Kind::Xa | Kind::Execute => true,
            Kind::Commit => was_written,
            _ => false,
        };
        if self.is_primary(index) && may_write && !in_trans {
            self.causal.need_fresh = true;
        }
    }

    /// The session's position for a causal token: its writes and an upper
    /// bound of what it has read.
    pub(super) async fn session_position(&mut self) -> Result<Position, Error> {
        let positions = self.ctx.cluster.positions().clone();
        let timeout = self.policy().consistency.wait_timeout();
        if let Some(mark) = self.causal.read_mark {
            let s = positions.sample(mark.backend);
            let later = s.filter(|s| s.epoch == mark.epoch && s.started > mark.at);
            match later.and_then(|s| s.pos.clone()) {
                Some(p) => merge(&mut self.causal.floor, &p),
                None => self.causal.need_fresh = true,
            }
            self.causal.read_mark = None;
        }
        if self.causal.need_fresh {
            let p = positions.fresh_primary(timeout).await.ok_or_else(|| {
                Error::BackendUnavailable {
                    backend: "primary".into(),
                    address: String::new(),
                    reason: "no position from the primary".into(),
                }
            })?;
            merge(&mut self.causal.floor, &p);
            self.causal.need_fresh = false;
        }
        let mut pos = match positions.flavor() {
            consistency::Flavor::MariaDb => Position::Maria(Default::default()),
            consistency::Flavor::Mysql => Position::Mysql(Default::default()),
        };
        for p in [&self.causal.last_write, &self.causal.floor]
            .into_iter()
            .flatten()
        {
            pos.merge(p);
        }
        Ok(pos)
    }
}
