//! Roles come from the servers: Causeway follows a switchover done by hand,
//! refuses writes on a split brain, holds writes while there is no primary,
//! lets clients log in and read while the primary is down, and keeps the
//! session's and the global consistency guarantees across a switchover.
//! Real servers, real replication, roles changed by SQL and kill -9.

mod common;

use std::time::{Duration, Instant};

use common::roles::{code, sql, status_primary, switch_by_hand, until};
use common::{http_get, Env};
use mysql_async::prelude::Queryable;

/// Fast monitor checks, and writes held up to `hold_ms`.
fn fast(hold_ms: u64) -> impl FnOnce(&mut String) {
    move |t: &mut String| {
        t.push_str(&format!("\n[timeouts]\nwrite_hold_ms = {hold_ms}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_by_hand_is_followed_without_any_client_reconnecting() {
    let env = Env::start_with_policy_and(2, common::SPLIT, fast(8000)).await;
    common::routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE sw (id INT AUTO_INCREMENT PRIMARY KEY, w INT)")
        .await
        .unwrap();
    let before_id: u32 = c
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    // A writer on its own connection all along.
    let url = env.url("app");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut w = mysql_async::Conn::from_url(url).await.unwrap();
            let (mut ok, mut errors, mut longest) = (0u64, Vec::new(), Duration::ZERO);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                // Text and binary protocol in turn.
                let r = if (ok + errors.len() as u64).is_multiple_of(2) {
                    w.query_drop("INSERT INTO sw (w) VALUES (1)").await
                } else {
                    w.exec_drop("INSERT INTO sw (w) VALUES (?)", (1,)).await
                };
                match r {
                    Ok(()) => ok += 1,
                    Err(e) => errors.push(e.to_string()),
                }
                longest = longest.max(t.elapsed());
            }
            (ok, errors, longest)
        })
    };
    until("some writes", Duration::from_secs(10), async || {
        status_primary(&env).await == "primary"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_id = env.cluster.replicas[0].server_id;
    let writable = switch_by_hand(&env, 0).await;
    // Writes land on the new primary within 2 s of it becoming writable.
    until(
        "writes on the new primary",
        Duration::from_secs(10),
        async || {
            let w = c.query_drop("INSERT INTO sw (w) VALUES (2)").await;
            let at = c
                .query_first::<u32, _>("/*FORCE_MASTER*/ SELECT @@server_id")
                .await;
            w.is_ok() && at.ok().flatten() == Some(new_id)
        },
    )
    .await;
    let followed = writable.elapsed();
    assert!(
        followed < Duration::from_secs(2),
        "writes reached the new primary {followed:?} after it became writable"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, errors, longest) = writer.await.unwrap();
    assert!(ok > 10, "the writer kept writing: {ok}");
    assert!(
        errors.is_empty(),
        "{} of a writer's statements failed over a switchover, the first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(
        longest < Duration::from_secs(3),
        "longest write {longest:?}"
    );
    // The same client connections go on: no reconnect happened.
    let after_id: u32 = c
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before_id, after_id);
    // Every acknowledged write is on the new primary.
    let n: u64 = sql(
        &env,
        &env.cluster.replicas[0],
        "SELECT COUNT(*) FROM app.sw WHERE w = 1",
    )
    .await
    .trim()
    .parse()
    .unwrap();
    assert_eq!(n, ok, "acknowledged writes on the new primary");
    // Reads keep off the new primary (primary_accepts_reads = false),
    // and the old primary, now a replica, takes its share.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(common::server_id(&mut c, "SELECT @@server_id").await);
    }
    assert!(
        !seen.contains(&new_id),
        "reads on the new primary: {seen:?}"
    );
    assert_eq!(status_primary(&env).await, "replica1");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writable_servers_get_no_writes_and_reads_go_on() {
    let env = Env::start_with_policy_and(2, common::SPLIT, fast(8000)).await;
    common::routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE sb (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let rogue = &env.cluster.replicas[1];
    sql(
        &env,
        rogue,
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    )
    .await;
    let mut refused = None;
    until("writes refused", Duration::from_secs(10), async || match c
        .query_drop("INSERT INTO sb VALUES (1)")
        .await
    {
        Err(e) => {
            refused = Some(e);
            true
        }
        Ok(()) => {
            c.query_drop("DELETE FROM sb").await.ok();
            false
        }
    })
    .await;
    let e = refused.unwrap();
    assert_eq!(code(&e), Some(9004), "{e}");
    assert!(e.to_string().contains("replica2"), "names the servers: {e}");
    // Reads go on.
    let one: u32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    // /status says so (the metric gauge is shared by every test of this
    // process, so it is not asserted here).
    let text = http_get(env.admin, "/status").await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        v["topology"]["split_brain"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    // Resolved: writes work again.
    sql(&env, rogue, "SET GLOBAL read_only = 1").await;
    until("writes again", Duration::from_secs(10), async || {
        c.query_drop("INSERT INTO sb VALUES (2)").await.is_ok()
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_primary_then_fail_clearly_while_reads_go_on() {
    let env = Env::start_with_policy_and(2, common::SPLIT, fast(1500)).await;
    common::routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE h (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let primary = &env.cluster.primary;
    sql(&env, primary, "SET GLOBAL read_only = 1").await;
    until("no primary", Duration::from_secs(10), async || {
        status_primary(&env).await.is_null()
    })
    .await;
    // Reads go on at their level.
    let one: u32 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    // A write waits out the hold, then fails with a clear error.
    let t = Instant::now();
    let e = c.query_drop("INSERT INTO h VALUES (1)").await.unwrap_err();
    let waited = t.elapsed();
    assert_eq!(code(&e), Some(9003), "{e}");
    assert!(e.to_string().contains("no primary"), "{e}");
    assert!(waited >= Duration::from_millis(1400), "held {waited:?}");
    // A write issued while there is none goes through once one appears.
    let url = env.url("app");
    let held = tokio::spawn(async move {
        let mut w = mysql_async::Conn::from_url(url).await.unwrap();
        let t = Instant::now();
        let r = w.query_drop("INSERT INTO h VALUES (2)").await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    sql(&env, primary, "SET GLOBAL read_only = 0").await;
    let (r, took) = held.await.unwrap();
    r.expect("a held write runs when the primary is back");
    assert!(took >= Duration::from_millis(300), "it was held: {took:?}");
    let n = sql(&env, primary, "SELECT COUNT(*) FROM app.h").await;
    assert_eq!(n.trim(), "1");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_log_in_and_read_while_the_primary_is_down() {
    let mut env = Env::start_with_policy_and(2, common::SPLIT, fast(1000)).await;
    common::routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE d (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO d VALUES (7)").await.unwrap();
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    env.cluster.primary.kill();
    until(
        "the primary seen down",
        Duration::from_secs(10),
        async || status_primary(&env).await.is_null(),
    )
    .await;
    for _ in 0..5 {
        let mut fresh = env.conn().await;
        let v: u32 = fresh
            .query_first("SELECT id FROM d")
            .await
            .expect("a read without the primary")
            .unwrap();
        assert_eq!(v, 7);
        fresh.disconnect().await.unwrap();
    }
    // The connection from before reads too, and a write fails clearly.
    let v: u32 = c.query_first("SELECT id FROM d").await.unwrap().unwrap();
    assert_eq!(v, 7);
    let e = c.query_drop("INSERT INTO d VALUES (8)").await.unwrap_err();
    assert_eq!(code(&e), Some(9003), "{e}");
    env.cluster.primary.start().await.unwrap();
    until("writes again", Duration::from_secs(20), async || {
        c.query_drop("INSERT INTO d VALUES (9)").await.is_ok()
    })
    .await;
    env.stop().await;
}

/// Session and global levels right after a switchover: every read sees
/// the writes before it, with one replica held back so a stale read would
/// show.
async fn consistent_across_a_switchover(level: &str) {
    let policy = format!(
        "name = \"t\"\n[consistency]\nlevel = \"{level}\"\n[routing]\nprimary_accepts_reads = false\n"
    );
    let env = Env::start_with_policy_and(2, &policy, fast(8000)).await;
    let mut a = env.conn().await;
    let mut b = env.conn().await;
    a.query_drop("CREATE TABLE k (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO k VALUES (1, 0)").await.unwrap();
    let new_id = env.cluster.replicas[0].server_id;
    switch_by_hand(&env, 0).await;
    // The other replica receives but does not apply.
    sql(&env, &env.cluster.replicas[1], "STOP SLAVE SQL_THREAD").await;
    until("the new primary", Duration::from_secs(10), async || {
        status_primary(&env).await == "replica1"
    })
    .await;
    for v in 1..=20u32 {
        a.query_drop(format!("UPDATE k SET v = {v} WHERE id = 1"))
            .await
            .unwrap();
        let mine: u32 = a
            .query_first("SELECT v FROM k WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mine, v, "{level}: the session reads its own write");
        if level == "global" {
            let other: u32 = b
                .query_first("SELECT v FROM k WHERE id = 1")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(other, v, "global: another session sees it");
        }
    }
    let primary_id: u32 = a
        .query_first("/*FORCE_MASTER*/ SELECT @@server_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(primary_id, new_id);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_session_level_see_their_writes_right_after_a_switchover() {
    consistent_across_a_switchover("session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_global_level_see_every_write_right_after_a_switchover() {
    consistent_across_a_switchover("global").await;
}

/// Transactions across a switchover by hand: one that straddles the old
/// primary turning read-only fails (it could never commit there) and is
/// rolled back whole; the client's next transaction runs on the new
/// primary on the same connection. No transaction is half applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_move_to_the_new_primary_after_one_error_at_most() {
    let env = Env::start_with_policy_and(2, common::SPLIT, fast(8000)).await;
    common::routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE tx (id INT AUTO_INCREMENT PRIMARY KEY, t INT, part INT)")
        .await
        .unwrap();
    let url = env.url("app");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut w = mysql_async::Conn::from_url(url).await.unwrap();
            let (mut committed, mut failed, mut after_failure) = (0u32, 0u32, 0u32);
            let mut t = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                t += 1;
                let r: Result<(), mysql_async::Error> = async {
                    w.query_drop("BEGIN").await?;
                    w.query_drop(format!("INSERT INTO tx (t, part) VALUES ({t}, 1)"))
                        .await?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    w.query_drop(format!("INSERT INTO tx (t, part) VALUES ({t}, 2)"))
                        .await?;
                    w.query_drop("COMMIT").await
                }
                .await;
                match r {
                    Ok(()) if failed > 0 => after_failure += 1,
                    Ok(()) => committed += 1,
                    Err(_) => {
                        failed += 1;
                        let _ = w.query_drop("ROLLBACK").await;
                    }
                }
            }
            (committed, failed, after_failure)
        })
    };
    until("some transactions", Duration::from_secs(10), async || {
        c.query_first::<u64, _>("/*FORCE_MASTER*/ SELECT COUNT(*) FROM tx")
            .await
            .unwrap()
            .unwrap_or(0)
            > 10
    })
    .await;
    switch_by_hand(&env, 0).await;
    until("the new primary", Duration::from_secs(10), async || {
        status_primary(&env).await == "replica1"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (committed, failed, after) = writer.await.unwrap();
    assert!(committed > 5, "{committed}");
    assert!(
        failed <= 1,
        "at most the straddling transaction fails: {failed}"
    );
    assert!(after > 5, "transactions go on on the new primary: {after}");
    let halves = sql(
        &env,
        &env.cluster.replicas[0],
        "SELECT COUNT(*) FROM (SELECT t FROM app.tx GROUP BY t HAVING COUNT(*) <> 2) x",
    )
    .await;
    assert_eq!(halves.trim(), "0", "no transaction half applied");
    env.stop().await;
}

/// A write made before a switchover by hand, read after it: the writing
/// session (session level) and another session with the writer's causal
/// token both see it, although the one replica left (re-pointed, applying
/// 60 s late; the old primary killed) has not applied it and takes reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floors_and_tokens_from_before_a_switchover_stay_valid_after_it() {
    let policy = "name = \"t\"\n[consistency]\nlevel = \"session\"\nwait_timeout_ms = 50\n\
                  [routing]\nprimary_accepts_reads = false\nmax_replica_lag_ms = 300000\n";
    let mut env = Env::start_with_policy_and(2, policy, fast(8000)).await;
    common::routable(&env).await;
    let mut a = env.conn().await;
    let mut b = env.conn().await;
    a.query_drop("CREATE TABLE ft (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO ft VALUES (1, 0)").await.unwrap();
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    // replica2 applies 60 s late from here on.
    sql(
        &env,
        &env.cluster.replicas[1],
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 60; START SLAVE",
    )
    .await;
    a.query_drop("UPDATE ft SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    let token: String = a.query_first("SHOW CAUSEWAY TOKEN").await.unwrap().unwrap();
    // The switchover by hand; replica2 re-pointed, still 60 s late.
    sql(&env, &env.cluster.primary, "SET GLOBAL read_only = 1").await;
    let pos = sql(&env, &env.cluster.primary, "SELECT @@gtid_binlog_pos").await;
    let pos = pos.trim().to_string();
    let waited = sql(
        &env,
        &env.cluster.replicas[0],
        &format!("SELECT MASTER_GTID_WAIT('{pos}', 30)"),
    )
    .await;
    assert_eq!(waited.trim(), "0");
    sql(
        &env,
        &env.cluster.replicas[0],
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    )
    .await;
    sql(
        &env,
        &env.cluster.replicas[1],
        &format!(
            "STOP SLAVE; {}, MASTER_DELAY = 60; START SLAVE",
            common::roles::change_master(&env.cluster.replicas[0])
        ),
    )
    .await;
    until("the new primary", Duration::from_secs(10), async || {
        status_primary(&env).await == "replica1"
    })
    .await;
    // The old primary (which has the write) goes away: the one replica left
    // is the one that lacks it.
    env.cluster.primary.kill();
    // Routed there by hint, a read sees the old value: the replica takes
    // reads, and the reads below must be kept from it.
    until(
        "the late replica serving reads",
        Duration::from_secs(10),
        async || {
            b.query_first::<u32, _>("/*FORCE_SLAVE*/ SELECT v FROM ft WHERE id = 1")
                .await
                .ok()
                .flatten()
                == Some(0)
        },
    )
    .await;
    for _ in 0..10 {
        let mine: u32 = a
            .query_first("SELECT v FROM ft WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            mine, 1,
            "the writer reads its write made before the switchover"
        );
        let theirs: u32 = b
            .query_first(format!(
                "/* causeway: after={token} */ SELECT v FROM ft WHERE id = 1"
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(theirs, 1, "the token from before the switchover holds");
    }
    env.stop().await;
}
