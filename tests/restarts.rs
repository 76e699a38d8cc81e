//! Idle client connections survive the restart of every backend: the
//! session's state (variables, database, character set, user variables,
//! prepared statements) is brought to the new backend connections at the
//! next statement, which gets no error.

mod common;

use std::time::{Duration, Instant};

use common::roles::status_primary;
use common::Env;
use mysql_async::prelude::Queryable;

/// Every backend up again, as /status shows it.
async fn all_up(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = common::http_get(env.admin, "/status").await;
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let up = v["topology"]["backends"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["up"] == true));
        if up && status_primary(env).await == "primary" {
            return;
        }
        assert!(Instant::now() < deadline, "backends not up again: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_keeps_its_state_across_restarts_of_every_backend() {
    let mut env = Env::start_with_policy(1, common::SPLIT).await;
    common::routable(&env).await;
    let mut setup = env.conn().await;
    setup.query_drop("CREATE DATABASE other").await.unwrap();
    setup
        .query_drop("CREATE TABLE other.r (id INT PRIMARY KEY, s VARCHAR(10))")
        .await
        .unwrap();
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    drop(setup);
    let mut c = env.conn().await;
    c.query_drop("USE other").await.unwrap();
    c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    c.query_drop("SET NAMES latin1").await.unwrap();
    c.query_drop("SET @x = 42").await.unwrap();
    let stmt = c.prep("SELECT ? + @x").await.unwrap();
    let before: i64 = c.exec_first(&stmt, (1,)).await.unwrap().unwrap();
    assert_eq!(before, 43);
    // Connections to both backends exist before the restarts.
    let on_replica: String = c
        .query_first("/*FORCE_SLAVE*/ SELECT @@sql_mode")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_replica, "ANSI_QUOTES");
    c.query_drop("INSERT INTO r VALUES (1, 'a')").await.unwrap();

    env.cluster.replicas[0].kill();
    env.cluster.replicas[0]
        .start()
        .await
        .expect("replica restarts");
    env.cluster.primary.kill();
    env.cluster.primary.start().await.expect("primary restarts");
    all_up(&env).await;

    // The idle session: no error, its state everywhere.
    c.query_drop("INSERT INTO r VALUES (2, 'b')")
        .await
        .expect("a write after the restarts");
    let db: String = c.query_first("SELECT DATABASE()").await.unwrap().unwrap();
    assert_eq!(db, "other");
    let mode: String = c
        .query_first("/*FORCE_MASTER*/ SELECT @@sql_mode")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode, "ANSI_QUOTES");
    let cs: String = c
        .query_first("/*FORCE_MASTER*/ SELECT @@character_set_client")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cs, "latin1");
    let x: i64 = c
        .query_first("/*FORCE_MASTER*/ SELECT @x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x, 42);
    let after: i64 = c.exec_first(&stmt, (2,)).await.unwrap().unwrap();
    assert_eq!(after, 44, "the prepared statement runs after the restarts");
    let on_replica: String = c
        .query_first("/*FORCE_SLAVE*/ SELECT CONCAT(@@sql_mode, ' ', DATABASE(), ' ', @x)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_replica, "ANSI_QUOTES other 42");
    let ids: Vec<i64> = c
        .query("/*FORCE_MASTER*/ SELECT id FROM r ORDER BY id")
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 2], "each write ran once");
    drop(c);
    env.stop().await;
}
