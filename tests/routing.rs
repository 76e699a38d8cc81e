//! Read/write splitting on a real cluster: where each statement ran, proved
//! by `@@server_id` (primary 1, replicas 2 and 3) and by effects.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{routable, server_id as id, Env, SPLIT};
use mysql_async::prelude::*;

/// server_id, time_zone, sql_mode, sort_buffer_size, character_set_client, database, @greeting
type StateRow = (u32, String, String, u64, String, String, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_spread_over_replicas_and_writes_stay_on_the_primary() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    let mut seen = HashSet::new();
    for _ in 0..40 {
        seen.insert(id(&mut c, "SELECT @@server_id").await);
    }
    assert_eq!(
        seen,
        HashSet::from([2, 3]),
        "reads on both replicas, none on the primary"
    );
    // Writes reach the primary (the app account has no SUPER: a write on a
    // read_only replica would fail).
    c.query_drop("CREATE TABLE w (id INT PRIMARY KEY, s INT)")
        .await
        .unwrap();
    for i in 0..20 {
        c.exec_drop("INSERT INTO w VALUES (?, @@server_id)", (i,))
            .await
            .unwrap();
        c.query_drop(format!("UPDATE w SET s = @@server_id WHERE id = {i}"))
            .await
            .unwrap();
    }
    assert_eq!(
        env.primary_sql("SELECT COUNT(*), MIN(s), MAX(s) FROM app.w")
            .await
            .trim(),
        "20\t1\t1"
    );
    // Locking reads and side-effecting functions run on the primary.
    assert_eq!(
        id(&mut c, "SELECT @@server_id FROM w WHERE id = 1 FOR UPDATE").await,
        1
    );
    assert_eq!(
        id(&mut c, "SELECT @@server_id + 0 * LAST_INSERT_ID()").await,
        1
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_outrank_the_rules() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    assert_eq!(id(&mut c, "/*FORCE_MASTER*/ SELECT @@server_id").await, 1);
    assert_eq!(
        id(&mut c, "/* causeway: route=primary */ SELECT @@server_id").await,
        1
    );
    assert_eq!(
        id(&mut c, "/* causeway: route=replica2 */ SELECT @@server_id").await,
        3
    );
    assert_ne!(
        id(
            &mut c,
            "/*force_slave*/ SELECT @@server_id FROM DUAL FOR UPDATE"
        )
        .await,
        1
    );
    // A write forced to a replica gets the server's own error.
    let e = c
        .query_drop("/*FORCE_SLAVE*/ CREATE TABLE nope (a INT)")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("1290") || e.to_string().contains("read-only"),
        "{e}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_on_the_primary_and_read_only_ones_on_one_replica() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("BEGIN").await.unwrap();
    for _ in 0..5 {
        assert_eq!(id(&mut c, "SELECT @@server_id").await, 1);
    }
    c.query_drop("COMMIT").await.unwrap();
    assert_ne!(id(&mut c, "SELECT @@server_id").await, 1);
    // autocommit=0 is a transaction too.
    c.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(id(&mut c, "SELECT @@server_id").await, 1);
    c.query_drop("COMMIT").await.unwrap();
    c.query_drop("SET autocommit = 1").await.unwrap();
    // START TRANSACTION READ ONLY runs wholly on one replica.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let first = id(&mut c, "SELECT @@server_id").await;
    assert_ne!(first, 1);
    for _ in 0..5 {
        assert_eq!(id(&mut c, "SELECT @@server_id").await, first);
    }
    c.query_drop("COMMIT").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_split_under_read_committed() {
    let policy = format!("{SPLIT}transaction_split = true\n");
    let env = Env::start_with_policy(2, &policy).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE ts (a INT)").await.unwrap();
    c.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    c.query_drop("BEGIN").await.unwrap();
    let why: Vec<(String, String)> = c.query("EXPLAIN ROUTE SELECT @@server_id").await.unwrap();
    assert_ne!(
        id(&mut c, "SELECT @@server_id").await,
        1,
        "read before the first write: replica; {why:?}"
    );
    c.query_drop("INSERT INTO ts VALUES (1)").await.unwrap();
    assert_eq!(
        id(&mut c, "SELECT @@server_id").await,
        1,
        "after the first write: primary"
    );
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM ts").await.unwrap();
    assert_eq!(n, Some(1), "the transaction sees its own write");
    c.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(
        env.primary_sql("SELECT COUNT(*) FROM app.ts").await.trim(),
        "0"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_follows_the_session_across_backends() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop(
        "SET time_zone = '+03:00', sql_mode = 'ANSI_QUOTES', SESSION sort_buffer_size = 1048576",
    )
    .await
    .unwrap();
    c.query_drop("SET NAMES latin1").await.unwrap();
    c.query_drop("USE sbtest").await.unwrap();
    c.query_drop("SET @greeting = 'hello'").await.unwrap();
    for _ in 0..6 {
        let row: Option<StateRow> = c
            .query_first("SELECT @@server_id, @@session.time_zone, @@session.sql_mode, @@sort_buffer_size, @@character_set_client, DATABASE(), @greeting")
            .await
            .unwrap();
        let (sid, tz, mode, sort, cs, db, g) = row.unwrap();
        assert_ne!(sid, 1, "served by a replica");
        assert_eq!(
            (tz.as_str(), mode.as_str(), sort, cs.as_str(), db.as_str()),
            ("+03:00", "ANSI_QUOTES", 1_048_576, "latin1", "sbtest")
        );
        assert_eq!(g.as_deref(), Some("hello"));
    }
    // A user variable assigned from data sends later reads of variables to the primary.
    c.query_drop("USE app").await.unwrap();
    c.query_drop("CREATE TABLE uv (a INT)").await.unwrap();
    c.query_drop("INSERT INTO uv VALUES (41)").await.unwrap();
    c.query_drop("SELECT a + 1 INTO @answer FROM uv")
        .await
        .unwrap();
    let (sid, v): (u32, i64) = c
        .query_first("SELECT @@server_id, @answer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sid, v), (1, 42));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_and_lock_tables_keep_the_session_on_the_primary() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TEMPORARY TABLE tmp_rows (a INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO tmp_rows VALUES (1), (2)")
        .await
        .unwrap();
    for _ in 0..5 {
        let n: Option<i64> = c
            .query_first("SELECT COUNT(*) FROM tmp_rows")
            .await
            .unwrap();
        assert_eq!(n, Some(2));
    }
    assert_ne!(
        id(&mut c, "SELECT @@server_id").await,
        1,
        "other reads still split"
    );
    c.query_drop("CREATE TABLE lt (a INT)").await.unwrap();
    c.query_drop("LOCK TABLES lt READ").await.unwrap();
    assert_eq!(
        id(&mut c, "SELECT @@server_id").await,
        1,
        "pinned while LOCK TABLES holds"
    );
    c.query_drop("UNLOCK TABLES").await.unwrap();
    assert_ne!(id(&mut c, "SELECT @@server_id").await, 1, "unpinned");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_or_lagging_gets_no_reads_and_explain_route_says_why() {
    let env = Env::start_with_policy(2, &format!("{SPLIT}max_replica_lag_ms = 1000\n")).await;
    routable(&env).await;
    // replica1 stops applying: not replicating -> no reads.
    env.cluster
        .root_sql(&env.cluster.replicas[0], "STOP SLAVE")
        .await
        .unwrap();
    let mut c = env.conn().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ids: HashSet<u32> = {
            let mut s = HashSet::new();
            for _ in 0..10 {
                s.insert(id(&mut c, "SELECT @@server_id").await);
            }
            s
        };
        if ids == HashSet::from([3]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica1 still served reads: {ids:?}"
        );
    }
    let rows: Vec<(String, String)> = c.query("EXPLAIN ROUTE SELECT 1").await.unwrap();
    let get = |k: &str| {
        rows.iter()
            .find(|(a, _)| a == k)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("kind"), "read");
    assert_eq!(get("reason"), "read");
    assert_eq!(get("target"), "replica2");
    assert!(
        get("backend.replica1").contains("qualifies=false"),
        "{rows:?}"
    );
    let rows: Vec<(String, String)> = c
        .query("EXPLAIN ROUTE /*FORCE_MASTER*/ SELECT 1")
        .await
        .unwrap();
    assert!(
        rows.contains(&("reason".into(), "hint_primary".into())),
        "{rows:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_the_routing() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE ps (id INT PRIMARY KEY, v VARCHAR(10))")
        .await
        .unwrap();
    let read = c.prep("SELECT @@server_id, ? + 1").await.unwrap();
    let mut seen = HashSet::new();
    for i in 0..20 {
        let (sid, n): (u32, i64) = c.exec_first(&read, (i,)).await.unwrap().unwrap();
        assert_eq!(n, i + 1);
        seen.insert(sid);
    }
    assert_eq!(
        seen,
        HashSet::from([2, 3]),
        "a read-only prepared SELECT executes on the replicas"
    );
    let write = c.prep("INSERT INTO ps VALUES (?, ?)").await.unwrap();
    for i in 0..10 {
        c.exec_drop(&write, (i, format!("v{i}"))).await.unwrap();
    }
    assert_eq!(
        env.primary_sql("SELECT COUNT(*) FROM app.ps").await.trim(),
        "10"
    );
    let locking = c
        .prep("SELECT @@server_id FROM ps WHERE id = ? FOR UPDATE")
        .await
        .unwrap();
    let sid: Option<u32> = c.exec_first(&locking, (1,)).await.unwrap();
    assert_eq!(sid, Some(1));
    c.close(read).await.unwrap();
    c.close(write).await.unwrap();
    // Still in sync after closing.
    assert_eq!(
        c.query_first::<i64, _>("SELECT COUNT(*) FROM ps")
            .await
            .unwrap(),
        Some(10)
    );
    env.stop().await;
}
