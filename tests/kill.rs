//! KILL through Causeway acts on Causeway's sessions, with the server's
//! rules and errors: `KILL QUERY` interrupts another session's running
//! statement (which gets 1317 and goes on), `KILL` ends a session even
//! mid-statement and removes its backend connection, privileges decide
//! who may kill whom (1095), unknown ids give 1094, a backend thread id is
//! never killed by a client's KILL, COM_PROCESS_KILL, `KILL USER`, the
//! transaction pool, a connector (PyMySQL) cancelling with `KILL QUERY`,
//! and a client that disconnects while its statement runs.

mod common;

use std::time::{Duration, Instant};

use common::raw::{err_of, Raw};
use common::Env;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// How long conditions are polled for.
const SETTLE: Duration = Duration::from_secs(8);
const POLL: Duration = Duration::from_millis(20);
const SLEEP_SQL: &str = "SELECT SLEEP(10)";

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs `sql`, which must fail with server error `code` and a message
/// containing `msg`.
async fn fails_with(c: &mut Conn, sql: &str, code: u16, msg: &str) {
    let e = c
        .query_drop(sql)
        .await
        .expect_err(&format!("{sql} must fail with {code}"));
    assert_eq!(server_code(&e), Some(code), "{sql}: {e}");
    assert!(e.to_string().contains(msg), "{sql}: {e}");
}

/// The primary's thread running `info` (as the processlist shows it).
async fn thread_running(env: &Env, info: &str) -> u64 {
    thread_running_on(env, &env.cluster.primary, info).await
}

