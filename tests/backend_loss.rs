//! A lost or broken backend, as the client sees it (real MariaDB, real
//! clients):
//! - a backend connection lost after part of a reply reached the client
//!   closes the client connection (no ERR packet glued to a partial row);
//! - Causeway's own errors use server-range codes, so the `mariadb` CLI
//!   (libmariadb) shows their message instead of "2027 malformed packet";
//! - a connection lost while it held state that cannot move (GET_LOCK,
//!   LOCK TABLES, temporary tables, PREPARE) ends the session after an error
//!   that says so, with and without the transaction pool;
//! - a READ ONLY transaction on a replica whose connection broke fails as a
//!   lost transaction, never runs on the primary outside its snapshot; the
//!   session goes on outside the transaction.

mod common;

use std::time::{Duration, Instant};

use causeway::playground::Server;
use common::raw::Raw;
use common::{Env, SPLIT};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use tokio::time::timeout;

const REPLY: Duration = Duration::from_secs(15);
const SETTLE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// `[pool]` with the transaction pool on, or nothing.
fn pool(on: bool) -> &'static str {
    if on {
        "\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 8\n"
    } else {
        ""
    }
}

/// The id of the connection on `server` running a statement that
/// contains `marker`, polled until it shows.
async fn thread_running(env: &Env, server: &Server, marker: &str) -> u64 {
    let sql = format!(
        "SELECT ID FROM information_schema.PROCESSLIST \
         WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = env
            .cluster
            .root_sql(server, &sql)
            .await
            .expect("processlist");
        if let Some(id) = out.lines().find_map(|l| l.trim().parse().ok()) {
            return id;
        }
        assert!(Instant::now() < deadline, "no thread runs {marker}");
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

/// The client noticed its connection is closed.
fn is_closed(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Io(_)
            | mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)
    )
}

// ------------------------------------------------- 13. lost mid-reply

/// How the backend connection goes away in the middle of a reply.
#[derive(Clone, Copy, PartialEq)]
enum Cut {
    /// `KILL` of its thread on the replica.
    Kill,
    /// The client reads slower than the replica's `net_write_timeout`
    /// allows, and the replica gives up on the connection.
    SlowReader,
}

