//! Failures under load, as clients see them (real MariaDB processes killed
//! with SIGKILL, stopped with SIGSTOP, connections KILLed):
//! - a replica killed under a load of autocommit reads (text and prepared):
//!   no client sees an error, the reads run again elsewhere;
//! - a replica stopped for seconds under that load: no error, and no read
//!   stalls much longer than `timeouts.read_ms` plus the check;
//! - a slow read on a live replica (`SELECT SLEEP(3)` with `read_ms` = 1 s)
//!   is waited for, neither cut nor run again;
//! - a transaction whose backend connection dies gets an error; the client
//!   connection stays open, out of the transaction, and goes on;
//! - a write whose primary stops mid-flight gets an error and is never run
//!   again;
//! - a read split off a transaction runs again when its replica fails, and
//!   the transaction goes on;
//! - the primary killed under a read load it shares: no client error.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway::playground::Server;
use common::{http_get, Env, Stopped, SPLIT};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, Row};
use tokio::time::timeout;

const REPLY: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);
/// Rows of the table the readers read.
const ROWS: u64 = 100;

// ------------------------------------------------------------ helpers

/// `[pool]` with the transaction pool on, or nothing.
fn pool(on: bool) -> &'static str {
    if on {
        "\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 8\n"
    } else {
        ""
    }
}

/// Sum of the samples of metric `name` whose labels contain `label`. The
/// recorder is the test process's: other tests of this file add to it.
async fn metric(env: &Env, name: &str, label: &str) -> f64 {
    let body = http_get(env.admin, "/metrics").await;
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Table `t` with `ROWS` rows (`v = 10 * id`), on every replica.
async fn reader_table(env: &Env) {
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    let values: Vec<String> = (1..=ROWS).map(|i| format!("({i}, {})", i * 10)).collect();
    c.query_drop(format!("INSERT INTO t VALUES {}", values.join(",")))
        .await
        .unwrap();
    env.cluster
        .wait_replicas_caught_up(SETTLE)
        .await
        .expect("replicas catch up");
}

/// What one reader saw.
#[derive(Debug, Default)]
struct Seen {
    errors: Vec<String>,
    slowest: Duration,
}

/// Clients reading `t` in a loop, half with text queries, half with
/// prepared statements, each on its own connection, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    readers: Vec<tokio::task::JoinHandle<Seen>>,
}

impl Load {
    async fn start(env: &Env, clients: usize) -> Load {
        Self::start_with_fresh(env, clients, 0).await
    }

    /// Also `fresh` clients that open a new connection for every read.
    async fn start_with_fresh(env: &Env, clients: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for i in 0..clients {
            let opts = Opts::from(env.opts());
            let c = Conn::new(opts).await.expect("a reader connects");
            readers.push(tokio::spawn(read_loop(
                c,
                i % 2 == 1,
                stop.clone(),
                done.clone(),
            )));
        }
        for _ in 0..fresh {
            let opts = Opts::from(env.opts());
            readers.push(tokio::spawn(fresh_loop(opts, stop.clone(), done.clone())));
        }
        Load {
            stop,
            done,
            readers,
        }
    }

    /// Waits until `n` more reads have succeeded.
    async fn progress(&self, n: u64, why: &str) {
        let target = self.done.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + SETTLE;
        while self.done.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "reads stopped: {why}");
            tokio::time::sleep(POLL).await;
        }
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for r in self.readers {
            let s = r.await.expect("a reader ends");
            all.errors.extend(s.errors);
            all.slowest = all.slowest.max(s.slowest);
        }
        all
    }
}

