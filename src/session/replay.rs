//! Transaction replay (`[transaction_replay]`, off by default): a
//! transaction open on the primary when that primary is lost, or refuses
//! it as read-only (a switchover), runs again on the new primary, and the
//! client goes on as if nothing happened.
//!
//! While a transaction is open on the primary, the session records each
//! command it sent there (the client's bytes) with a digest of the reply:
//! row and metadata packets and errors byte for byte, OK packets by their
//! affected rows, insert id and warnings (not their status flags or
//! tracked state, which belong to the connection). When the primary
//! fails under the transaction, the session waits for a primary (as
//! writes wait: `timeouts.write_hold_ms`), opens a connection there with
//! the session's state, runs the recorded commands again and compares each
//! digest. Only if every one matches does it run the statement that
//! failed; otherwise the new transaction is rolled back (its connection
//! dropped) and the client gets the error it gets without replay.
//!
//! What is never replayed: a transaction that ran anything
//! [`crate::classify::Class::may_replay`] refuses (assignments, session
//! state, `LAST_INSERT_ID()`, locks, sequences, `LOAD`, DDL, ...), a
//! command answered without the primary, a cursor, a record larger than
//! `transaction_replay.max_bytes`, a failed `COMMIT` on a lost connection
//! (it may have committed: running it again could apply it twice), and a
//! session with a pool (its connections are shared).

use std::hash::Hasher;

use super::retry::Failure;
use super::{Flow, Session};
use crate::error::Error;
use crate::protocol::consts::{com, status};
use crate::protocol::reply::{Expect, Need, Scanner, Seen};
use crate::protocol::response::Ok as OkPacket;

/// A digest of a reply's content (see the module documentation), the
/// same whether its packets were streamed or read whole.
#[derive(Default)]
pub(super) struct ReplyDigest {
    h: std::collections::hash_map::DefaultHasher,
    /// The reply asked the client for something (a `LOCAL INFILE` file):
    /// it cannot be run again without the client.
    broken: bool,
}

impl ReplyDigest {
    /// A packet the relay streams: its length now, its bytes in `streamed`.
    pub(super) fn stream_start(&mut self, len: usize) {
        self.h.write(&(len as u32).to_le_bytes());
    }

    pub(super) fn streamed(&mut self, bytes: &[u8]) {
        self.h.write(bytes);
    }

    /// A packet read whole, as the scanner saw it.
    pub(super) fn packet(&mut self, seen: Seen, payload: &[u8], caps: u32) {
        match seen {
            Seen::Ok { .. } => match OkPacket::decode(payload, caps) {
                Some(ok) => {
                    self.h.write(&[0]);
                    self.h.write(&ok.affected_rows.to_le_bytes());
                    self.h.write(&ok.last_insert_id.to_le_bytes());
                    self.h.write(&ok.warnings.to_le_bytes());
                }
                None => self.broken = true,
            },
            Seen::Eof { .. } => self.h.write(&[0xFE]),
            Seen::LocalInfile | Seen::PrepareOk { .. } => self.broken = true,
            Seen::Err | Seen::Row | Seen::Other => {
                self.stream_start(payload.len());
                self.h.write(payload);
            }
        }
    }

    pub(super) fn finish(self) -> Option<u64> {
        (!self.broken).then(|| self.h.finish())
    }
}

/// The record of the transaction open on the session's primary.
#[derive(Default)]
pub(super) struct Log {
    entries: Vec<Entry>,
    bytes: usize,
    /// Recording since the command that opened the transaction.
    recording: bool,
    /// Why the transaction cannot be replayed, once that is known.
    off: Option<&'static str>,
    /// The digest of the reply the primary sent for the current command.
    pub(super) pending: Option<u64>,
    /// The current command may run again after its connection was lost.
    pub(super) current_safe: bool,
    /// The transaction ran something other than a plain read.
    written: bool,
}

struct Entry {
    raw: Vec<u8>,
    digest: u64,
}

impl Log {
    fn ready(&self) -> bool {
        self.recording && self.off.is_none()
    }
}

/// Commands that leave the transaction as it was: neither recorded nor a
/// reason not to replay.
fn neutral(raw: &[u8]) -> bool {
    matches!(
        raw.first(),
        Some(&(com::PING | com::STMT_PREPARE | com::STMT_CLOSE | com::STATISTICS))
    )
}