/// A client reading a big result slowly; the backend connection serving it
/// goes away once the client holds part of a row. The client must see its
/// connection closed, promptly, with the reply cut short.
async fn lost_mid_row(pooled: bool, cut: Cut) {
    let env = Env::start_with_policy_and(1, SPLIT, |t| t.push_str(pool(pooled))).await;
    common::routable(&env).await;
    let (user, pass) = (&env.cluster.app_user, &env.cluster.app_password);
    let mut raw = Raw::login(env.proxy, user, pass, Some("app"), 0).await;
    if cut == Cut::SlowReader {
        // Session state: it follows the session to the replica connection.
        raw.command(b"\x03SET SESSION net_write_timeout = 1").await;
        let (_, ok) = raw.packet().await;
        assert_eq!(ok.first(), Some(&0), "{:?}", String::from_utf8_lossy(&ok));
    }
    // 64 rows of 1 MiB: more than the sockets between the replica and the
    // client can buffer, so the replica is still sending when it is killed.
    let sql = "SELECT REPEAT('x', 1048576), 'lost-mid-row' FROM seq_1_to_64";
    let mut cmd = vec![0x03];
    cmd.extend_from_slice(sql.as_bytes());
    raw.command(&cmd).await;
    // Part of the first row reaches the client; then it stops reading.
    while raw.s.buffered() < 256 * 1024 {
        let n = timeout(REPLY, raw.s.fill())
            .await
            .expect("the reply starts")
            .expect("reading the reply");
        assert!(n > 0, "the reply ended early");
    }
    let replica = &env.cluster.replicas[0];
    let thread = thread_running(&env, replica, "lost-mid-row").await;
    match cut {
        Cut::Kill => kill_thread(&env, replica, thread).await,
        Cut::SlowReader => {
            // The replica ends the connection by itself after a second of
            // blocked writes.
            let gone =
                format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {thread}");
            let deadline = Instant::now() + REPLY;
            while env.cluster.root_sql(replica, &gone).await.unwrap().trim() != "0" {
                assert!(
                    Instant::now() < deadline,
                    "net_write_timeout never ended {thread}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }
    // Whatever was in flight arrives, then the connection ends: an ERR
    // packet after the partial row would leave the client waiting for the
    // rest of the row forever.
    let mut total = raw.s.buffered();
    raw.s.buffer().clear();
    let ended = timeout(REPLY, async {
        loop {
            match raw.s.fill().await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
            raw.s.buffer().clear();
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the client still waits {REPLY:?} after its backend connection was killed \
         ({total} bytes received)"
    );
    assert!(
        total < 64 << 20,
        "the reply was cut short ({total} bytes received)"
    );
    // Other clients are not affected.
    let mut c = env.conn().await;
    let one: i64 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_lost_mid_row_closes_the_client_connection() {
    lost_mid_row(false, Cut::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_lost_mid_row_closes_the_client_connection_with_the_transaction_pool() {
    lost_mid_row(true, Cut::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_net_write_timeout_sees_its_connection_closed() {
    lost_mid_row(false, Cut::SlowReader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slower_than_net_write_timeout_sees_its_connection_closed_with_the_transaction_pool(
) {
    lost_mid_row(true, Cut::SlowReader).await;
}

// ------------------------------------------------- 14. the CLI sees our errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_cli_shows_causeway_errors_for_a_lost_or_unreachable_backend() {
    let mut env = Env::start(0).await;
    // A statement running when the primary dies: nothing of its reply was
    // sent, so the client gets Causeway's error for a lost backend.
    let cli = {
        let mut cmd = tokio::process::Command::new(env.cluster.mariadb_cli());
        cmd.arg("--no-defaults")
            .arg("-h")
            .arg(env.proxy.ip().to_string())
            .arg("-P")
            .arg(env.proxy.port().to_string())
            .arg(format!("-u{}", env.cluster.app_user))
            .arg(format!("-p{}", env.cluster.app_password))
            .arg("-e")
            .arg("DO SLEEP(60) + LENGTH('cli-lost')")
            .arg("app");
        cmd.output()
    };
    let run = tokio::spawn(cli);
    thread_running(&env, &env.cluster.primary, "cli-lost").await;
    env.cluster.primary.kill();
    let out = timeout(REPLY, run)
        .await
        .expect("the CLI ends")
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("2027"), "{err}");
    assert!(
        err.contains("ERROR 1927 (70100)")
            && err.contains("Causeway lost its connection to backend 'primary'"),
        "{err}"
    );
    // The primary is down: a new client cannot be served.
    let out = env
        .cli(
            &env.cluster.app_user,
            &env.cluster.app_password,
            Some("app"),
            &["-e", "SELECT 1"],
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("2027"), "{err}");
    assert!(
        err.contains("ERROR 9002 (HY000)")
            && err.contains("Causeway cannot reach backend 'primary'"),
        "{err}"
    );
    env.stop().await;
}

// ------------------------------------------------- 5. state that cannot move

/// Statements that leave state on the primary connection, with what the
/// error must name.
const HELD: &[(&str, &str)] = &[
    ("SELECT GET_LOCK('held_lock', 0)", "user locks"),
    (
        "CREATE TEMPORARY TABLE held_tmp (a INT)",
        "temporary tables",
    ),
    ("LOCK TABLES held_t READ", "table locks"),
    ("PREPARE held_s FROM 'SELECT 1'", "prepared statements"),
];

async fn lost_state(pooled: bool) {
    let env = Env::start_with(0, |t| t.push_str(pool(pooled))).await;
    let mut setup = env.conn().await;
    setup
        .query_drop("CREATE TABLE held_t (a INT)")
        .await
        .unwrap();
    let mut o = env.conn().await;
    for (sql, what) in HELD {
        let mut c = env.conn().await;
        c.query_drop(*sql).await.unwrap();
        let thread = held_thread(&mut o, c.id(), "primary").await;
        kill_thread(&env, &env.cluster.primary, thread).await;
        // The next statement learns the state is gone ...
        let e = timeout(REPLY, c.query_drop("SELECT 1"))
            .await
            .expect("an answer after the kill")
            .expect_err(&format!("after {sql}: the state is gone"));
        match &e {
            mysql_async::Error::Server(s) => {
                assert_eq!((s.code, s.state.as_str()), (1927, "70100"), "{sql}: {e}");
                assert!(s.message.contains(what), "{sql}: {e}");
            }
            other => panic!("{sql}: an error packet expected, got {other:?}"),
        }
        // ... and the session is over, as after a server restart.
        let e = timeout(REPLY, c.query_drop("SELECT 1"))
            .await
            .expect("an answer after the error")
            .expect_err(&format!("after {sql}: the session must be closed"));
        assert!(is_closed(&e), "{sql}: {e:?}");
    }
    // Without a pool, a session without such state goes on: its idle
    // connection found closed, the next statement runs on a new one with
    // the session's state, with no error.
    if !pooled {
        let mut c = env.conn().await;
        c.query_drop("SET @plain = 5").await.unwrap();
        let thread = held_thread(&mut o, c.id(), "primary").await;
        kill_thread(&env, &env.cluster.primary, thread).await;
        c.query_drop("SELECT 1")
            .await
            .expect("a closed idle connection is replaced");
        let v: i64 = c.query_first("SELECT @plain").await.unwrap().unwrap();
        assert_eq!(v, 5);
        let now = held_thread(&mut o, c.id(), "primary").await;
        assert_ne!(now, thread, "a new backend connection");
    }
    drop((o, setup));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_locks_temporary_tables_and_prepares_end_the_session() {
    lost_state(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_locks_temporary_tables_and_prepares_end_the_session_with_the_transaction_pool() {
    lost_state(true).await;
}

// ------------------------------------------------- 6. READ ONLY on a replica

/// `binary`: the reads are prepared statements (COM_STMT_EXECUTE).
async fn read_only_lost(pooled: bool, binary: bool) {
    let env = Env::start_with_policy_and(1, SPLIT, |t| t.push_str(pool(pooled))).await;
    common::routable(&env).await;
    let mut o = env.conn().await;
    let mut c = env.conn().await;
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let replica_id = env.cluster.replicas[0].server_id;
    let first: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(
        first, replica_id,
        "the READ ONLY transaction runs on the replica"
    );
    let replica = &env.cluster.replicas[0];
    let thread = held_thread(&mut o, c.id(), &replica.name).await;
    kill_thread(&env, replica, thread).await;
    // A user variable is set (without a pool on the primary, where the
    // session's user variables live, so the replica connection must be
    // brought to the session's state before the next read: that fails; with
    // a pool on the transaction's connection: that fails).
    let set = timeout(REPLY, c.query_drop("SET @ro_v = 1"))
        .await
        .expect("an answer");
    let read = async {
        if binary {
            c.exec_first::<u32, _, _>("SELECT @@server_id", ()).await
        } else {
            c.query_first::<u32, _>("SELECT @@server_id").await
        }
    };
    let r = timeout(REPLY, read)
        .await
        .expect("an answer after the kill");
    // The first statement that needed the lost connection fails, saying
    // the transaction is over; nothing ran as if still inside it.
    let lost = match (&set, &r) {
        (Err(e), Ok(_)) if pooled => e,
        (Ok(()), Err(e)) if !pooled => e,
        _ => panic!("the lost transaction must fail one statement: SET {set:?}, read {r:?}"),
    };
    assert!(
        matches!(lost, mysql_async::Error::Server(s)
            if s.code == 1927 && s.message.contains("transaction")),
        "{lost:?}"
    );
    // The transaction is over, not the session: the next read runs
    // outside it.
    let r = timeout(REPLY, c.query_first::<u32, _>("SELECT @@in_transaction"))
        .await
        .expect("an answer");
    assert!(
        matches!(r, Ok(Some(0))),
        "the session of a lost transaction goes on outside it: {r:?}"
    );
    drop((c, o));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_whose_replica_connection_broke_fails() {
    read_only_lost(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_whose_replica_connection_broke_fails_for_prepared_statements() {
    read_only_lost(false, true).await;
    read_only_lost(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_whose_replica_connection_broke_fails_with_the_transaction_pool() {
    read_only_lost(true, false).await;
}
