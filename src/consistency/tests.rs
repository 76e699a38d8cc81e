use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::positions::{POLL_BATCH, QUIET_POLLS};
use super::*;

fn m(s: &str) -> Position {
    Position::parse_maria(s).unwrap()
}

#[test]
fn levels_parse_and_display() {
    assert_eq!(Level::parse("eventual"), Some(Level::Eventual));
    assert_eq!(Level::parse("'SESSION'"), Some(Level::Session));
    assert_eq!(Level::parse(" Global "), Some(Level::Global));
    assert_eq!(
        Level::parse("bounded:200ms"),
        Some(Level::Bounded(Duration::from_millis(200)))
    );
    assert_eq!(
        Level::parse("bounded:2s"),
        Some(Level::Bounded(Duration::from_secs(2)))
    );
    assert_eq!(
        Level::parse("bounded:150"),
        Some(Level::Bounded(Duration::from_millis(150)))
    );
    for bad in [
        "",
        "strong",
        "bounded",
        "bounded:",
        "bounded:1h",
        "bounded:-1ms",
    ] {
        assert_eq!(Level::parse(bad), None, "{bad}");
    }
    for l in ["eventual", "session", "global", "bounded:200ms"] {
        assert_eq!(Level::parse(l).unwrap().to_string(), l);
    }
}

#[test]
fn flavours_speak_their_own_sql() {
    let p = m("0-1-42,1-2-7");
    assert_eq!(
        Flavor::MariaDb.wait_statement(&p, Duration::from_millis(1500)),
        "SELECT MASTER_GTID_WAIT('0-1-42,1-2-7', 1.500)"
    );
    let set = Position::parse_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
    assert_eq!(
        Flavor::Mysql.wait_statement(&set, Duration::from_millis(250)),
        "SELECT WAIT_FOR_EXECUTED_GTID_SET('3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5', 0.250)"
    );
    assert_eq!(
        Flavor::MariaDb.position_query(true),
        "SELECT @@gtid_binlog_pos"
    );
    assert_eq!(
        Flavor::MariaDb.position_query(false),
        "SELECT @@gtid_slave_pos"
    );
    assert_eq!(
        Flavor::Mysql.position_query(false),
        "SELECT @@GLOBAL.gtid_executed"
    );
    assert_eq!(
        Flavor::Mysql.tracking_setup(),
        Some("SET SESSION session_track_gtids = OWN_GTID")
    );
    assert!(Flavor::MariaDb.wait_reached(Some("0")));
    assert!(!Flavor::MariaDb.wait_reached(Some("-1")));
    assert!(!Flavor::Mysql.wait_reached(Some("1")));
    assert!(!Flavor::Mysql.wait_reached(None));
    assert_eq!(
        Flavor::from_version("10.11.6-MariaDB-0+deb12u1"),
        Flavor::MariaDb
    );
    assert_eq!(
        Flavor::from_version("5.5.5-10.11.6-MariaDB"),
        Flavor::MariaDb
    );
    assert_eq!(Flavor::from_version("8.0.36"), Flavor::Mysql);
    assert_eq!(
        Flavor::Mysql.parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
        Some(set)
    );
    assert_eq!(Flavor::MariaDb.parse("0-1-5"), Some(m("0-1-5")));
    assert_eq!(Flavor::MariaDb.parse("x"), None);
}

#[test]
fn tokens_round_trip_and_reject_garbage() {
    for p in [
        m("0-1-42,1-2-7"),
        m(""),
        Position::parse_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7").unwrap(),
    ] {
        let t = encode_token(&p);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()), "{t}");
        assert_eq!(decode_token(&t), Some(p));
    }
    for bad in [
        "",
        "cw1",
        "cw1m0",
        "cw1mzz",
        "cw2m3030",
        "cw1q3030",
        "cw1m2d2d2d",
    ] {
        assert_eq!(decode_token(bad), None, "{bad}");
    }
}

#[test]
fn distance_counts_missing_transactions() {
    assert_eq!(distance(&m("0-1-10"), &m("0-1-10")), 0);
    assert_eq!(distance(&m("0-1-10"), &m("0-1-7")), 0);
    assert_eq!(distance(&m("0-1-7"), &m("0-1-10")), 3);
    assert_eq!(distance(&m("0-1-7"), &m("0-1-10,1-2-4")), 7);
    let a = Position::parse_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
    let b = Position::parse_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9").unwrap();
    assert_eq!(distance(&a, &b), 4);
    assert_eq!(distance(&b, &a), 0);
    assert_eq!(distance(&a, &m("0-1-1")), u64::MAX);
}