async fn read_loop(
    mut c: Conn,
    prepared: bool,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Seen {
    let mut seen = Seen::default();
    let stmt = match prepared {
        true => Some(c.prep("SELECT v FROM t WHERE id = ?").await.unwrap()),
        false => None,
    };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = i % ROWS + 1;
        let started = Instant::now();
        let read = async {
            match &stmt {
                Some(s) => c.exec_first::<u64, _, _>(s, (id,)).await,
                None => {
                    c.query_first::<u64, _>(format!("SELECT v FROM t WHERE id = {id}"))
                        .await
                }
            }
        };
        let r = timeout(REPLY, read).await;
        seen.slowest = seen.slowest.max(started.elapsed());
        match r {
            Ok(Ok(Some(v))) if v == id * 10 => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                seen.errors.push(format!("id {id}: {other:?}"));
                if seen.errors.len() > 20 {
                    break;
                }
            }
        }
    }
    seen
}

/// Connect, read, disconnect, until stopped.
async fn fresh_loop(opts: Opts, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> Seen {
    let mut seen = Seen::default();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = i % ROWS + 1;
        let started = Instant::now();
        let read = async {
            let mut c = Conn::new(opts.clone()).await?;
            let v = c
                .query_first::<u64, _>(format!("SELECT v FROM t WHERE id = {id}"))
                .await?;
            c.disconnect().await?;
            Ok::<_, mysql_async::Error>(v)
        };
        let r = timeout(REPLY, read).await;
        seen.slowest = seen.slowest.max(started.elapsed());
        match r {
            Ok(Ok(Some(v))) if v == id * 10 => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                seen.errors
                    .push(format!("new connection, id {id}: {other:?}"));
                if seen.errors.len() > 20 {
                    break;
                }
            }
        }
    }
    seen
}

/// The backend thread session `id` holds on the backend whose name starts
/// with `backend` (from SHOW CAUSEWAY PROCESSLIST, e.g. `primary#1234`).
async fn held_thread(o: &mut Conn, id: u32, backend: &str) -> u64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let rows: Vec<Row> = o.query("SHOW CAUSEWAY PROCESSLIST").await.unwrap();
        let held = rows.into_iter().find_map(|r| {
            let sid: Option<String> = r.get("Id")?;
            (sid? == id.to_string())
                .then(|| r.get::<Option<String>, _>("Backends").flatten())
                .flatten()
        });
        let thread = held.as_deref().and_then(|b| {
            b.split(',')
                .find(|e| e.starts_with(backend))
                .and_then(|e| e.split('#').nth(1))
                .and_then(|n| n.parse().ok())
        });
        if let Some(t) = thread {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "session {id} holds no {backend} connection: {held:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Kills connection `id` on `server` and waits until it is gone.
async fn kill_thread(env: &Env, server: &Server, id: u64) {
    env.cluster
        .root_sql(server, &format!("KILL {id}"))
        .await
        .expect("KILL");
    let gone = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}");
    let deadline = Instant::now() + SETTLE;
    while env.cluster.root_sql(server, &gone).await.unwrap().trim() != "0" {
        assert!(Instant::now() < deadline, "connection {id} never went away");
        tokio::time::sleep(POLL).await;
    }
}

/// Whether connection `id` on `server` runs a statement containing `marker`.
async fn running(env: &Env, server: &Server, marker: &str) -> bool {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
    );
    env.cluster.root_sql(server, &sql).await.unwrap().trim() != "0"
}

// ------------------------------------------------------------ (a) kill -9

