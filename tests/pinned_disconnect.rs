//! What happens to a pinned transaction-pool connection when its client
//! disconnects (docs/pools.md, "Pins"): it is reset with
//! COM_RESET_CONNECTION and given back to the pool, so the next session
//! gets the same server connection with nothing of the old session left:
//! its open transaction rolled back, temporary tables dropped, named locks
//! released, user variables cleared.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use mysql_async::prelude::*;

/// Server connection ids of the application account on the primary, as
/// root sees them (independent of what Causeway reports).
async fn app_threads(env: &Env) -> Vec<u64> {
    let out = env
        .primary_sql(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE USER = 'app' AND COMMAND <> 'Killed' ORDER BY ID",
        )
        .await;
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Waits until the primary shows exactly one connection of `app`.
async fn one_app_thread(env: &Env) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = app_threads(env).await;
        if let [one] = t[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "app connections: {t:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_connection_is_reset_and_reused_after_its_client_leaves() {
    let env = Env::start_with(0, |t| {
        t.push_str(
            "\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 1\n\
             transaction_pool_idle_ms = 60000\n",
        )
    })
    .await;
    let mut setup = env.direct_primary().await;
    setup.query_drop("CREATE TABLE kept (a INT)").await.unwrap();
    drop(setup);

    let mut a = env.conn().await;
    for sql in [
        "CREATE TEMPORARY TABLE tmp_left (x INT)",
        "SET @left = 42",
        "SELECT GET_LOCK('left_lock', 0)",
        "BEGIN",
        "INSERT INTO kept VALUES (1)",
    ] {
        a.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let held = one_app_thread(&env).await;
    a.disconnect().await.unwrap();

    // Not closed: the same server connection stays, and serves the next
    // session of the same user.
    let mut b = env.conn().await;
    let row: (Option<i64>, i64, i64) = b
        .query_first("SELECT @left, IS_FREE_LOCK('left_lock'), (SELECT COUNT(*) FROM kept)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row, (None, 1, 0), "user variable, lock, rolled-back row");
    let err = b.query_drop("SELECT * FROM tmp_left").await.unwrap_err();
    assert!(err.to_string().contains("1146"), "{err}");
    assert_eq!(one_app_thread(&env).await, held, "the connection was kept");
    drop(b);
    env.stop().await;
}