#[test]
fn samples_keep_epochs_and_learned_positions() {
    let p = Positions::new(2);
    let t0 = Instant::now();
    p.record(1, t0, Some(m("0-1-5")), true, None);
    let e = p.sample(1).unwrap().epoch;
    p.record(1, t0, Some(m("0-1-6")), false, None);
    assert_eq!(
        p.sample(1).unwrap().epoch,
        e,
        "moving forward keeps the epoch"
    );
    p.learn(1, e, &m("0-1-9"));
    assert_eq!(p.sample(1).unwrap().pos, Some(m("0-1-9")));
    p.learn(1, e + 7, &m("0-1-20"));
    assert_eq!(
        p.sample(1).unwrap().pos,
        Some(m("0-1-9")),
        "a wait planned in another epoch teaches nothing"
    );
    p.record(1, t0, Some(m("0-1-3")), false, None);
    let s = p.sample(1).unwrap();
    assert_eq!(s.pos, Some(m("0-1-3")), "judged by its real position");
    assert!(s.epoch > e, "moving back starts a new epoch");
    p.record(1, t0, Some(m("0-1-3")), true, None);
    assert!(
        p.sample(1).unwrap().epoch > s.epoch,
        "a reconnect starts one too"
    );
    p.record(1, t0, None, false, None);
    assert_eq!(p.sample(1).unwrap().pos, None);
}

#[test]
fn history_gives_bounded_targets_and_replica_lag() {
    let p = Positions::new(2);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    p.record(0, at(0), Some(m("0-1-1")), true, None);
    p.record(0, at(100), Some(m("0-1-1")), false, None);
    p.record(0, at(200), Some(m("0-1-5")), false, None);
    p.record(0, at(300), Some(m("0-1-9")), false, None);
    // Every write committed before now-T is in the first poll sent after it.
    assert_eq!(
        p.bounded_target(Duration::from_millis(250), at(300)),
        Some(m("0-1-1"))
    );
    assert_eq!(
        p.bounded_target(Duration::from_millis(150), at(300)),
        Some(m("0-1-5"))
    );
    assert_eq!(
        p.bounded_target(Duration::from_millis(50), at(300)),
        Some(m("0-1-9"))
    );
    assert_eq!(p.bounded_target(Duration::from_millis(50), at(400)), None);
    // A replica at 0-1-5 had what the primary had at 200 ms.
    p.record(1, at(300), Some(m("0-1-5")), true, None);
    assert_eq!(p.sample(1).unwrap().lag_ms, Some(100));
    p.record(1, at(320), Some(m("0-1-1")), false, None);
    assert_eq!(p.sample(1).unwrap().lag_ms, Some(220));
    p.record(1, at(330), Some(m("0-1-9")), false, None);
    assert_eq!(p.sample(1).unwrap().lag_ms, Some(0));
    p.record(1, at(340), Some(m("5-1-9")), false, None);
    assert_eq!(p.sample(1).unwrap().lag_ms, None, "history cannot tell");
    let mut lags = Vec::new();
    p.lags_ms(&mut lags);
    assert_eq!(lags, vec![Some(0), None]);
}

