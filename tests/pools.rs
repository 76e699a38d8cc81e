//! The session-level pool on a real cluster: a short connection reuses the
//! backend connection a previous client of the same user left, reset so
//! nothing of that client's session survives; other users never share it;
//! a pooled connection the server closed is never handed out.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use mysql_async::prelude::*;

const POOL: &str = "\n[pool]\nsession_pool = true\nsession_pool_idle_ms = 60000\n";

/// Idle connections to backend `name` in this Causeway's session pool
/// (`/status`; the metric gauge is shared by every test of the process).
async fn pooled_on(env: &Env, name: &str) -> u64 {
    let text = common::http_get(env.admin, "/status").await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["session_pool"]
        .as_array()
        .and_then(|l| l.iter().find(|p| p["backend"] == name))
        .and_then(|p| p["idle"].as_u64())
        .unwrap_or(0)
}

/// Waits until this Causeway's session pool holds at least `n` idle
/// connections to the primary.
async fn wait_pooled_primary(env: &Env, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pooled_on(env, "primary").await < n {
        assert!(
            Instant::now() < deadline,
            "the pool never held {n} primary connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The thread id (`@@pseudo_thread_id`; `CONNECTION_ID()` is the
/// session's own id) of the primary connection serving the session.
async fn backend_id(c: &mut mysql_async::Conn) -> u64 {
    c.query_first("/*FORCE_MASTER*/ SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_connection_reuses_a_reset_backend_connection() {
    let env = Env::start_with(1, |t| t.push_str(POOL)).await;
    common::routable(&env).await;
    // Leave state behind on the primary connection.
    let mut a = env.conn().await;
    let first = backend_id(&mut a).await;
    a.query_drop("/*FORCE_MASTER*/ SET @left = 42")
        .await
        .unwrap();
    a.query_drop("SET time_zone = '+05:00'").await.unwrap();
    a.query_drop("CREATE TEMPORARY TABLE left_behind (x INT)")
        .await
        .unwrap();
    a.disconnect().await.unwrap();
    wait_pooled_primary(&env, 1).await;

    // The next session of the same user takes it over, reset.
    let mut b = env.conn().await;
    assert_eq!(
        backend_id(&mut b).await,
        first,
        "the pooled connection is reused"
    );
    let (var, tz): (Option<i64>, String) = b
        .query_first("/*FORCE_MASTER*/ SELECT @left, @@time_zone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(var, None, "user variables do not leak");
    assert_eq!(tz, "SYSTEM", "session variables do not leak");
    let e = b
        .query_drop("/*FORCE_MASTER*/ SELECT * FROM left_behind")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("1146"),
        "temporary tables do not leak: {e}"
    );
    // Writes and session tracking still work on the reused connection.
    b.query_drop("CREATE TABLE pooled_t (a INT)").await.unwrap();
    b.query_drop("INSERT INTO pooled_t VALUES (1)")
        .await
        .unwrap();
    let n: i64 = b
        .query_first("SELECT COUNT(*) FROM pooled_t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1, "read-your-writes on a reused connection");
    b.disconnect().await.unwrap();
    wait_pooled_primary(&env, 1).await;

    // Another user never gets it.
    let other = mysql_async::OptsBuilder::default()
        .ip_or_hostname(env.proxy.ip().to_string())
        .tcp_port(env.proxy.port())
        .user(Some(env.cluster.monitor_user.clone()))
        .pass(Some(env.cluster.monitor_password.clone()))
        .prefer_socket(false);
    let mut m = mysql_async::Conn::new(other).await.unwrap();
    assert_ne!(
        backend_id(&mut m).await,
        first,
        "keys that differ never share"
    );
    m.disconnect().await.unwrap();

    // A pooled connection the server killed is dropped, not handed out.
    env.primary_sql(&format!("KILL {first}")).await;
    let mut c = env.conn().await;
    let id = backend_id(&mut c).await;
    assert_ne!(id, first, "a killed pooled connection is never reused");
    let one: i64 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    c.disconnect().await.unwrap();
    env.stop().await;
}

/// The pool per user: off for the deployment, on for the application
/// account, whose short connections reuse a backend connection; the monitor
/// account's do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_pool_can_be_turned_on_per_user() {
    let env = Env::start_with(1, |t| {
        t.push_str("\n[users.app]\nsession_pool = true\n");
    })
    .await;
    common::routable(&env).await;
    let mut a = env.conn().await;
    let first = backend_id(&mut a).await;
    a.disconnect().await.unwrap();
    wait_pooled_primary(&env, 1).await;
    let mut b = env.conn().await;
    assert_eq!(backend_id(&mut b).await, first, "the app account reuses");
    b.disconnect().await.unwrap();

    let monitor = || {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(env.proxy.ip().to_string())
            .tcp_port(env.proxy.port())
            .user(Some(env.cluster.monitor_user.clone()))
            .pass(Some(env.cluster.monitor_password.clone()))
            .prefer_socket(false)
    };
    let mut m = mysql_async::Conn::new(monitor()).await.unwrap();
    let m1 = backend_id(&mut m).await;
    m.disconnect().await.unwrap();
    // The app account's connection went back to the pool: the monitor
    // account's would have too by now, were it pooled.
    wait_pooled_primary(&env, 1).await;
    let mut m = mysql_async::Conn::new(monitor()).await.unwrap();
    assert_ne!(
        backend_id(&mut m).await,
        m1,
        "the monitor account does not reuse"
    );
    m.disconnect().await.unwrap();
    env.stop().await;
}
