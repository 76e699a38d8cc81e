//! Transaction replay (`[transaction_replay] enabled = true`): a
//! transaction open on the primary when a switchover makes it read-only,
//! or when it dies and a replica is promoted, runs again on the new primary
//! and the client goes on without an error, in text and binary protocol;
//! a replay whose statements return something else the second time, and a
//! COMMIT cut on its way to the server (it may have committed), are refused
//! with the transaction-lost error, the connection kept; a COMMIT that was
//! never sent (its connection found closed first) runs after the replay.

mod common;

use std::time::Duration;

use common::roles::{change_master, code, roles, sql, status_primary, switch_by_hand, until};
use common::Env;
use mysql_async::prelude::Queryable;

/// Replay on, writes held up to 8 s while there is no primary.
fn replay_on(t: &mut String) {
    t.push_str("\n[transaction_replay]\nenabled = true\n[timeouts]\nwrite_hold_ms = 8000\n");
}

/// `id:v` pairs of `app.rp` on the server, in id order.
async fn rows(env: &Env, server: &causeway::playground::Server) -> String {
    sql(
        env,
        server,
        "SELECT IFNULL(GROUP_CONCAT(CONCAT(id, ':', v) ORDER BY id), '') FROM app.rp",
    )
    .await
    .trim()
    .to_string()
}

