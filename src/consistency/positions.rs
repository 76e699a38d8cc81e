//! What Causeway knows about every backend's replication position.
//!
//! The monitor's position pollers record one [`Sample`] per backend per
//! poll; sessions read them without locks (one `ArcSwap` per backend) and
//! add what they learn from successful waits. The primary's samples also go
//! into a short history (for bounded staleness and for replica lag in
//! time). A read at global level asks for a *fresh* primary position: one
//! whose poll started after the read arrived. At most one such poll is in
//! flight; reads that arrive meanwhile share the next one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use super::Flavor;
use crate::position::Position;

/// One backend's position as last learned.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `None` until the first successful poll (and after a failed one).
    pub pos: Option<Position>,
    /// When the poll that produced `pos` was sent: the backend had at least
    /// `pos` at that moment, and at most `pos` before it.
    pub started: Instant,
    /// Changes when the backend's history may have changed under us: a
    /// reconnect (restart) or a position that does not cover the previous
    /// one (re-pointed, reset). What was learned in an older epoch is void.
    pub epoch: u64,
    /// Replicas: how far behind the primary, in time, from the primary's
    /// position history: the replica has everything the primary had this
    /// long before the sample. `None` when history cannot tell.
    pub lag_ms: Option<u64>,
}

/// The primary's position over a stretch of time: polls that returned the
/// same position collapse into one entry.
#[derive(Debug, Clone)]
struct Entry {
    /// Start of the last poll that returned `pos`.
    last: Instant,
    pos: Position,
}

/// How long the primary's history reaches back.
const HISTORY: Duration = Duration::from_secs(120);
const HISTORY_ENTRIES: usize = 8192;

/// A fresh primary poll under load starts as soon as this many reads wait
/// for it: each poll then serves at least this many reads (at most 0.1
/// polls per read), and reads never wait out the spacing for it.
pub const POLL_BATCH: u64 = 10;

/// The most credit reads save up, in tenths of a poll: two polls' worth, so
/// a quiet stretch does not pay for a run of small batches later.
const CREDIT_CAP: i64 = 2 * POLL_BATCH as i64;

/// What a poll that served `n` reads costs, in tenths of a poll: a full
/// batch pays for itself; a partial one costs a little more than a batch's
/// worth, so polls for partial batches stay below one per [`POLL_BATCH`]
/// reads even with the lone and late polls that credit does not gate.
fn poll_cost(n: u64) -> i64 {
    if n >= POLL_BATCH {
        POLL_BATCH as i64
    } else {
        POLL_BATCH as i64 + 1
    }
}

/// A partial batch without credit still gets its poll this many spacings
/// after the last poll started (few concurrent reads are never stuck).
pub const SPACING_LIMIT: u32 = 4;

/// How many unchanged primary polls in a row make the primary quiet. Under
/// a read-write load two (a gap of ~2 ms between writes) came often enough
/// that about 5 % of global reads were sent early, missed and ran twice;
/// with four, about 1.3 %. Read-only load is quiet either way.
pub const QUIET_POLLS: u64 = 4;

/// The result of a fresh primary position request, by poll generation.
#[derive(Debug, Clone, Default)]
struct Fresh {
    generation: u64,
    pos: Option<Position>,
}

/// A global read's wait in flight on one replica, that other global reads
/// needing no more than `pos` may follow instead of sending their own.
struct Shared {
    pos: Position,
    epoch: u64,
    id: u64,
    /// Dropped (closing every follower's receiver) when the lead's wait is
    /// over, after what it proved was learned.
    _done: watch::Sender<()>,
    rx: watch::Receiver<()>,
}

/// What a global read that is about to wait on a replica does (see
/// [`Positions::share_wait`]).
pub enum WaitShare {
    /// Sends its own wait; others may follow it until the guard drops.
    Lead(LeadGuard),
    /// Waits for the lead's wait to end, then checks what was learned.
    Follow(watch::Receiver<()>),
    /// Sends its own wait, unshared.
    Alone,
}

