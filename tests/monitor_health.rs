//! The monitor checks each backend on its own, each check bounded by a
//! timeout, apart from account loading: a primary that hangs (stopped with
//! SIGSTOP) or an account query that hangs (a lock on the privilege table)
//! does not stop the replicas' health checks, and logins of known users do
//! not wait for it.

mod common;

use std::time::{Duration, Instant};

use common::{http_get, routable, Env, Stopped, SPLIT};
use mysql_async::prelude::Queryable;

/// (up, checked_at) of a backend, from the admin `/status` page.
async fn health(env: &Env, name: &str) -> (bool, f64) {
    let text = http_get(env.admin, "/status").await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).expect("status JSON");
    let b = v["topology"]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["name"] == name))
        .cloned()
        .unwrap_or_default();
    (
        b["up"].as_bool().unwrap_or(false),
        b["checked_at"].as_f64().unwrap_or(0.0),
    )
}

/// Waits until backend `name` is reported `up` (or not), within `limit`.
async fn until_up(env: &Env, name: &str, up: bool, limit: Duration, why: &str) {
    let deadline = Instant::now() + limit;
    while health(env, name).await.0 != up {
        assert!(
            Instant::now() < deadline,
            "{name} up={up} within {limit:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replica1 keeps being checked: its `checked_at` moves past `since`.
async fn still_checked(env: &Env, since: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (up, at) = health(env, "replica1").await;
        if up && at > since {
            return;
        }
        assert!(Instant::now() < deadline, "replica1 is still checked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_or_account_load_stops_no_other_health_check() {
    let env = Env::start_with_policy_and(2, SPLIT, |t| {
        *t = t.replace("[monitor]\n", "[monitor]\naccounts_refresh_s = 1\n");
        t.push_str("\n[timeouts]\nconnect_ms = 1000\n");
    })
    .await;
    routable(&env).await;
    let replica2 = env.cluster.replicas[1].pid().expect("replica2 runs");
    let primary = env.cluster.primary.pid().expect("primary runs");

    // 1. The account query hangs on a lock of the privilege table.
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(env.cluster.primary.addr.ip().to_string())
        .tcp_port(env.cluster.primary.addr.port())
        .user(Some("root"))
        .prefer_socket(false);
    let mut root = mysql_async::Conn::new(opts.clone()).await.unwrap();
    let mut watch = mysql_async::Conn::new(opts).await.unwrap();
    root.query_drop("LOCK TABLES mysql.global_priv WRITE")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: Option<u64> = watch
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE USER = 'causeway_monitor' AND INFO LIKE '%FROM mysql.user%'",
            )
            .await
            .unwrap();
        if waiting.unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the account load reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let since = now_secs();
        let _stopped = Stopped::pid(replica2);
        until_up(
            &env,
            "replica2",
            false,
            Duration::from_secs(8),
            "a stopped replica is marked down while the account load hangs",
        )
        .await;
        still_checked(&env, since).await;
        let started = Instant::now();
        let mut c = tokio::time::timeout(Duration::from_secs(5), env.conn())
            .await
            .expect("a known user logs in while the account load hangs");
        assert!(started.elapsed() < Duration::from_secs(5));
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    root.query_drop("UNLOCK TABLES").await.unwrap();
    drop(root);
    drop(watch);
    until_up(
        &env,
        "replica2",
        true,
        Duration::from_secs(10),
        "replica2 resumed",
    )
    .await;

    // 2. The primary hangs (SIGSTOP): replicas are still checked, a stopped
    // replica is marked down, and a login fails in bounded time instead of
    // waiting.
    {
        let since = now_secs();
        let _p = Stopped::pid(primary);
        let _r = Stopped::pid(replica2);
        until_up(
            &env,
            "replica2",
            false,
            Duration::from_secs(8),
            "while the primary hangs",
        )
        .await;
        until_up(
            &env,
            "primary",
            false,
            Duration::from_secs(8),
            "the hung primary",
        )
        .await;
        still_checked(&env, since).await;
        let started = Instant::now();
        let login = tokio::time::timeout(
            Duration::from_secs(6),
            mysql_async::Conn::from_url(env.url("app")),
        )
        .await;
        assert!(
            login.is_ok(),
            "a login ends (with an error) instead of waiting for the hung primary"
        );
        assert!(started.elapsed() < Duration::from_secs(6));
    }
    until_up(
        &env,
        "primary",
        true,
        Duration::from_secs(10),
        "primary resumed",
    )
    .await;
    env.stop().await;
}