/// A replica killed under a load of autocommit reads: every read still
/// gets its answer (run again on the other replica or the primary).
async fn replica_killed(pooled: bool) {
    let mut env = Env::start_with_policy_and(2, SPLIT, |t| t.push_str(pool(pooled))).await;
    common::routable(&env).await;
    reader_table(&env).await;
    let load = Load::start(&env, 8).await;
    load.progress(400, "before the kill").await;
    env.cluster.replicas[0].kill();
    load.progress(2_000, "after the kill").await;
    let seen = load.finish().await;
    assert!(
        seen.errors.is_empty(),
        "clients saw errors: {:?}",
        seen.errors
    );
    let retries = metric(&env, "causeway_read_retries_total", "replica1").await;
    assert!(retries > 0.0, "no read was run again");
    env.cluster.replicas[0]
        .start()
        .await
        .expect("the replica restarts");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_read_load_costs_no_read() {
    replica_killed(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_read_load_costs_no_read_with_the_transaction_pool() {
    replica_killed(true).await;
}

// ------------------------------------------------------------ (b) SIGSTOP

/// A replica stopped for seconds under a load of autocommit reads (on
/// long-lived connections, and on a new connection per read): no client
/// sees an error, and no read waits much longer than `read_ms` and
/// the check of the stopped replica.
async fn replica_stopped(pooled: bool) {
    let env = Env::start_with_policy_and(2, SPLIT, |t| t.push_str(pool(pooled))).await;
    common::routable(&env).await;
    reader_table(&env).await;
    let load = Load::start_with_fresh(&env, 8, 2).await;
    load.progress(400, "before the stop").await;
    let stopped = Stopped::server(&env.cluster.replicas[0]);
    let since = Instant::now();
    load.progress(1_000, "while a replica is stopped").await;
    // The stop lasts seconds (a hang, not a hiccup).
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(since.elapsed())).await;
    load.progress(200, "at the end of the stop").await;
    drop(stopped);
    load.progress(1_000, "after the replica continued").await;
    let seen = load.finish().await;
    eprintln!(
        "slowest read while a replica was stopped: {:?}",
        seen.slowest
    );
    assert!(
        seen.errors.is_empty(),
        "clients saw errors: {:?}",
        seen.errors
    );
    // read_ms (1.5 s) + probe_ms (0.5 s) by default; generous for a
    // shared 2-core machine.
    assert!(
        seen.slowest < Duration::from_secs(5),
        "a read stalled for {:?}",
        seen.slowest
    );
    let down = metric(&env, "causeway_backend_marked_down_total", "replica1").await;
    assert!(down > 0.0, "no statement found the stopped replica down");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_read_load_stalls_no_read_for_long() {
    replica_stopped(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_under_read_load_stalls_no_read_for_long_with_the_transaction_pool() {
    replica_stopped(true).await;
}

// ------------------------------------------------------------ (c) slow read

/// A slow read on a live replica is waited for: the replica is checked
/// after `read_ms` and found alive, and the read is neither cut nor run
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_on_a_live_replica_is_waited_for() {
    let env = Env::start_with_policy_and(1, SPLIT, |t| {
        t.push_str("\n[timeouts]\nread_ms = 1000\nprobe_ms = 500\n")
    })
    .await;
    common::routable(&env).await;
    let mut c = env.conn().await;
    let started = Instant::now();
    let row: (u32, u32) = timeout(
        REPLY,
        c.query_first("/*FORCE_SLAVE*/ SELECT SLEEP(3), @@server_id"),
    )
    .await
    .expect("the slow read answers")
    .expect("the slow read succeeds")
    .expect("a row");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(
        row,
        (0, env.cluster.replicas[0].server_id),
        "SLEEP(3) ran to its end on the replica"
    );
    // It ran once, where it was sent: the replica stays in use.
    let again: u32 = c
        .query_first("/*FORCE_SLAVE*/ SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, env.cluster.replicas[0].server_id);
    drop(c);
    env.stop().await;
}

// ------------------------------------------------------------ (d) transaction

/// A transaction whose backend connection is killed: the next statement
/// gets an error that says the transaction is over, the client connection
/// stays open, and the statements after it run outside any transaction.
async fn lost_transaction(pooled: bool) {
    let env = Env::start_with(0, |t| t.push_str(pool(pooled))).await;
    let mut o = env.conn().await;
    o.query_drop("CREATE TABLE tx (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    let mut c = env.conn().await;
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO tx VALUES (1)").await.unwrap();
    let thread = held_thread(&mut o, c.id(), "primary").await;
    kill_thread(&env, &env.cluster.primary, thread).await;
    let e = timeout(REPLY, c.query_drop("INSERT INTO tx VALUES (2)"))
        .await
        .expect("an answer after the kill")
        .expect_err("the transaction is gone");
    match &e {
        mysql_async::Error::Server(s) => {
            assert_eq!((s.code, s.state.as_str()), (1927, "70100"), "{e}");
            assert!(s.message.contains("transaction"), "{e}");
        }
        other => panic!("an error packet expected, got {other:?}"),
    }
    // The same connection goes on, outside any transaction.
    let in_trans: u32 = timeout(REPLY, c.query_first("SELECT @@in_transaction"))
        .await
        .expect("an answer")
        .expect("the connection stays open")
        .unwrap();
    assert_eq!(in_trans, 0, "the session is out of the transaction");
    let n: u64 = c
        .query_first("SELECT COUNT(*) FROM tx")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the lost transaction's write was rolled back");
    c.query_drop("INSERT INTO tx VALUES (3)").await.unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO tx VALUES (4)").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let ids: Vec<u32> = o.query("SELECT id FROM tx ORDER BY id").await.unwrap();
    assert_eq!(ids, vec![3, 4]);
    drop((c, o));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_transaction_ends_the_transaction_not_the_connection() {
    lost_transaction(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_transaction_ends_the_transaction_not_the_connection_with_the_transaction_pool() {
    lost_transaction(true).await;
}

/// The primary killed (SIGKILL) in the middle of a transaction, then
/// started again: the transaction gets an error, the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_primary_restarted_gets_an_error_then_goes_on() {
    let mut env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE tk (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO tk VALUES (1)").await.unwrap();
    env.cluster.primary.kill();
    env.cluster.primary.start().await.expect("primary restarts");
    let e = timeout(REPLY, c.query_drop("INSERT INTO tk VALUES (2)"))
        .await
        .expect("an answer after the restart")
        .expect_err("the transaction is gone");
    assert!(
        matches!(&e, mysql_async::Error::Server(s) if s.code == 1927),
        "{e:?}"
    );
    // Polled: the first statements may find the primary not yet seen up.
    let deadline = Instant::now() + SETTLE;
    loop {
        match timeout(REPLY, c.query_drop("INSERT INTO tk VALUES (3)")).await {
            Ok(Ok(())) => break,
            Ok(Err(mysql_async::Error::Server(s))) if Instant::now() < deadline => {
                assert_ne!(s.code, 1062, "the insert ran twice");
            }
            other => panic!("the connection does not go on: {other:?}"),
        }
        tokio::time::sleep(POLL).await;
    }
    let ids: Vec<u32> = c.query("SELECT id FROM tk ORDER BY id").await.unwrap();
    assert_eq!(ids, vec![3]);
    drop(c);
    env.stop().await;
}

// ------------------------------------------------------------ (e) writes

/// A write whose primary stops while it runs: the client gets an error
/// once the primary is found hung (it does not wait for the hang to end),
/// the write is not sent again, and when the primary continues the write
/// has run at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_primary_hangs_fails_and_is_never_run_again() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[timeouts]\nread_ms = 1000\nprobe_ms = 300\n")
    })
    .await;
    let mut c = env.conn().await;
    c.query_drop(
        "CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(20)) ENGINE=InnoDB",
    )
    .await
    .unwrap();
    let opts = Opts::from(env.opts());
    let writer = tokio::spawn(async move {
        let mut w = Conn::new(opts).await.unwrap();
        let started = Instant::now();
        let r = w
            .query_drop("INSERT INTO w (tag) SELECT 'write-once' FROM (SELECT SLEEP(1)) s")
            .await;
        (r, started.elapsed(), w)
    });
    let deadline = Instant::now() + SETTLE;
    while !running(&env, &env.cluster.primary, "write-once").await {
        assert!(Instant::now() < deadline, "the write never started");
        tokio::time::sleep(POLL).await;
    }
    let stopped = Stopped::server(&env.cluster.primary);
    let (r, took, mut w) = timeout(REPLY, writer)
        .await
        .expect("the writer gets an answer while the primary is stopped")
        .unwrap();
    drop(stopped);
    let e = r.expect_err("the write's primary hung");
    assert!(
        matches!(&e, mysql_async::Error::Server(s) if s.code == 1927),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(10), "the write waited {took:?}");
    // The primary finishes what it had; nothing was sent again.
    let deadline = Instant::now() + SETTLE;
    while running(&env, &env.cluster.primary, "write-once").await {
        assert!(Instant::now() < deadline, "the write never ended");
        tokio::time::sleep(POLL).await;
    }
    let n = env
        .primary_sql("SELECT COUNT(*) FROM app.w WHERE tag = 'write-once'")
        .await;
    assert!(
        n.trim() == "0" || n.trim() == "1",
        "the write ran {n} times"
    );
    // The writer's connection goes on (polled: the primary is seen up again).
    let deadline = Instant::now() + SETTLE;
    loop {
        match w.query_first::<u32, _>("SELECT 1").await {
            Ok(Some(1)) => break,
            other => assert!(Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(POLL).await;
    }
    drop((c, w));
    env.stop().await;
}

// ------------------------------------------------------------ split reads

/// A read split off a transaction to a replica, whose replica connection
/// is killed: it runs again (on the primary, inside the transaction), and
/// the transaction goes on to commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_read_whose_replica_failed_runs_again_inside_the_transaction() {
    let policy = format!("{SPLIT}transaction_split = true\n");
    let env = Env::start_with_policy(1, &policy).await;
    common::routable(&env).await;
    reader_table(&env).await;
    let mut o = env.conn().await;
    let mut c = env.conn().await;
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    let replica_id = env.cluster.replicas[0].server_id;
    let at: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(
        at, replica_id,
        "the read before the first write is split off"
    );
    let replica = &env.cluster.replicas[0];
    let thread = held_thread(&mut o, c.id(), &replica.name).await;
    kill_thread(&env, replica, thread).await;
    let v: u64 = timeout(REPLY, c.query_first("SELECT v FROM t WHERE id = 7"))
        .await
        .expect("an answer after the kill")
        .expect("the read runs again")
        .unwrap();
    assert_eq!(v, 70);
    // (On the primary: a split read of it would ask a replica connection.)
    let in_trans: u32 = c
        .query_first("/*FORCE_MASTER*/ SELECT @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_trans, 1, "the transaction goes on");
    c.query_drop("UPDATE t SET v = 71 WHERE id = 7")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(
        env.primary_sql("SELECT v FROM app.t WHERE id = 7")
            .await
            .trim(),
        "71"
    );
    drop((c, o));
    env.stop().await;
}

// ------------------------------------------------------------ primary loss

/// The primary killed under a load of autocommit reads that it shares with
/// the replicas (`primary_accepts_reads`): every read still gets its
/// answer, from a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_under_read_load_costs_no_read() {
    let policy = "name = \"test\"\n[consistency]\nlevel = \"eventual\"\n\
                  [routing]\nprimary_accepts_reads = true\n";
    let mut env = Env::start_with_policy(2, policy).await;
    common::routable(&env).await;
    reader_table(&env).await;
    let load = Load::start(&env, 8).await;
    load.progress(400, "before the kill").await;
    env.cluster.primary.kill();
    load.progress(2_000, "after the kill").await;
    let seen = load.finish().await;
    assert!(
        seen.errors.is_empty(),
        "clients saw errors: {:?}",
        seen.errors
    );
    // (Only this test's reads fail on the primary.)
    let retries = metric(&env, "causeway_read_retries_total", "\"primary\"").await;
    assert!(retries > 0.0, "no read on the primary was run again");
    env.cluster
        .primary
        .start()
        .await
        .expect("the primary restarts");
    env.stop().await;
}