/// Ends a shared wait when dropped: its followers wake up.
pub struct LeadGuard {
    positions: Arc<Positions>,
    index: usize,
    id: u64,
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.positions.shared.get(self.index) {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            if s.as_ref().is_some_and(|s| s.id == self.id) {
                *s = None;
            }
        }
    }
}

pub struct Positions {
    samples: Vec<ArcSwap<Sample>>,
    /// Per backend, the shared global-read wait in flight on it.
    shared: Vec<Mutex<Option<Shared>>>,
    shared_ids: AtomicU64,
    history: Mutex<VecDeque<Entry>>,
    /// Primary polls sent so far (the generation of the latest).
    started: AtomicU64,
    /// Readers waiting for a fresh primary position.
    demand: Notify,
    /// Readers that asked since the last primary poll started, and how many
    /// the last poll served.
    askers: AtomicU64,
    last_batch: AtomicU64,
    /// When the last primary poll started (the poller's clock).
    last_start: Mutex<Option<tokio::time::Instant>>,
    fresh: watch::Sender<Fresh>,
    flavor: AtomicU8,
    /// How many primary polls in a row found the position unchanged; 0
    /// also after a global read sent early was not proven by its fresh
    /// position.
    quiet_polls: AtomicU64,
    /// Reads' credit for primary polls, in tenths of a poll: each fresh
    /// position request adds one, each poll that serves requests takes
    /// [`POLL_BATCH`] (a partial batch a little more). A partial batch is polled for at the spacing only
    /// while the credit allows it (see [`Positions::primary_poll_due`]).
    credit: AtomicI64,
    /// The primary's index (`usize::MAX`: none), as the monitor observed it.
    primary: AtomicUsize,
    /// Wakes pollers when the primary changes.
    roles: Notify,
    /// The next primary sample starts a new history (a new primary).
    new_primary: AtomicBool,
}

impl Positions {
    pub fn new(backends: usize) -> Arc<Positions> {
        let now = Instant::now();
        Arc::new(Positions {
            samples: (0..backends)
                .map(|_| {
                    ArcSwap::from_pointee(Sample {
                        pos: None,
                        started: now,
                        epoch: 0,
                        lag_ms: None,
                    })
                })
                .collect(),
            shared: (0..backends).map(|_| Mutex::new(None)).collect(),
            shared_ids: AtomicU64::new(0),
            history: Mutex::new(VecDeque::new()),
            started: AtomicU64::new(0),
            demand: Notify::new(),
            askers: AtomicU64::new(0),
            last_batch: AtomicU64::new(0),
            last_start: Mutex::new(None),
            fresh: watch::channel(Fresh::default()).0,
            flavor: AtomicU8::new(0),
            quiet_polls: AtomicU64::new(0),
            credit: AtomicI64::new(CREDIT_CAP),
            primary: AtomicUsize::new(if backends > 0 { 0 } else { usize::MAX }),
            roles: Notify::new(),
            new_primary: AtomicBool::new(false),
        })
    }

    /// The primary's index, as last set by the monitor.
    pub fn primary(&self) -> Option<usize> {
        Some(self.primary.load(Ordering::SeqCst)).filter(|&i| i != usize::MAX)
    }

    /// Records a change of roles: `primary`'s polls become the primary's
    /// (a history of their own), every poller asks again at once.
    pub fn set_primary(&self, primary: Option<usize>) {
        let old = self
            .primary
            .swap(primary.unwrap_or(usize::MAX), Ordering::SeqCst);
        if old != primary.unwrap_or(usize::MAX) {
            self.new_primary.store(true, Ordering::SeqCst);
            self.roles.notify_waiters();
        }
    }

    /// Resolves at the next change of roles.
    pub async fn primary_changed(&self) {
        self.roles.notified().await
    }

