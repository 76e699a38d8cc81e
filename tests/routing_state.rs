//! More of the router's promises on a real cluster: user locks, text
//! PREPARE, hinted session changes, regex rules, replication lag, and the
//! statements connectors send when they connect.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{routable, server_id as id, Env, SPLIT};
use mysql_async::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_lock_pins_until_released_and_text_prepare_works() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    let got: Option<i64> = c.query_first("SELECT GET_LOCK('job', 5)").await.unwrap();
    assert_eq!(got, Some(1));
    for _ in 0..5 {
        assert_eq!(
            id(&mut c, "SELECT @@server_id").await,
            1,
            "pinned while the lock is held"
        );
    }
    // The lock is held on the primary connection: another session cannot take it.
    let mut other = env.conn().await;
    let free: Option<i64> = other
        .query_first("SELECT IS_FREE_LOCK('job')")
        .await
        .unwrap();
    assert_eq!(free, Some(0));
    c.query_drop("SELECT RELEASE_ALL_LOCKS()").await.unwrap();
    assert_ne!(
        id(&mut c, "SELECT @@server_id").await,
        1,
        "unpinned after RELEASE_ALL_LOCKS"
    );

    c.query_drop("PREPARE s FROM 'SELECT ? * 2'").await.unwrap();
    c.query_drop("SET @x = 21").await.unwrap();
    let v: Option<i64> = c.query_first("EXECUTE s USING @x").await.unwrap();
    assert_eq!(v, Some(42));
    c.query_drop("DEALLOCATE PREPARE s").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hinted_session_change_reaches_every_backend() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("/*FORCE_SLAVE*/ SET time_zone = '-05:00'")
        .await
        .unwrap();
    assert_eq!(
        c.query_first::<String, _>("/*FORCE_MASTER*/ SELECT @@time_zone")
            .await
            .unwrap()
            .as_deref(),
        Some("-05:00")
    );
    for _ in 0..6 {
        let (sid, tz): (u32, String) = c
            .query_first("SELECT @@server_id, @@time_zone")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(sid, 1);
        assert_eq!(tz, "-05:00");
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_rules_route_matching_statements() {
    let policy = format!(
        "{SPLIT}\n[[rules]]\nmatch = '(?i)from report_'\ntarget = 'primary'\n[[rules]]\nmatch = '(?i)^select @@server_id as pinned'\ntarget = 'replica1'\n[[rules]]\nmatch = '^SELECT @@SERVER_ID WHERE \\? = \\?$'\non = 'digest'\ntarget = 'replica2'\n"
    );
    let env = Env::start_with_policy(2, &policy).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE report_daily (a INT)")
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            id(
                &mut c,
                "SELECT @@server_id FROM report_daily UNION ALL SELECT @@server_id"
            )
            .await,
            1
        );
        assert_eq!(id(&mut c, "SELECT @@server_id AS pinned").await, 2);
        assert_eq!(
            id(&mut c, "select   @@server_id /* any */ where 5 = 5").await,
            3
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_gets_no_reads() {
    let env = Env::start_with_policy(2, &format!("{SPLIT}max_replica_lag_ms = 2000\n")).await;
    routable(&env).await;
    // replica1 applies every event 30 s late: its lag grows past the limit
    // as soon as the primary writes.
    let r1 = &env.cluster.replicas[0];
    env.cluster
        .root_sql(
            r1,
            "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 30; START SLAVE;",
        )
        .await
        .unwrap();
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE lag_probe (a INT)")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        c.query_drop(format!("INSERT INTO lag_probe VALUES ({n})"))
            .await
            .unwrap();
        n += 1;
        let mut ids = HashSet::new();
        for _ in 0..10 {
            ids.insert(id(&mut c, "SELECT @@server_id").await);
        }
        if ids == HashSet::from([3]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lagging replica kept serving reads: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_connect_time_statements_work_while_reads_are_split() {
    let env = Env::start_with_policy(2, SPLIT).await;
    routable(&env).await;
    let mut c = env.conn().await;
    // What Connector/J, the mysql CLI and ORMs send when they connect.
    let statements = [
        "/* mysql-connector-java-8.0 */SELECT  @@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS character_set_client, @@character_set_connection AS character_set_connection, @@character_set_results AS character_set_results, @@collation_server AS collation_server, @@init_connect AS init_connect, @@interactive_timeout AS interactive_timeout, @@license AS license, @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS max_allowed_packet, @@net_write_timeout AS net_write_timeout, @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, @@time_zone AS time_zone, @@tx_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout",
        "SET NAMES utf8mb4",
        "SET character_set_results = NULL",
        "SET autocommit=1",
        "SELECT @@version_comment LIMIT 1",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')",
        "SET @@SQL_AUTO_IS_NULL = 0",
        "SHOW VARIABLES LIKE 'lower_case%'",
        "SELECT DATABASE()",
    ];
    for s in statements {
        c.query_drop(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    // The settings hold on whichever backend serves the next reads.
    for _ in 0..6 {
        let (sid, rs, iso, mode): (u32, Option<String>, String, String) = c
            .query_first("SELECT @@server_id, @@character_set_results, @@tx_isolation, @@sql_mode")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(sid, 1);
        assert_eq!(rs, None);
        assert_eq!(iso, "READ-COMMITTED");
        assert!(mode.contains("STRICT_TRANS_TABLES"), "{mode}");
    }
    env.stop().await;
}