impl Session {
    fn replay_enabled(&self) -> bool {
        !self.conns.pooled && self.ctx.cluster.config().transaction_replay.enabled
    }

    /// Whether a command on backend `index` has its reply digested: on
    /// the primary, when replay is on and the transaction (if one is open)
    /// is still replayable.
    pub(super) fn digest_wanted(&self, index: usize) -> bool {
        self.is_primary(index) && self.txn.replay.off.is_none() && self.replay_enabled()
    }

    /// The open transaction on backend `index` can be replayed after a
    /// failure there.
    pub(super) fn replay_ready(&self, index: usize) -> bool {
        self.txn.backend == Some(index)
            && self.is_primary(index)
            && self.txn.replay.ready()
            && self.replay_enabled()
    }

    /// After a command (`raw`, the client's bytes; `was_open`: a
    /// transaction was open on the primary before it): records it while a
    /// transaction is open on the primary, from the command that opened it.
    pub(super) fn settle_replay(&mut self, raw: &[u8], was_open: bool) {
        let pending = self.txn.replay.pending.take();
        let safe = std::mem::take(&mut self.txn.replay.current_safe);
        let open = self.txn.backend.is_some_and(|b| self.is_primary(b));
        if !open || !self.replay_enabled() {
            if self.txn.replay.recording || self.txn.replay.off.is_some() {
                self.txn.replay = Log::default();
            }
            return;
        }
        let max = self.ctx.cluster.config().transaction_replay.max_bytes;
        let written = self.txn.written;
        let log = &mut self.txn.replay;
        if !was_open {
            *log = Log {
                recording: true,
                ..Log::default()
            };
        } else if !log.recording {
            log.off.get_or_insert("it was not recorded from its start");
        }
        log.written = written;
        if log.off.is_some() || neutral(raw) {
            return;
        }
        let cursor =
            raw.first() == Some(&com::STMT_EXECUTE) && raw.get(5).is_some_and(|f| f & 1 != 0);
        match pending {
            Some(digest) if safe && !cursor => {
                log.bytes += raw.len();
                if log.bytes > max {
                    log.off = Some("its statements passed transaction_replay.max_bytes");
                    log.entries = Vec::new();
                } else {
                    log.entries.push(Entry {
                        raw: raw.to_vec(),
                        digest,
                    });
                }
            }
            _ => log.off = Some("it ran a statement that cannot run twice"),
        }
    }

    /// The transaction on backend `index` was lost with `error` (the
    /// connection is dropped already, the session out of the transaction):
    /// a replay is tried when the transaction can be replayed and the
    /// failed command may run again (`refused`: the server refused it, so
    /// it did not run).
    pub(super) fn replay_or(
        &mut self,
        index: usize,
        error: Error,
        seq: u8,
        refused: bool,
    ) -> Result<Flow, Error> {
        let log = &self.txn.replay;
        let can = log.ready()
            && self.is_primary(index)
            && self.replay_enabled()
            && (refused || log.current_safe);
        if !can {
            return Err(error);
        }
        Ok(Flow::Replay(Box::new(Failure { index, error, seq })))
    }

    /// Replays the recorded transaction on the (new) primary after failure
    /// `f`. `Ok`: the transaction is open there again, the failed command
    /// may run. `Err`: the client got `f`'s error (or the session ended).
    pub(super) async fn replay_transaction(&mut self, f: Failure) -> Result<(), Flow> {
        let log = std::mem::take(&mut self.txn.replay);
        let started = std::time::Instant::now();
        let result = self.replay_log(&log).await;
        let label = match &result {
            Ok(()) => "done",
            Err(Mismatch::Differs(_)) => "mismatch",
            Err(Mismatch::Failed(_)) => "failed",
        };
        metrics::counter!(crate::metrics::TRANSACTION_REPLAYS, "result" => label).increment(1);
        match result {
            Ok(()) => {
                tracing::info!(
                    session = self.id,
                    statements = log.entries.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "transaction replayed on the new primary"
                );
                self.txn.replay = Log {
                    current_safe: log.current_safe,
                    ..log
                };
                Ok(())
            }
            Err(why) => {
                let why = match why {
                    Mismatch::Differs(i) => format!(
                        "replaying it on the new primary, statement {} returned something else",
                        i + 1
                    ),
                    Mismatch::Failed(e) => format!("replaying it on the new primary failed: {e}"),
                };
                tracing::warn!(session = self.id, reason = %why, "transaction not replayed");
                let p = self.primary;
                if let Some(c) = self.conns.open.get_mut(p) {
                    *c = None;
                }
                self.txn.backend = None;
                self.txn.written = false;
                self.txn.primary_use = None;
                self.status &= !status::IN_TRANS;
                let e = match f.error {
                    Error::TransactionLost { backend, reason } => Error::TransactionLost {
                        backend,
                        reason: format!("{reason}; {why}"),
                    },
                    other => other,
                };
                Err(self.fail(f.seq, &e).await)
            }
        }
    }