/// How many replays ended with `result`, from /metrics (the recorder is
/// shared by this file's tests, which run at once: at least this test's).
async fn replays(env: &Env, result: &str) -> u64 {
    let text = common::http_get(env.admin, "/metrics").await;
    let key = format!("causeway_transaction_replays_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn setup(env: &Env) -> mysql_async::Conn {
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE rp (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO rp VALUES (1, 10), (2, 20)")
        .await
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_straddling_a_switchover_by_hand_are_replayed() {
    let env = Env::start_with(2, replay_on).await;
    let _c = setup(&env).await;
    // Text protocol: a write and a read inside the transaction.
    let mut t = env.conn().await;
    t.query_drop("BEGIN").await.unwrap();
    t.query_drop("INSERT INTO rp VALUES (3, 30)").await.unwrap();
    let sum: i64 = t
        .query_first("SELECT SUM(v) FROM rp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sum, 60);
    // Binary protocol: prepared statements inside the transaction.
    let mut b = env.conn().await;
    b.query_drop("BEGIN").await.unwrap();
    b.exec_drop("INSERT INTO rp VALUES (?, ?)", (4, 40))
        .await
        .unwrap();
    let v: i64 = b
        .exec_first("SELECT v FROM rp WHERE id = ?", (1,))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 10);
    // A transaction whose next statement is its COMMIT.
    let mut k = env.conn().await;
    k.query_drop("BEGIN").await.unwrap();
    k.query_drop("INSERT INTO rp VALUES (12, 120)")
        .await
        .unwrap();
    // The old primary turns read-only under the three transactions.
    switch_by_hand(&env, 0).await;
    t.query_drop("INSERT INTO rp VALUES (5, 50)")
        .await
        .expect("the transaction ran again on the new primary");
    let sum: i64 = t
        .query_first("SELECT SUM(v) FROM rp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sum, 110, "the replayed transaction sees its own writes");
    t.query_drop("COMMIT").await.unwrap();
    b.exec_drop("UPDATE rp SET v = v + 1 WHERE id = ?", (4,))
        .await
        .expect("the prepared transaction ran again on the new primary");
    b.query_drop("COMMIT").await.unwrap();
    // (Last: committed earlier, its row would change what `t` read.)
    k.query_drop("COMMIT")
        .await
        .expect("a COMMIT the old primary refused runs after the replay");
    let (old, new, _) = roles(&env, 0);
    let want = "1:10,2:20,3:30,4:41,5:50,12:120";
    assert_eq!(rows(&env, new).await, want);
    until(
        "the old primary replicates the rows",
        Duration::from_secs(10),
        async || rows(&env, old).await == want,
    )
    .await;
    assert!(replays(&env, "done").await >= 3);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_reads_something_else_is_refused_and_the_session_goes_on() {
    let env = Env::start_with(2, replay_on).await;
    let _c = setup(&env).await;
    let mut t = env.conn().await;
    t.query_drop("BEGIN").await.unwrap();
    let v: i64 = t
        .query_first("SELECT v FROM rp WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, 10);
    t.query_drop("INSERT INTO rp VALUES (6, 60)").await.unwrap();
    switch_by_hand(&env, 0).await;
    // Before the replay, the row the transaction read changes there.
    let (_, new, _) = roles(&env, 0);
    sql(&env, new, "UPDATE app.rp SET v = 11 WHERE id = 1").await;
    let e = t
        .query_drop("INSERT INTO rp VALUES (7, 70)")
        .await
        .expect_err("a replay that reads something else is not accepted");
    assert_eq!(code(&e), Some(1927), "{e}");
    assert!(e.to_string().contains("returned something else"), "{e}");
    // The session is out of the transaction and goes on.
    let one: i64 = t.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    t.query_drop("INSERT INTO rp VALUES (8, 80)").await.unwrap();
    assert_eq!(rows(&env, new).await, "1:11,2:20,8:80");
    assert!(replays(&env, "mismatch").await >= 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_primary_died_runs_again_on_the_promoted_replica() {
    let mut env = Env::start_with(2, replay_on).await;
    let _c = setup(&env).await;
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    let mut t = env.conn().await;
    t.query_drop("BEGIN").await.unwrap();
    t.query_drop("INSERT INTO rp VALUES (9, 90)").await.unwrap();
    let mut committing = env.conn().await;
    committing.query_drop("BEGIN").await.unwrap();
    committing
        .query_drop("INSERT INTO rp VALUES (10, 100)")
        .await
        .unwrap();
    // The primary dies while a COMMIT is on its way: the COMMIT waits on
    // the server for a binary log group commit (held open 20 s), seen in
    // the server's processlist, then the server is killed.
    sql(
        &env,
        &env.cluster.primary,
        "SET GLOBAL binlog_commit_wait_count = 100, binlog_commit_wait_usec = 20000000",
    )
    .await;
    let commit = tokio::spawn(async move {
        let r = committing.query_drop("COMMIT").await;
        (committing, r)
    });
    until(
        "the COMMIT waiting on the server",
        Duration::from_secs(10),
        async || {
            sql(
                &env,
                &env.cluster.primary,
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'COMMIT'",
            )
            .await
            .trim()
                == "1"
        },
    )
    .await;
    env.cluster.primary.kill();
    // It may have committed there (and reached a replica): it is not run
    // again, and says the transaction is lost.
    let (mut committing, r) = commit.await.unwrap();
    let e = r.expect_err("a COMMIT cut on its way is not replayed");
    assert_eq!(code(&e), Some(1927), "{e}");
    // The idle transaction's next statement finds its connection closed,
    // waits for a primary; the test promotes replica1 by hand meanwhile.
    let next = tokio::spawn(async move {
        let r = t.query_drop("INSERT INTO rp VALUES (11, 110)").await;
        (t, r)
    });
    let (_, new, others) = roles(&env, 0);
    sql(
        &env,
        new,
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    )
    .await;
    for r in others {
        sql(
            &env,
            r,
            &format!("STOP SLAVE; {}; START SLAVE", change_master(new)),
        )
        .await;
    }
    let (mut t, r) = next.await.unwrap();
    r.expect("the transaction ran again on the promoted replica");
    t.query_drop("COMMIT").await.unwrap();
    assert_eq!(status_primary(&env).await, "replica1");
    let one: i64 = committing.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1, "the session whose COMMIT was cut goes on");
    assert_eq!(rows(&env, new).await, "1:10,2:20,9:90,11:110");
    assert!(replays(&env, "done").await >= 1);
    env.stop().await;
}

/// A transaction whose connection the server closed while it sat idle
/// (the primary restarted): its next statement was never sent, so even a
/// COMMIT runs after the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_the_primary_restarted_runs_after_the_replay() {
    let mut env = Env::start_with(1, replay_on).await;
    let _c = setup(&env).await;
    let mut t = env.conn().await;
    t.query_drop("BEGIN").await.unwrap();
    t.query_drop("INSERT INTO rp VALUES (12, 120)")
        .await
        .unwrap();
    env.cluster.primary.kill();
    env.cluster.primary.start().await.expect("primary restarts");
    t.query_drop("COMMIT")
        .await
        .expect("the transaction ran again on the restarted primary, then committed");
    assert_eq!(rows(&env, &env.cluster.primary).await, "1:10,2:20,12:120");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replay_a_straddling_transaction_fails_once() {
    let env = Env::start_with(2, |t| {
        t.push_str("\n[timeouts]\nwrite_hold_ms = 8000\n");
    })
    .await;
    let _c = setup(&env).await;
    let mut t = env.conn().await;
    t.query_drop("BEGIN").await.unwrap();
    t.query_drop("INSERT INTO rp VALUES (3, 30)").await.unwrap();
    switch_by_hand(&env, 0).await;
    let e = t
        .query_drop("INSERT INTO rp VALUES (5, 50)")
        .await
        .expect_err("no replay: the read-only refusal reaches the client");
    assert_eq!(code(&e), Some(1290), "{e}");
    // The transaction is over; the next one runs on the new primary.
    until("the new primary", Duration::from_secs(10), async || {
        status_primary(&env).await == "replica1"
    })
    .await;
    t.query_drop("INSERT INTO rp VALUES (6, 60)").await.unwrap();
    let (_, new, _) = roles(&env, 0);
    assert_eq!(rows(&env, new).await, "1:10,2:20,6:60");
    env.stop().await;
}