/// Concurrent global reads share primary polls: each gets a position from a
/// poll sent after it asked, and there are far fewer polls than reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_primary_positions_are_shared_and_never_older_than_the_request() {
    let p = Positions::new(1);
    let seq = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let poller = {
        let (p, seq, polls) = (p.clone(), seq.clone(), polls.clone());
        tokio::spawn(async move {
            loop {
                p.primary_poll_due(Duration::from_secs(60), Duration::ZERO)
                    .await;
                let g = p.primary_poll_starting();
                let at = Instant::now();
                // The "primary" position when the poll is sent.
                let v = seq.load(Ordering::SeqCst);
                polls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                p.record(0, at, Some(m(&format!("0-1-{v}"))), false, Some(g));
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..16 {
        let (p, seq) = (p.clone(), seq.clone());
        readers.push(tokio::spawn(async move {
            for _ in 0..50 {
                // A "write" committed before the read starts.
                let committed = seq.fetch_add(1, Ordering::SeqCst) + 1;
                let got = p.fresh_primary(Duration::from_secs(10)).await.unwrap();
                assert!(
                    got.covers(&m(&format!("0-1-{committed}"))),
                    "{got} misses write {committed}"
                );
            }
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    poller.abort();
    let polls = polls.load(Ordering::SeqCst);
    assert!(polls < 16 * 50 / 2, "{polls} polls for 800 reads");
}

/// A primary poll that has served `n` readers (so the next ones count as
/// concurrent when `n > 1`).
fn served(p: &Positions, n: u64) -> u64 {
    for _ in 0..n {
        drop(p.request_fresh());
    }
    p.primary_poll_starting()
}

const IDLE: Duration = Duration::from_secs(60);
const SPACING: Duration = Duration::from_millis(2);

/// Under load a poll starts the moment the batch's last reader asks: no
/// read waits out the spacing once enough reads share the poll.
#[tokio::test(start_paused = true)]
async fn a_poll_starts_as_soon_as_a_batch_of_reads_waits() {
    let p = Positions::new(1);
    served(&p, 16);
    let start = tokio::time::Instant::now();
    let _first: Vec<_> = (0..POLL_BATCH - 1).map(|_| p.request_fresh()).collect();
    // One short of a batch: not due before the spacing (the clock only
    // moves when every task sleeps, so this proves no early start).
    let early = tokio::time::timeout(SPACING / 2, p.primary_poll_due(IDLE, SPACING)).await;
    assert!(early.is_err(), "a poll started for less than a batch");
    let _last = p.request_fresh();
    assert!(p.primary_poll_due(IDLE, SPACING).await, "readers asked");
    assert_eq!(
        start.elapsed(),
        SPACING / 2,
        "no wait once the batch is full"
    );
}

/// Fewer concurrent reads than a batch wait for their poll to start at
/// most the spacing after the previous one started.
#[tokio::test(start_paused = true)]
async fn a_partial_batch_waits_at_most_the_spacing() {
    let p = Positions::new(1);
    served(&p, 3);
    let start = tokio::time::Instant::now();
    let _t = p.request_fresh();
    assert!(p.primary_poll_due(IDLE, SPACING).await);
    assert_eq!(start.elapsed(), SPACING);
    // The spacing counts from the last poll's start: when it has passed
    // already, the poll starts at once.
    served(&p, 3);
    tokio::time::advance(SPACING * 2).await;
    let _t = p.request_fresh();
    let at = tokio::time::Instant::now();
    assert!(p.primary_poll_due(IDLE, SPACING).await);
    assert_eq!(at.elapsed(), Duration::ZERO);
}

/// A lone client (the last poll served at most one read) is never held
/// back, and without readers the poll is the periodic one.
#[tokio::test(start_paused = true)]
async fn a_lone_reader_is_served_at_once_and_idle_polls_are_periodic() {
    let p = Positions::new(1);
    served(&p, 1);
    let start = tokio::time::Instant::now();
    assert!(!p.primary_poll_due(IDLE, SPACING).await, "nobody asked");
    assert_eq!(start.elapsed(), IDLE);
    let at = tokio::time::Instant::now();
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.primary_poll_due(IDLE, SPACING).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let _t = p.request_fresh();
    assert!(waiter.await.unwrap(), "the reader woke the poller");
    assert_eq!(at.elapsed(), Duration::from_millis(5));
}

/// A request is served only by a poll that started after it: not by the
/// one in flight when it asked, even though that one answers later.
#[tokio::test(start_paused = true)]
async fn a_request_waits_for_a_poll_started_after_it() {
    let p = Positions::new(1);
    let in_flight = p.primary_poll_starting();
    let ticket = p.request_fresh();
    let t0 = Instant::now();
    p.record(0, t0, Some(m("0-1-5")), false, Some(in_flight));
    let pending = tokio::time::timeout(Duration::from_secs(1), ticket.clone().wait(IDLE)).await;
    assert!(pending.is_err(), "served by a poll older than the request");
    assert_eq!(
        p.latest_primary(),
        Some(m("0-1-5")),
        "but it is the newest known"
    );
    let next = p.primary_poll_starting();
    p.record(0, Instant::now(), Some(m("0-1-7")), false, Some(next));
    assert_eq!(ticket.wait(IDLE).await, Some(m("0-1-7")));
    // A primary that never answers: no position, after the timeout.
    let ticket = p.request_fresh();
    assert_eq!(ticket.wait(Duration::from_secs(1)).await, None);
}

/// Small batches are polled for at the spacing only while reads have paid
/// for them (one tenth of a poll each): once the credit is spent, a partial
/// batch waits for more reads, or at most `SPACING_LIMIT` spacings, so
/// polls stay near one per `POLL_BATCH` reads however the reads come.
#[tokio::test(start_paused = true)]
async fn partial_batches_spend_the_reads_credit_and_then_wait() {
    use super::positions::SPACING_LIMIT;
    let p = Positions::new(1);
    // The saved credit (two polls) pays for two small batches; the third
    // leaves a debt: 20 + 3 (capped at 20) - 11 + 3 - 11 + 3 - 11 = -7
    // tenths (a partial batch costs a tenth more than a full one).
    for _ in 0..3 {
        served(&p, 3);
    }
    let t0 = tokio::time::Instant::now();
    tokio::time::advance(SPACING * 2).await;
    let _t: Vec<_> = (0..6).map(|_| p.request_fresh()).collect();
    let early = tokio::time::timeout(SPACING / 2, p.primary_poll_due(IDLE, SPACING)).await;
    assert!(early.is_err(), "a small batch polled for without credit");
    // The read that pays off the debt makes the poll due at once.
    let _last = p.request_fresh();
    let at = tokio::time::Instant::now();
    assert!(p.primary_poll_due(IDLE, SPACING).await);
    assert_eq!(at.elapsed(), Duration::ZERO);
    // A lone read that cannot pay still gets its poll, at the limit.
    p.primary_poll_starting();
    let t1 = tokio::time::Instant::now();
    served(&p, 1);
    served(&p, 2);
    let _t = p.request_fresh();
    assert!(p.primary_poll_due(IDLE, SPACING).await);
    assert_eq!(t1.elapsed(), SPACING * SPACING_LIMIT);
    assert!(t0.elapsed() > SPACING);
}

/// The primary counts as quiet after unchanged polls; a new position or an
/// early read its fresh position did not prove ends the quiet.
#[test]
fn the_primary_is_quiet_after_unchanged_polls_until_writes_or_a_miss() {
    let p = Positions::new(2);
    let poll = |pos: &str| p.record(0, Instant::now(), Some(m(pos)), false, None);
    let unchanged = |pos: &str| {
        for _ in 0..QUIET_POLLS {
            assert!(
                !p.primary_quiet(),
                "fewer than {QUIET_POLLS} unchanged polls"
            );
            poll(pos);
        }
    };
    assert!(!p.primary_quiet(), "nothing known yet");
    poll("0-1-5");
    unchanged("0-1-5");
    assert!(p.primary_quiet(), "unchanged polls");
    poll("0-1-6");
    assert!(!p.primary_quiet(), "a write");
    unchanged("0-1-6");
    assert!(p.primary_quiet());
    p.early_read_missed();
    assert!(!p.primary_quiet(), "an early read was not proven");
    unchanged("0-1-6");
    assert!(p.primary_quiet());
    // Replica polls say nothing about the primary.
    p.record(1, Instant::now(), Some(m("0-1-2")), false, None);
    assert!(p.primary_quiet());
}

/// The reads of one batch that wait on one replica share one wait
/// statement: the first leads; later reads needing no more follow; a read
/// needing more, or planned in another epoch, waits alone; the lead's end
/// wakes its followers, who then find what its wait proved.
#[tokio::test]
async fn global_reads_share_one_wait_per_replica() {
    let p = Positions::new(3);
    p.record(1, Instant::now(), Some(m("0-1-5")), false, None);
    let epoch = p.sample(1).unwrap().epoch;
    let need = m("0-1-9");
    let WaitShare::Lead(lead) = p.share_wait(1, epoch, &need) else {
        panic!("the first read leads");
    };
    let WaitShare::Follow(mut done) = p.share_wait(1, epoch, &m("0-1-8")) else {
        panic!("a read needing less follows");
    };
    assert!(matches!(
        p.share_wait(1, epoch, &m("0-1-10")),
        WaitShare::Alone
    ));
    assert!(matches!(
        p.share_wait(1, epoch + 1, &need),
        WaitShare::Alone
    ));
    assert!(
        matches!(p.share_wait(2, 0, &need), WaitShare::Lead(_)),
        "another replica has a wait of its own"
    );
    assert!(!p.known_covers(1, epoch, &need));
    // The lead's wait succeeded: it learns, then its guard drops.
    p.learn(1, epoch, &need);
    drop(lead);
    tokio::time::timeout(Duration::from_secs(5), done.changed())
        .await
        .expect("the follower wakes when the lead is done")
        .expect_err("the lead's sender is gone");
    assert!(p.known_covers(1, epoch, &m("0-1-8")));
    assert!(!p.known_covers(1, epoch + 1, &m("0-1-8")), "another epoch");
    assert!(
        matches!(p.share_wait(1, epoch, &m("0-1-12")), WaitShare::Lead(_)),
        "the slot is free again"
    );
}

/// A lead that gives up (timed out, replica failed) proves nothing: its
/// followers wake and find the position not covered.
#[tokio::test]
async fn a_failed_lead_wakes_its_followers_with_nothing_proven() {
    let p = Positions::new(2);
    p.record(1, Instant::now(), Some(m("0-1-5")), false, None);
    let epoch = p.sample(1).unwrap().epoch;
    let need = m("0-1-9");
    let lead = p.share_wait(1, epoch, &need);
    let WaitShare::Follow(mut done) = p.share_wait(1, epoch, &need) else {
        panic!("follows");
    };
    let waiter = tokio::spawn(async move { done.changed().await.is_err() });
    drop(lead);
    assert!(waiter.await.unwrap(), "woken by the lead's end");
    assert!(!p.known_covers(1, epoch, &need));
}