    pub fn flavor(&self) -> Flavor {
        match self.flavor.load(Ordering::Relaxed) {
            1 => Flavor::Mysql,
            _ => Flavor::MariaDb,
        }
    }

    pub fn set_flavor(&self, f: Flavor) {
        self.flavor
            .store(matches!(f, Flavor::Mysql) as u8, Ordering::Relaxed);
    }

    /// Backend `i`'s latest sample.
    pub fn sample(&self, i: usize) -> Option<Arc<Sample>> {
        self.samples.get(i).map(|s| s.load_full())
    }

    /// Position lag in milliseconds per backend (the primary's is always
    /// `Some(0)` once known).
    pub fn lags_ms(&self, out: &mut Vec<Option<u64>>) {
        out.clear();
        out.extend(self.samples.iter().map(|s| s.load().lag_ms));
    }

    /// The generation the next primary poll will carry; called by the
    /// primary's poller just before it sends the query.
    pub fn primary_poll_starting(&self) -> u64 {
        let g = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let n = self.askers.swap(0, Ordering::SeqCst);
        self.last_batch.store(n, Ordering::Relaxed);
        if n > 0 {
            // Clamped: a lone client's polls (each paid by one read) must
            // not leave a debt that holds back the batches after it.
            let _ = self
                .credit
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                    Some((c - poll_cost(n)).max(-CREDIT_CAP))
                });
        }
        *self.last_start.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio::time::Instant::now());
        g
    }

    /// How many readers the last primary poll served (asked before it
    /// started): more than one means reads are concurrent enough to share.
    pub fn last_batch(&self) -> u64 {
        self.last_batch.load(Ordering::Relaxed)
    }

    /// Waits until the next primary poll is due: readers want a fresh
    /// position and either
    /// - [`POLL_BATCH`] of them wait (under load a poll starts as soon as it
    ///   serves enough reads, with no idle gap after the previous one),
    /// - or the last poll served at most one read (a lone client is never
    ///   held back),
    /// - or `spacing` has passed since the last poll started and the reads'
    ///   credit is not spent (fewer concurrent reads wait at most that long
    ///   for their poll to start, and small batches never push the polls
    ///   above one per [`POLL_BATCH`] reads for long),
    /// - or [`SPACING_LIMIT`] spacings have passed (few reads are never
    ///   stuck waiting for credit);
    ///
    /// or `idle` passes (the periodic poll). Returns whether readers asked.
    pub async fn primary_poll_due(&self, idle: Duration, spacing: Duration) -> bool {
        let idle_at = tokio::time::Instant::now() + idle;
        loop {
            let waiting = self.askers.load(Ordering::SeqCst);
            let at = if waiting == 0 {
                idle_at
            } else if waiting >= POLL_BATCH || self.last_batch() <= 1 {
                return true;
            } else {
                let last = *self.last_start.lock().unwrap_or_else(|e| e.into_inner());
                let now = tokio::time::Instant::now();
                match last {
                    Some(t) if t + spacing > now => t + spacing,
                    Some(t) if self.credit.load(Ordering::SeqCst) < 0 => {
                        let limit = t + spacing * SPACING_LIMIT;
                        if limit <= now {
                            return true;
                        }
                        limit
                    }
                    _ => return true,
                }
            };
            tokio::select! {
                _ = self.demand.notified() => {}
                // Readers' deadlines are checked again (credit may have come).
                _ = tokio::time::sleep_until(at) => if waiting == 0 {
                    return false;
                },
            }
        }
    }

    /// Records a poll of backend `i` sent at `started`. `reconnected` says
    /// the poller had to open a new connection for it (the server may have
    /// restarted). A failed poll (`None`) forgets the position.
    pub fn record(
        &self,
        i: usize,
        started: Instant,
        pos: Option<Position>,
        reconnected: bool,
        generation: Option<u64>,
    ) {
        let Some(slot) = self.samples.get(i) else {
            return;
        };
        let old = slot.load_full();
        let moved_back = match (&old.pos, &pos) {
            (Some(o), Some(n)) => !n.covers(o),
            _ => false,
        };
        let epoch = if reconnected || moved_back || pos.is_none() != old.pos.is_none() {
            old.epoch + 1
        } else {
            old.epoch
        };
        let is_primary = self.primary() == Some(i);
        let lag_ms = match (&pos, is_primary) {
            (Some(_), true) => Some(0),
            (Some(p), false) => self.lag_of(p, started),
            (None, _) => None,
        };
        if is_primary {
            if matches!((&old.pos, &pos), (Some(o), Some(n)) if o == n) {
                self.quiet_polls.fetch_add(1, Ordering::Relaxed);
            } else {
                self.quiet_polls.store(0, Ordering::Relaxed);
            }
            if let Some(p) = &pos {
                let fresh_start = self.new_primary.swap(false, Ordering::SeqCst);
                self.remember(started, p, moved_back || reconnected || fresh_start);
            }
        }
        slot.store(Arc::new(Sample {
            pos: pos.clone(),
            started,
            epoch,
            lag_ms,
        }));
        if let Some(generation) = generation {
            self.fresh.send_replace(Fresh { generation, pos });
        }
    }

    /// A successful wait proved backend `i` has at least `pos` (in the
    /// epoch the wait was planned in).
    pub fn learn(&self, i: usize, epoch: u64, pos: &Position) {
        let Some(slot) = self.samples.get(i) else {
            return;
        };
        slot.rcu(|s| {
            let mut s = Sample::clone(s);
            if s.epoch == epoch {
                match &mut s.pos {
                    Some(p) if !p.covers(pos) => p.merge(pos),
                    Some(_) => {}
                    None => {}
                }
            }
            s
        });
    }

    fn remember(&self, at: Instant, pos: &Position, reset: bool) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if reset {
            h.clear();
        }
        match h.back_mut() {
            Some(e) if &e.pos == pos => e.last = at,
            _ => h.push_back(Entry {
                last: at,
                pos: pos.clone(),
            }),
        }
        while h.len() > HISTORY_ENTRIES
            || h.front()
                .is_some_and(|e| at.duration_since(e.last) > HISTORY)
        {
            h.pop_front();
        }
    }

    /// A replica at `pos` (sampled at `at`) has everything the primary had
    /// at the newest history entry it covers: its lag is the time since
    /// then, or 0 when it covers the newest entry.
    fn lag_of(&self, pos: &Position, at: Instant) -> Option<u64> {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let newest = h.back()?;
        if pos.covers(&newest.pos) {
            return Some(0);
        }
        let covered = h.iter().rev().find(|e| pos.covers(&e.pos))?;
        Some(at.saturating_duration_since(covered.last).as_millis() as u64)
    }

    /// The position a bounded-staleness read must see: the primary's
    /// position at the earliest poll sent at or after `now - bound` (it holds
    /// every write committed before then). `None` when no poll that recent
    /// exists yet.
    pub fn bounded_target(&self, bound: Duration, now: Instant) -> Option<Position> {
        let since = now.checked_sub(bound)?;
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().find(|e| e.last >= since).map(|e| e.pos.clone())
    }

    /// The primary's position from a poll sent after this call: what every
    /// write committed before now is covered by. Concurrent callers share
    /// one poll. `None` when the primary did not answer within `timeout`.
    pub async fn fresh_primary(&self, timeout: Duration) -> Option<Position> {
        self.request_fresh().wait(timeout).await
    }

    /// Asks for the primary's position from a poll sent after this call,
    /// without waiting for it: the caller may do other work (send a read)
    /// while the poll is under way, then [`FreshTicket::wait`] for it.
    pub fn request_fresh(&self) -> FreshTicket {
        // Subscribe before reading the generation: a result published in
        // between is seen by `wait` (it checks the current value first).
        let rx = self.fresh.subscribe();
        let need = self.started.load(Ordering::SeqCst) + 1;
        let n = self.askers.fetch_add(1, Ordering::SeqCst) + 1;
        let credit = self
            .credit
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some((c + 1).min(CREDIT_CAP))
            })
            .unwrap_or(0);
        // The poller needs waking only when a poll may become due: the
        // first reader since the last poll started, the batch's last, and
        // the one whose credit pays for a partial batch.
        if n == 1 || n == POLL_BATCH || credit == -1 {
            self.demand.notify_one();
        }
        FreshTicket { rx, need }
    }

    /// Whether the primary is quiet: its latest polls found the same
    /// position, and no read sent before its fresh position arrived has
    /// failed its check since. Then a fresh position will most
    /// likely equal the newest known one, and a global read sent before it
    /// arrives will most likely be proven by it; while writes flow it will
    /// not, and the read is better sent once the fresh position is known.
    /// Only a hint for planning, like [`Positions::latest_primary`].
    pub fn primary_quiet(&self) -> bool {
        self.quiet_polls.load(Ordering::Relaxed) >= QUIET_POLLS
    }

    /// A global read sent before its fresh position was not proven by it:
    /// writes flow again; plan the next reads by fresh positions until
    /// the primary is quiet again.
    pub fn early_read_missed(&self) {
        self.quiet_polls.store(0, Ordering::Relaxed);
    }

    /// A global read is about to wait on replica `i` for `pos` (planned in
    /// `epoch`). The reads of one fresh position's batch all need the same
    /// position at once; one wait statement per replica serves them: the
    /// first leads (sends its wait with its read), the others follow (wait
    /// for the lead's wait to end, then run without a wait statement if
    /// what it proved, [`Positions::learn`]ed, covers them). Only a way to
    /// spare the servers wait statements: a follower is served by what a
    /// successful wait proved, as any later read would be.
    pub fn share_wait(self: &Arc<Self>, i: usize, epoch: u64, pos: &Position) -> WaitShare {
        let Some(slot) = self.shared.get(i) else {
            return WaitShare::Alone;
        };
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        match &*s {
            Some(w) if w.epoch == epoch && w.pos.covers(pos) => WaitShare::Follow(w.rx.clone()),
            Some(_) => WaitShare::Alone,
            None => {
                let id = self.shared_ids.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = watch::channel(());
                *s = Some(Shared {
                    pos: pos.clone(),
                    epoch,
                    id,
                    _done: tx,
                    rx,
                });
                WaitShare::Lead(LeadGuard {
                    positions: self.clone(),
                    index: i,
                    id,
                })
            }
        }
    }

    /// Whether backend `i`'s known position (in `epoch`) covers `pos`.
    pub fn known_covers(&self, i: usize, epoch: u64, pos: &Position) -> bool {
        self.sample(i)
            .is_some_and(|s| s.epoch == epoch && s.pos.as_ref().is_some_and(|p| p.covers(pos)))
    }

    /// The newest primary position known (periodic and fresh polls both
    /// record it): what a read that starts now will most likely need. Only a
    /// hint for planning; it proves nothing about writes after its poll.
    pub fn latest_primary(&self) -> Option<Position> {
        self.sample(0).and_then(|s| s.pos.clone())
    }
}

/// A pending request for a fresh primary position (see
/// [`Positions::request_fresh`]).
#[derive(Debug, Clone)]
pub struct FreshTicket {
    rx: watch::Receiver<Fresh>,
    /// The first poll generation that started after the request.
    need: u64,
}

impl FreshTicket {
    /// The position from the first primary poll that started after the
    /// request. `None` when the primary did not answer within `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Option<Position> {
        let wait = async {
            loop {
                {
                    let v = self.rx.borrow_and_update();
                    if v.generation >= self.need {
                        return v.pos.clone();
                    }
                }
                if self.rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}