/// `server`'s thread running `info`.
async fn thread_running_on(env: &Env, server: &causeway::playground::Server, info: &str) -> u64 {
    let sql = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = '{}' LIMIT 1",
        info.replace('\'', "''")
    );
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = env.cluster.root_sql(server, &sql).await.unwrap_or_default();
        if let Ok(id) = out.trim().parse() {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "`{info}` never ran on the primary"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the primary's thread `id` is gone.
async fn thread_gone(env: &Env, id: u64) {
    let sql = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}");
    let deadline = Instant::now() + SETTLE;
    while env.primary_sql(&sql).await.trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "backend thread {id} is still there"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Starts `sql` on `c` in a task; gives the result with the time it took.
fn spawn_query(
    mut c: Conn,
    sql: &'static str,
) -> tokio::task::JoinHandle<(Conn, Result<(), mysql_async::Error>, Duration)> {
    tokio::spawn(async move {
        let t = Instant::now();
        let r = c.query_drop(sql).await;
        (c, r, t.elapsed())
    })
}

/// An account with `grants` (run as root on the primary). Made under
/// another name and renamed in one statement, so that Causeway's account
/// load never sees it without its grants.
async fn account(env: &Env, user: &str, grants: &[&str]) -> Conn {
    let tmp = format!("{user}_tmp");
    let mut sql = format!("CREATE USER '{tmp}'@'%' IDENTIFIED BY 'pw-{user}';");
    sql.push_str(&format!("GRANT SELECT ON app.* TO '{tmp}'@'%';"));
    for g in grants {
        sql.push_str(&format!("GRANT {g} ON *.* TO '{tmp}'@'%';"));
    }
    sql.push_str(&format!("RENAME USER '{tmp}'@'%' TO '{user}'@'%';"));
    env.primary_sql(&sql).await;
    let opts = env
        .opts()
        .user(Some(user.to_string()))
        .pass(Some(format!("pw-{user}")));
    Conn::new(opts).await.expect("log in as the new account")
}

/// A raw COM_PROCESS_KILL of `id`; the reply's first payload.
async fn process_kill(raw: &mut Raw, id: u32) -> bytes::Bytes {
    let mut payload = vec![0x0C];
    payload.extend_from_slice(&id.to_le_bytes());
    raw.command(&payload).await;
    raw.packet().await.1
}

/// KILL QUERY and KILL CONNECTION of a session of the same user running
/// `SELECT SLEEP(10)`.
async fn query_then_connection(env: &Env) {
    let mut killer = env.conn().await;
    let victim = env.conn().await;
    let victim_id = victim.id();
    // KILL QUERY: the victim gets the server's 1317 and its session goes on.
    let task = spawn_query(victim, SLEEP_SQL);
    thread_running(env, SLEEP_SQL).await;
    killer
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .expect("KILL QUERY of a session of the same user");
    let (mut victim, r, took) = task.await.unwrap();
    let e = r.expect_err("the interrupted statement fails");
    assert_eq!(server_code(&e), Some(1317), "{e}");
    assert!(took < Duration::from_secs(5), "interrupted after {took:?}");
    let one: Option<u8> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1), "the session goes on after KILL QUERY");
    // KILL CONNECTION: the victim's connection ends at once, well before
    // its statement would, and its backend thread is gone.
    let task = spawn_query(victim, SLEEP_SQL);
    let thread2 = thread_running(env, SLEEP_SQL).await;
    killer
        .query_drop(format!("KILL CONNECTION {victim_id}"))
        .await
        .expect("KILL of a session of the same user");
    let (mut victim, r, took) = task.await.unwrap();
    let e = r.expect_err("a killed session's statement fails");
    assert_eq!(server_code(&e), Some(1927), "{e}");
    assert!(took < Duration::from_secs(5), "killed after {took:?}");
    thread_gone(env, thread2).await;
    assert!(
        victim.query_drop("SELECT 1").await.is_err(),
        "the connection is closed"
    );
    let one: Option<u8> = killer.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_and_kill_connection_of_a_running_statement() {
    let env = Env::start(1).await;
    query_then_connection(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_and_kill_connection_with_the_transaction_pool() {
    let env = Env::start_with(1, |t| {
        t.push_str("\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 4\n")
    })
    .await;
    query_then_connection(&env).await;
    // The pool was not handed a killed or dirty connection: new sessions
    // run statements on it.
    for _ in 0..6 {
        let mut c = env.conn().await;
        let one: Option<u8> = c.query_first("/*FORCE_MASTER*/ SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_interrupts_a_statement_running_on_a_replica() {
    let env = Env::start(1).await;
    let mut killer = env.conn().await;
    let victim = env.conn().await;
    let vid = victim.id();
    const ON_REPLICA: &str = "/* causeway: route=replica1 */ SELECT SLEEP(10)";
    let task = spawn_query(victim, ON_REPLICA);
    thread_running_on(&env, &env.cluster.replicas[0], ON_REPLICA).await;
    killer
        .query_drop(format!("KILL QUERY {vid}"))
        .await
        .expect("KILL QUERY");
    let (mut victim, r, took) = task.await.unwrap();
    let e = r.expect_err("the interrupted statement fails");
    assert_eq!(server_code(&e), Some(1317), "{e}");
    assert!(took < Duration::from_secs(5), "interrupted after {took:?}");
    let one: Option<u8> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_kill_whom_follows_the_servers_rules() {
    let env = Env::start(1).await;
    let mut victim = env.conn().await;
    let vid = victim.id();
    // The application account has PROCESS, which shows sessions but does
    // not allow killing them; `other` has no privilege at all.
    let mut other = account(&env, "other", &[]).await;
    let mut admin = account(&env, "connadmin", &["CONNECTION ADMIN"]).await;
    let mut sup = account(&env, "superuser", &["SUPER"]).await;
    let oid = other.id();
    let not_owner = format!("You are not owner of thread {vid}");
    fails_with(&mut other, &format!("KILL {vid}"), 1095, &not_owner).await;
    fails_with(&mut other, &format!("KILL QUERY {vid}"), 1095, &not_owner).await;
    fails_with(&mut victim, &format!("KILL {oid}"), 1095, "not owner").await;
    fails_with(&mut other, "KILL 999999", 1094, "Unknown thread id: 999999").await;
    fails_with(
        &mut other,
        "KILL QUERY 4294967296",
        1094,
        "Unknown thread id",
    )
    .await;
    fails_with(
        &mut other,
        "KILL USER app",
        1095,
        "Operation KILL USER failed for app@%",
    )
    .await;
    // The same codes as the server gives for the same attempts.
    let mut direct = env.direct_primary().await;
    let did = direct.id();
    let e = other_direct(&env)
        .await
        .query_drop(format!("KILL {did}"))
        .await;
    assert_eq!(e.as_ref().err().and_then(server_code), Some(1095));
    direct.query_drop("SELECT 1").await.unwrap();
    // SUPER may interrupt another user's statement, CONNECTION ADMIN may
    // end another user's session.
    sup.query_drop(format!("KILL QUERY {vid}"))
        .await
        .expect("SUPER may KILL QUERY another user's session");
    victim
        .query_drop("SELECT 1")
        .await
        .expect("an idle session is not affected");
    admin
        .query_drop(format!("KILL {vid}"))
        .await
        .expect("CONNECTION ADMIN may kill another user's session");
    let deadline = Instant::now() + SETTLE;
    while victim.query_drop("SELECT 1").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the killed session still answers"
        );
        tokio::time::sleep(POLL).await;
    }
    // KILL QUERY ID names a query id, which Causeway does not show.
    fails_with(&mut admin, "KILL QUERY ID 5", 1957, "Unknown query id: 5").await;
    // Killing oneself: as the server, 1927 and the connection ends; KILL
    // QUERY of oneself interrupts the KILL itself (1317) and goes on.
    fails_with(&mut sup, "KILL QUERY CONNECTION_ID()", 1317, "interrupted").await;
    sup.query_drop("SELECT 1").await.unwrap();
    let sid = sup.id();
    fails_with(
        &mut sup,
        &format!("KILL {sid}"),
        1927,
        "Connection was killed",
    )
    .await;
    assert!(sup.query_drop("SELECT 1").await.is_err());
    env.stop().await;
}

/// `other` straight on the primary.
async fn other_direct(env: &Env) -> Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(env.cluster.primary.addr.ip().to_string())
        .tcp_port(env.cluster.primary.addr.port())
        .user(Some("other"))
        .pass(Some("pw-other"))
        .prefer_socket(false);
    Conn::new(opts).await.expect("direct login as other")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_thread_id_is_never_killed_through_causeway() {
    // Instance 5: session ids carry it in their high bits, far from any
    // backend thread id, so the ids below cannot name a session.
    let env = Env::start_with(1, |t| {
        *t = t.replacen("[proxy]\n", "[proxy]\ninstance = 5\n", 1);
    })
    .await;
    let mut c = env.conn().await;
    assert_eq!(c.id() >> 24, 5, "the handshake id carries the instance");
    // Another client's connection straight to the primary, running a
    // statement; and Causeway's own backend connection for `c`.
    let direct = env.direct_primary().await;
    let did = direct.id();
    let task = spawn_query(direct, "SELECT SLEEP(6)");
    thread_running(&env, "SELECT SLEEP(6)").await;
    let unknown = format!("Unknown thread id: {did}");
    fails_with(&mut c, &format!("KILL QUERY {did}"), 1094, &unknown).await;
    fails_with(&mut c, &format!("KILL {did}"), 1094, &unknown).await;
    let mut raw = Raw::login(
        env.proxy,
        &env.cluster.app_user,
        &env.cluster.app_password,
        None,
        0,
    )
    .await;
    let p = process_kill(&mut raw, did as u32).await;
    assert_eq!(err_of(&p).map(|e| e.0), Some(1094));
    let (_, r, took) = task.await.unwrap();
    r.expect("the direct client's statement was not touched");
    assert!(took >= Duration::from_secs(6));
    // A multi-statement holding a KILL is refused, not sent on.
    let e = c
        .query_drop(format!("SELECT 1; KILL {did}"))
        .await
        .unwrap_err();
    assert_eq!(server_code(&e), Some(1235), "{e}");
    // So is a KILL prepared with the binary protocol.
    let e = c.prep("KILL ?").await.unwrap_err();
    assert_eq!(server_code(&e), Some(1235), "{e}");
    c.query_drop("SELECT 1").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn com_process_kill_ends_a_session() {
    let env = Env::start(1).await;
    let victim = env.conn().await;
    let vid = victim.id();
    let task = spawn_query(victim, SLEEP_SQL);
    let thread = thread_running(&env, SLEEP_SQL).await;
    let mut raw = Raw::login(
        env.proxy,
        &env.cluster.app_user,
        &env.cluster.app_password,
        None,
        0,
    )
    .await;
    let p = process_kill(&mut raw, vid).await;
    assert_eq!(p.first(), Some(&0u8), "OK, got {:?}", err_of(&p));
    let (_, r, took) = task.await.unwrap();
    assert!(r.is_err());
    assert!(took < Duration::from_secs(5), "killed after {took:?}");
    thread_gone(&env, thread).await;
    let p = process_kill(&mut raw, 999_999).await;
    assert_eq!(err_of(&p).map(|e| e.0), Some(1094));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_user_ends_every_session_of_that_user() {
    let env = Env::start(1).await;
    let mut admin = account(&env, "opsadmin", &["CONNECTION ADMIN"]).await;
    let mut other = account(&env, "plain", &[]).await;
    let mut a = env.conn().await;
    let b = env.conn().await;
    let task = spawn_query(b, SLEEP_SQL);
    let thread = thread_running(&env, SLEEP_SQL).await;
    fails_with(&mut other, "KILL USER app", 1095, "KILL USER").await;
    // Nobody's sessions: OK, nothing killed.
    admin.query_drop("KILL USER nobody").await.unwrap();
    assert_eq!(admin.affected_rows(), 0);
    admin.query_drop("KILL USER 'app'@'%'").await.unwrap();
    assert_eq!(admin.affected_rows(), 2, "both sessions of app");
    let (_, r, took) = task.await.unwrap();
    assert!(r.is_err() && took < Duration::from_secs(5));
    thread_gone(&env, thread).await;
    assert!(a.query_drop("SELECT 1").await.is_err());
    // KILL QUERY USER interrupts, sessions go on; one's own user kills
    // oneself too, after the OK.
    other.query_drop("KILL QUERY USER plain").await.unwrap();
    other.query_drop("SELECT 1").await.unwrap();
    other.query_drop("KILL USER CURRENT_USER()").await.unwrap();
    assert!(other.query_drop("SELECT 1").await.is_err());
    admin.query_drop("SELECT 1").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_changes_who_the_kill_rules_see() {
    let env = Env::start(1).await;
    let mut app = env.conn().await;
    let mut other = account(&env, "changer", &[]).await;
    let oid = other.id();
    fails_with(&mut app, &format!("KILL QUERY {oid}"), 1095, "not owner").await;
    other
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(env.cluster.app_user.clone()))
                .with_pass(Some(env.cluster.app_password.clone())),
        )
        .await
        .expect("COM_CHANGE_USER to app");
    assert_eq!(other.id(), oid, "the session keeps its id");
    app.query_drop(format!("KILL QUERY {oid}"))
        .await
        .expect("now the same user");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_statement_ends_it_on_the_backend() {
    let env = Env::start(1).await;
    disconnect_mid_statement(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_statement_with_the_transaction_pool() {
    let env = Env::start_with(1, |t| t.push_str("\n[pool]\ntransaction_pool = true\n")).await;
    disconnect_mid_statement(&env).await;
    // The pool still serves.
    let mut c = env.conn().await;
    let one: Option<u8> = c.query_first("/*FORCE_MASTER*/ SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    env.stop().await;
}

/// A client waiting in `GET_LOCK` disconnects: its backend wait ends.
async fn disconnect_mid_statement(env: &Env) {
    let mut holder = env.conn().await;
    let got: Option<i64> = holder
        .query_first("SELECT GET_LOCK('k21', 0)")
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    // A client waits for the lock, then goes away without a word.
    let wait = "SELECT GET_LOCK('k21', 3600)";
    let mut raw = Raw::login(
        env.proxy,
        &env.cluster.app_user,
        &env.cluster.app_password,
        Some("app"),
        0,
    )
    .await;
    let mut payload = vec![0x03];
    payload.extend_from_slice(wait.as_bytes());
    raw.command(&payload).await;
    let thread = thread_running(env, wait).await;
    drop(raw);
    // The backend stops waiting: its thread goes away, as it would for a
    // client connected straight to the server.
    thread_gone(env, thread).await;
    // When the lock is released nobody takes it: the abandoned wait is over.
    let released: Option<i64> = holder
        .query_first("SELECT RELEASE_LOCK('k21')")
        .await
        .unwrap();
    assert_eq!(released, Some(1));
    let used = env.primary_sql("SELECT IS_USED_LOCK('k21') IS NULL").await;
    assert_eq!(used.trim(), "1", "the lock is free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_cancels_a_query_with_kill_query() {
    if std::process::Command::new("python3")
        .args(["-c", "import pymysql"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("PyMySQL is missing: run scripts/install-deps");
    }
    let env = Env::start(1).await;
    // What connectors do on a timeout: a second connection sends KILL
    // QUERY with the id from the first one's handshake.
    let script = r#"
import sys, threading, time, pymysql
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = lambda: pymysql.connect(host=host, port=port, user=user, password=pw, database="app")
victim, killer = c(), c()
out = {}
def run():
    t = time.time()
    try:
        victim.cursor().execute("SELECT SLEEP(10)")
        out["r"] = "no error"
    except pymysql.err.OperationalError as e:
        out["r"] = str(e.args[0])
    out["t"] = time.time() - t
th = threading.Thread(target=run); th.start()
time.sleep(1.0)
killer.cursor().execute("KILL QUERY %d" % victim.thread_id())
th.join()
cur = victim.cursor(); cur.execute("SELECT 1")
print(out["r"], "%.1f" % out["t"], cur.fetchone()[0])
"#;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env.proxy.ip().to_string())
        .arg(env.proxy.port().to_string())
        .arg(&env.cluster.app_user)
        .arg(&env.cluster.app_password)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"1317"), "{stdout}");
    let took: f64 = words.get(1).and_then(|t| t.parse().ok()).unwrap_or(99.0);
    assert!(took < 5.0, "{stdout}");
    assert_eq!(words.get(2), Some(&"1"), "the session goes on: {stdout}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_says_why_when_the_monitor_may_not_kill() {
    let env = Env::start(1).await;
    env.primary_sql("REVOKE CONNECTION ADMIN ON *.* FROM 'causeway_monitor'@'%'")
        .await;
    let mut killer = env.conn().await;
    let victim = env.conn().await;
    let vid = victim.id();
    let task = spawn_query(victim, "SELECT SLEEP(6)");
    thread_running(&env, "SELECT SLEEP(6)").await;
    fails_with(
        &mut killer,
        &format!("KILL QUERY {vid}"),
        1105,
        "the monitor account needs CONNECTION ADMIN",
    )
    .await;
    let (_, r, _) = task.await.unwrap();
    r.expect("the statement ran to its end");
    env.stop().await;
}
