//! Switchovers performed by Causeway: under a write and read load nothing
//! fails and nothing is lost, writes land on the new primary, the old one
//! replicates from it; refused switchovers change nothing; the SQL form is
//! for accounts with SUPER.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::roles::post_switchover;
use common::Env;
use mysql_async::prelude::Queryable;

/// The value of one column of the root `sql` on server `name`.
async fn on(env: &Env, name: &str, sql: &str) -> String {
    let server = env
        .cluster
        .servers()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no server {name}"));
    env.cluster
        .root_sql(server, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {name}: {e}"))
        .trim()
        .to_string()
}

/// Polls `sql` on server `name` until it prints `want` (10 s at most).
async fn until_on(env: &Env, name: &str, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = on(env, name, sql).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} on {name}: {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server id a statement hinted for the primary reaches through
/// Causeway.
async fn primary_id(env: &Env) -> u32 {
    let mut c = env.conn().await;
    let id = common::server_id(&mut c, "/*FORCE_MASTER*/ SELECT @@server_id").await;
    drop(c);
    id
}

/// A transaction left open through Causeway keeps the drain from
/// completing: the switchover aborts without harm (the transaction
/// commits afterwards on the old primary, which keeps its role, and a
/// write held meanwhile runs there with no error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_aborts_the_switchover_without_harm() {
    let env = Env::start_with(1, |t| {
        *t = t.replace("[switchover]\n", "[switchover]\ndrain_ms = 600\n");
    })
    .await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE sw (id INT PRIMARY KEY, w INT)")
        .await
        .unwrap();
    let mut open = env.conn().await;
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop("INSERT INTO sw (id, w) VALUES (1, 1)")
        .await
        .unwrap();
    let asked = Instant::now();
    let switchover = tokio::spawn({
        let admin = env.admin;
        async move {
            // The admin endpoint only: `post_switchover` needs the Env.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
            s.write_all(b"POST /switchover?to=replica1 HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    });
    // Writes are held while the drain waits (and the open transaction is
    // the one use of the primary it waits for): an autocommit write waits
    // too and lands on the old primary once the switchover gave up.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = common::http_get(env.admin, "/status").await;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let status: serde_json::Value = serde_json::from_str(body).unwrap();
        if status["writes_held"] == true {
            assert_eq!(
                status["topology"]["backends"][0]["primary_users"], 1,
                "{status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "writes never held: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = tokio::spawn({
        let opts = env.opts();
        async move {
            let mut w = mysql_async::Conn::new(opts).await.unwrap();
            w.query_drop("INSERT INTO sw (id, w) VALUES (2, 2)").await
        }
    });
    let out = switchover.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 500"), "{out}");
    assert!(out.contains("\"aborted\""), "{out}");
    assert!(
        out.contains("1 session(s) of Causeway's still in a transaction"),
        "{out}"
    );
    assert!(asked.elapsed() >= Duration::from_millis(600), "{out}");
    held.await
        .unwrap()
        .expect("the held write runs after the abort");
    open.query_drop("INSERT INTO sw (id, w) VALUES (3, 1)")
        .await
        .unwrap();
    open.query_drop("COMMIT").await.unwrap();
    assert_eq!(primary_id(&env).await, 1, "the old primary kept its role");
    assert_eq!(on(&env, "primary", "SELECT @@read_only").await, "0");
    assert_eq!(
        on(
            &env,
            "primary",
            "SELECT GROUP_CONCAT(id ORDER BY id) FROM app.sw"
        )
        .await,
        "1,2,3"
    );
    // With the transaction over, the switchover goes through.
    let (status, v) = post_switchover(&env, "replica1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "done", "{v}");
    drop(open);
    drop(c);
    env.stop().await;
}

/// One client's loop: short transactions, autocommit writes and reads,
/// until `stop`. Returns the ids it wrote, its errors, the longest
/// statement.
async fn client(
    env_opts: mysql_async::OptsBuilder,
    writer: u32,
    stop: Arc<AtomicBool>,
) -> (Vec<u32>, Vec<String>, Duration) {
    let mut c = mysql_async::Conn::new(env_opts).await.unwrap();
    let (mut ids, mut errors, mut longest) = (Vec::new(), Vec::new(), Duration::ZERO);
    let mut seq = 0u32;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let id = writer * 1_000_000 + seq;
        let started = Instant::now();
        let r: Result<(), mysql_async::Error> = async {
            if seq.is_multiple_of(2) {
                c.query_drop("BEGIN").await?;
                c.query_drop(format!("INSERT INTO sw (id, w) VALUES ({id}, {writer})"))
                    .await?;
                let _: Option<u32> = c
                    .query_first(format!("SELECT COUNT(*) FROM sw WHERE w = {writer}"))
                    .await?;
                c.query_drop("COMMIT").await?;
            } else {
                c.query_drop(format!("INSERT INTO sw (id, w) VALUES ({id}, {writer})"))
                    .await?;
                let _: Option<u32> = c.query_first("SELECT COUNT(*) FROM sw").await?;
            }
            Ok(())
        }
        .await;
        longest = longest.max(started.elapsed());
        match r {
            Ok(()) => ids.push(id),
            Err(e) => errors.push(format!("{id}: {e}")),
        }
    }
    (ids, errors, longest)
}

/// (a) A switchover under load: no client sees an error, no statement
/// stalls 5 s, every row written is on the new primary, writes go there,
/// the old primary is read-only and replicates from the new one, and so
/// does the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_load_loses_nothing_and_moves_writes() {
    let env = Env::start(2).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE sw (id INT PRIMARY KEY, w INT)")
        .await
        .unwrap();
    drop(c);
    assert_eq!(primary_id(&env).await, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=4)
        .map(|w| tokio::spawn(client(env.opts(), w, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Asked once: the hold lets the transactions in progress finish, so
    // the drain completes under this load.
    let (status, v) = post_switchover(&env, "replica1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "done", "{v}");
    assert_eq!(v["from"], "primary");
    assert_eq!(v["to"], "replica1");
    let stall = v["stall_ms"].as_u64().unwrap();
    assert!(stall < 5_000, "writes held {stall} ms");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let mut written = BTreeSet::new();
    for t in clients {
        let (ids, errors, longest) = t.await.unwrap();
        assert!(errors.is_empty(), "client errors: {errors:?}");
        assert!(
            longest < Duration::from_secs(5),
            "a statement took {longest:?}"
        );
        written.extend(ids);
    }
    assert!(written.len() > 20, "the load ran: {} rows", written.len());
    // Writes go to the new primary (server id 2).
    assert_eq!(primary_id(&env).await, 2);
    let mut c = env.conn().await;
    c.query_drop("INSERT INTO sw (id, w) VALUES (1, 0)")
        .await
        .unwrap();
    written.insert(1);
    drop(c);
    assert_eq!(
        on(&env, "replica1", "SELECT COUNT(*) FROM app.sw WHERE id = 1").await,
        "1"
    );
    assert_eq!(on(&env, "replica1", "SELECT @@read_only").await, "0");
    // Nothing lost: every row a client saw succeed is on the new primary.
    let rows = on(
        &env,
        "replica1",
        "SELECT GROUP_CONCAT(id ORDER BY id) FROM app.sw",
    )
    .await;
    let there: BTreeSet<u32> = rows.split(',').filter_map(|s| s.parse().ok()).collect();
    let missing: Vec<_> = written.difference(&there).collect();
    assert!(missing.is_empty(), "rows lost: {missing:?}");
    // The old primary is read-only and replicates from the new one, as
    // does the other replica; both get the new rows.
    assert_eq!(on(&env, "primary", "SELECT @@read_only").await, "1");
    let port = env.cluster.replicas[0].addr.port().to_string();
    for name in ["primary", "replica2"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Values only (batch mode, no names): the port, and both
            // threads' `Yes`.
            let status = on(&env, name, "SHOW SLAVE STATUS\\G").await;
            let lines: Vec<&str> = status.lines().map(str::trim).collect();
            if lines.contains(&port.as_str()) && lines.iter().filter(|l| **l == "Yes").count() >= 2
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} replicates from replica1: {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        until_on(&env, name, "SELECT COUNT(*) FROM app.sw WHERE id = 1", "1").await;
    }
    let metrics = common::http_get(env.admin, "/metrics").await;
    assert!(
        metrics.contains("causeway_switchovers_total{result=\"done\"}"),
        "{metrics}"
    );
    env.stop().await;
}

/// The switchover said no: nothing changed, writes still work on the
/// primary.
async fn refused(env: &Env, to: &str, why: &str) {
    let (status, v) = post_switchover(env, to).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["result"], "refused", "{v}");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "reason {reason:?} should say {why:?}");
    assert_eq!(on(env, "primary", "SELECT @@read_only").await, "0");
    assert_eq!(primary_id(env).await, 1);
    let mut c = env.conn().await;
    c.query_drop("INSERT INTO refused VALUES ()").await.unwrap();
    drop(c);
}

/// (b) Unknown target, the primary itself, a lagging target (SQL thread
/// stopped; applying delayed), a target that is down: each refused with
/// its reason, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchovers_that_cannot_be_done_are_refused() {
    let mut env = Env::start(2).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE refused (id INT AUTO_INCREMENT PRIMARY KEY)")
        .await
        .unwrap();
    drop(c);
    refused(&env, "nosuch", "unknown server 'nosuch'").await;
    refused(&env, "primary", "already the primary").await;

    // Lagging: its SQL thread applies nothing.
    on(&env, "replica1", "STOP SLAVE SQL_THREAD").await;
    env.primary_sql("INSERT INTO app.refused VALUES ()").await;
    refused(&env, "replica1", "too far behind").await;
    on(&env, "replica1", "START SLAVE SQL_THREAD").await;

    // Lagging: it applies, 30 s late (the position check).
    on(
        &env,
        "replica1",
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=30; START SLAVE",
    )
    .await;
    env.primary_sql("INSERT INTO app.refused VALUES ()").await;
    refused(&env, "replica1", "did not reach the primary's position").await;
    on(
        &env,
        "replica1",
        "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE",
    )
    .await;

    // Down.
    env.cluster.replicas[1].kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = post_switchover(&env, "replica2").await;
        let reason = v["reason"].as_str().unwrap_or_default().to_string();
        if reason.contains("is down") {
            assert_eq!(status, 409);
            break;
        }
        // Until the monitor has seen it down, the connection fails.
        assert!(reason.contains("refused"), "{v}");
        assert!(
            Instant::now() < deadline,
            "replica2 never reported down: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    refused(&env, "replica2", "is down").await;
    let metrics = common::http_get(env.admin, "/metrics").await;
    // (The recorder is the test process's: other tests' switchovers
    // count there too.)
    assert!(
        metrics.contains("causeway_switchovers_total{result=\"refused\"}"),
        "{metrics}"
    );
    env.stop().await;
}

/// (c) `CAUSEWAY SWITCHOVER TO 'name'`: ERROR 1227 for an account without
/// SUPER (nothing changes); an account with SUPER switches over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_form_needs_super() {
    let env = Env::start(1).await;
    let mut app = env.conn().await;
    let e = app
        .query_drop("CAUSEWAY SWITCHOVER TO 'replica1'")
        .await
        .unwrap_err();
    match e {
        mysql_async::Error::Server(s) => {
            assert_eq!(s.code, 1227, "{s:?}");
            assert!(s.message.contains("SUPER"), "{}", s.message);
        }
        other => panic!("expected 1227, got {other:?}"),
    }
    assert_eq!(primary_id(&env).await, 1);
    env.primary_sql(
        "CREATE USER 'dba'@'%' IDENTIFIED BY 'dba-secret'; GRANT ALL ON *.* TO 'dba'@'%'",
    )
    .await;
    let opts = env.opts().user(Some("dba")).pass(Some("dba-secret"));
    let mut dba = mysql_async::Conn::new(opts).await.unwrap();
    let row: (String, String, u64, String, String) = dba
        .query_first("CAUSEWAY SWITCHOVER TO 'replica1'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.0.as_str(), row.1.as_str()), ("primary", "replica1"));
    assert!(row.2 < 5_000, "stall {} ms", row.2);
    assert_eq!(row.4, "", "no warnings");
    assert_eq!(primary_id(&env).await, 2);
    // The application's session follows: its next write lands there.
    app.query_drop("CREATE TABLE after_sw (id INT)")
        .await
        .unwrap();
    assert_eq!(
        on(
            &env,
            "replica1",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'after_sw'"
        )
        .await,
        "1"
    );
    // Refused in the SQL form too, with Causeway's error.
    let e = dba
        .query_drop("CAUSEWAY SWITCHOVER TO 'replica1'")
        .await
        .unwrap_err();
    match e {
        mysql_async::Error::Server(s) => {
            assert_eq!(s.code, 9005, "{s:?}");
            assert!(s.message.contains("already the primary"), "{}", s.message);
        }
        other => panic!("expected 9005, got {other:?}"),
    }
    env.stop().await;
}