    async fn replay_log(&mut self, log: &Log) -> Result<(), Mismatch> {
        // Nothing recorded opens the transaction again: nothing to run
        // the failed statement inside.
        if log.entries.is_empty() {
            return Err(Mismatch::Differs(0));
        }
        let p = self.primary_now().await.map_err(Mismatch::Failed)?;
        for (i, entry) in log.entries.iter().enumerate() {
            let digest = self
                .replay_one(p, &entry.raw)
                .await
                .map_err(Mismatch::Failed)?;
            if digest != Some(entry.digest) {
                return Err(Mismatch::Differs(i));
            }
            let st = self
                .conns
                .open
                .get(p)
                .and_then(|c| c.as_ref())
                .map_or(0, |c| c.status);
            // The first command must open the transaction again (else a
            // data change would have committed on its own).
            if st & status::IN_TRANS == 0 {
                return Err(Mismatch::Differs(i));
            }
        }
        self.txn.backend = Some(p);
        self.txn.written = log.written;
        self.status |= status::IN_TRANS;
        self.txn.primary_use = Some(self.ctx.cluster.use_primary(p));
        Ok(())
    }

    /// Runs one recorded command on backend `p`; the digest of its reply.
    async fn replay_one(&mut self, p: usize, raw: &[u8]) -> Result<Option<u64>, Error> {
        self.sync(p).await?;
        let payload = match raw.first() {
            Some(&com::STMT_EXECUTE) => {
                let id = raw
                    .get(1..5)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let backend_id = self.ensure_prepared(id, p).await?;
                self.execute_payload(id, p, backend_id, raw)
            }
            _ => raw.to_vec(),
        };
        let conn = self.backend(p).await?;
        conn.send_command(&payload).await?;
        digest_reply(conn, Expect::ResultSets).await
    }
}

enum Mismatch {
    /// The recorded statement at this index returned something else.
    Differs(usize),
    Failed(Error),
}

/// Reads a reply, its digest as the relay computes it.
async fn digest_reply(
    conn: &mut crate::pool::conn::BackendConn,
    expect: Expect,
) -> Result<Option<u64>, Error> {
    let mut sc = Scanner::new(expect, conn.capabilities);
    let mut d = ReplyDigest::default();
    while !sc.is_done() {
        let (h, p) = conn
            .stream
            .read_packet()
            .await
            .map_err(|e| conn.lost(crate::pool::conn::read_reason(&e)))?;
        match sc.header(h, p.first().copied()) {
            Need::Whole => {
                let seen = sc.packet(h, &p).map_err(|_| Error::BackendProtocol {
                    backend: conn.backend.clone(),
                })?;
                d.packet(seen, &p, conn.capabilities);
            }
            Need::Stream => {
                d.stream_start(h.len);
                d.streamed(&p);
            }
        }
    }
    if let Some(st) = sc.last_status() {
        conn.status = st;
    }
    Ok(d.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_packet_digests_as_the_same_packet_read_whole() {
        let payload = b"\x03abc\x03def";
        let mut whole = ReplyDigest::default();
        whole.packet(Seen::Row, payload, 0);
        let mut streamed = ReplyDigest::default();
        streamed.stream_start(payload.len());
        streamed.streamed(&payload[..3]);
        streamed.streamed(&payload[3..]);
        assert_eq!(whole.finish(), streamed.finish());
    }

    #[test]
    fn replies_that_differ_in_a_row_differ_in_digest() {
        let mut a = ReplyDigest::default();
        a.packet(Seen::Row, b"\x011", 0);
        let mut b = ReplyDigest::default();
        b.packet(Seen::Row, b"\x012", 0);
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn a_local_infile_reply_has_no_digest() {
        let mut d = ReplyDigest::default();
        d.packet(Seen::LocalInfile, b"\xfbfile", 0);
        assert_eq!(d.finish(), None);
    }
}
