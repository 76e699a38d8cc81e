//! State a session's statements leave behind that must follow the session
//! to whichever backend runs its next statement: the multi-statements
//! option (COM_SET_OPTION), the diagnostics area (warnings and errors) and
//! user variables set by stored programs. Each is compared with a direct
//! connection to the primary.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use causeway::protocol::consts::cap;
use causeway::protocol::reply::Expect;
use common::raw::{err_of, Raw};
use common::{routable, Env, SPLIT};

/// The transaction-level pool, for the variants that run with it.
const TXN_POOL: &str = "\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 4\n";

/// What a reply to a text query amounts to: each result's first-column
/// values, or the error code.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Results(Vec<Vec<String>>),
    Error(u16),
}

/// Runs one COM_QUERY on a raw connection and reads the whole reply.
async fn query(raw: &mut Raw, sql: &str) -> Outcome {
    let mut payload = vec![3u8];
    payload.extend_from_slice(sql.as_bytes());
    raw.command(&payload).await;
    outcome(&raw.reply(Expect::ResultSets).await)
}

/// Splits a reply's packets into results. Each result set is column
/// count, column definitions, EOF, rows, EOF (no CLIENT_DEPRECATE_EOF).
fn outcome(packets: &[Bytes]) -> Outcome {
    let mut results = Vec::new();
    let mut i = 0;
    while let Some(p) = packets.get(i) {
        if let Some((code, _, _)) = err_of(p) {
            return Outcome::Error(code);
        }
        if p.first() == Some(&0) {
            results.push(Vec::new());
            i += 1;
            continue;
        }
        let columns = p.first().copied().unwrap_or(0) as usize;
        i += 1 + columns + 1;
        let mut rows = Vec::new();
        while let Some(r) = packets.get(i) {
            i += 1;
            if r.first() == Some(&0xFE) && r.len() < 9 {
                break;
            }
            let len = r.first().copied().unwrap_or(0) as usize;
            let v = r.get(1..1 + len).unwrap_or(&[]);
            rows.push(String::from_utf8_lossy(v).into_owned());
        }
        results.push(rows);
    }
    Outcome::Results(results)
}

async fn set_option(raw: &mut Raw, multi: bool) {
    let v: u16 = if multi { 0 } else { 1 };
    let mut payload = vec![0x1Bu8];
    payload.extend_from_slice(&v.to_le_bytes());
    raw.command(&payload).await;
    let (_, p) = raw.packet().await;
    assert!(
        matches!(p.first(), Some(0x00) | Some(0xFE)),
        "COM_SET_OPTION answered {p:?}"
    );
}

async fn login(addr: SocketAddr, env: &Env, caps: u32) -> Raw {
    let c = &env.cluster;
    Raw::login(addr, &c.app_user, &c.app_password, Some("app"), caps).await
}

/// Turns multi-statements off then on (and on, from a login without the
/// capability) with COM_SET_OPTION, and runs multi-statement reads that go
/// to replicas: each gives what it gives on a direct connection.
async fn multi_statements_follow(env: &Env) {
    routable(env).await;
    let direct_addr = env.cluster.primary.addr;
    let read = "SELECT @@server_id; SELECT 2";
    for login_caps in [cap::MULTI_STATEMENTS, 0] {
        let mut direct = login(direct_addr, env, login_caps).await;
        let mut proxied = login(env.proxy, env, login_caps).await;
        for multi in [false, true, false, true] {
            set_option(&mut direct, multi).await;
            set_option(&mut proxied, multi).await;
            let mut on_replica = false;
            for round in 0..6 {
                let want = query(&mut direct, read).await;
                let got = query(&mut proxied, read).await;
                match (&want, &got) {
                    (Outcome::Results(w), Outcome::Results(g)) => {
                        assert_eq!(w.len(), 2, "direct gives two results");
                        assert_eq!(g.len(), w.len(), "round {round}: {got:?} vs {want:?}");
                        assert_eq!(g[1], w[1]);
                        on_replica |= g[0].iter().any(|id| id != "1");
                    }
                    _ => assert_eq!(got, want, "multi={multi} round {round}"),
                }
            }
            assert_eq!(on_replica, multi, "multi-statement reads reach replicas");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_option_follows_the_session_without_a_pool() {
    let env = Env::start_with_policy(2, SPLIT).await;
    multi_statements_follow(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_option_follows_the_session_with_the_transaction_pool() {
    let env = Env::start_with_policy_and(2, SPLIT, |t| t.push_str(TXN_POOL)).await;
    multi_statements_follow(&env).await;
    env.stop().await;
}

/// One statement's result as text (rows, or the error code), for
/// comparing a proxied session with a direct one.
async fn run(c: &mut mysql_async::Conn, sql: &str) -> String {
    use mysql_async::prelude::Queryable;
    match c.query::<mysql_async::Row, _>(sql).await {
        Ok(rows) => format!(
            "{:?}",
            rows.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>()
        ),
        Err(mysql_async::Error::Server(e)) => format!("error {}", e.code),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// Statements that raise warnings or errors, each followed by the
/// statements that read them.
const WARNINGS_SCRIPT: &[&str] = &[
    "SHOW WARNINGS",
    "SHOW COUNT(*) WARNINGS",
    "SELECT @@warning_count",
    // A read of no table leaves the warnings as they were.
    "SELECT 1",
    "SHOW WARNINGS",
    "GET DIAGNOSTICS @n = NUMBER",
    "GET DIAGNOSTICS CONDITION 1 @m = MESSAGE_TEXT",
    "SELECT @n, @m",
    // A read of a table clears them.
    "SELECT a FROM wt ORDER BY a LIMIT 1",
    "SHOW WARNINGS",
    "SELECT @@warning_count",
    "SELECT CAST('x' AS SIGNED) FROM wt ORDER BY a LIMIT 1",
    "SHOW WARNINGS",
    "SELECT @@session.warning_count, @@error_count",
    "SELECT a FROM no_such_table",
    "SHOW ERRORS",
    "SHOW COUNT(*) ERRORS",
    "SELECT @@error_count",
    "SHOW WARNINGS LIMIT 1",
];

/// 50 rounds: a read that warns (served by a replica through Causeway),
/// then the script; every diagnostics read matches a direct connection.
/// With `noise`, another session raising its own warnings runs between
/// steps (with a pool it shares backend connections with the first).
async fn warnings_match_direct(env: &Env, noise: bool) {
    use mysql_async::prelude::Queryable;
    routable(env).await;
    env.primary_sql("CREATE TABLE app.wt (a INT PRIMARY KEY); INSERT INTO app.wt VALUES (1), (2)")
        .await;
    env.cluster
        .wait_replicas_caught_up(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let mut direct = env.direct_primary().await;
    let mut proxied = env.conn().await;
    let mut other = env.conn().await;
    let mut on_replica = 0;
    for round in 0..50 {
        let warn = "SELECT sha2(x'ff', 1)";
        direct.query_drop(warn).await.unwrap();
        let id: Option<(Option<String>, u32)> = proxied
            .query_first("SELECT sha2(x'ff', 1), @@server_id")
            .await
            .unwrap();
        if id.is_some_and(|(_, id)| id != 1) {
            on_replica += 1;
        }
        for sql in WARNINGS_SCRIPT {
            if noise {
                let _ = other
                    .query_drop("SELECT CAST('noise' AS SIGNED) FROM wt")
                    .await;
            }
            let want = run(&mut direct, sql).await;
            let got = run(&mut proxied, sql).await;
            assert_eq!(got, want, "round {round}: {sql}");
        }
    }
    assert!(on_replica > 0, "the warning reads reached replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_read_where_the_statement_ran_without_a_pool() {
    let env = Env::start_with_policy(2, SPLIT).await;
    warnings_match_direct(&env, false).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_read_where_the_statement_ran_with_the_transaction_pool() {
    let env = Env::start_with_policy_and(2, SPLIT, |t| {
        t.push_str("\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 2\n")
    })
    .await;
    warnings_match_direct(&env, true).await;
    env.stop().await;
}

/// A procedure, a function and a trigger that set user variables without
/// the statement that runs them naming those variables.
const PROGRAMS: &str = "CREATE TABLE app.vt (a INT);
CREATE PROCEDURE app.p1(IN x INT) BEGIN SET @a = x; SET @b = CONCAT('v', x); END;
CREATE FUNCTION app.f1(x INT) RETURNS INT DETERMINISTIC NO SQL BEGIN SET @fv = x * 2; RETURN x; END;
CREATE TRIGGER app.vt_ai AFTER INSERT ON app.vt FOR EACH ROW SET @tv = NEW.a * 10;
GRANT EXECUTE ON app.* TO app@'%'";

/// Each step, then reads of the variables it set, many times: the same as
/// on a direct connection.
const HIDDEN_VARS_SCRIPT: &[(&str, &str)] = &[
    ("CALL p1(7)", "SELECT @a, @b"),
    ("SELECT f1(5)", "SELECT @fv"),
    ("SELECT f1(6) FROM vt LIMIT 1", "SELECT @fv, @a"),
    ("INSERT INTO vt VALUES (3)", "SELECT @tv"),
    ("INSERT INTO vt VALUES (f1(4))", "SELECT @fv, @tv"),
    ("EXECUTE IMMEDIATE 'SET @i = 11'", "SELECT @i"),
    ("PREPARE s FROM 'SET @e = 12'", "SELECT @e"),
    ("EXECUTE s", "SELECT @e, @i"),
    ("BEGIN NOT ATOMIC SET @c = 13; END", "SELECT @c"),
    ("CALL p1(8)", "SELECT @a, @b, @c, @fv"),
];

async fn hidden_user_vars_match_direct(env: &Env) {
    use mysql_async::prelude::Queryable;
    routable(env).await;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(env.cluster.primary.addr.ip().to_string())
        .tcp_port(env.cluster.primary.addr.port())
        .user(Some("root"))
        .prefer_socket(false);
    let mut root = mysql_async::Conn::new(opts).await.unwrap();
    for sql in PROGRAMS.split(";\n") {
        root.query_drop(sql).await.unwrap();
    }
    root.disconnect().await.unwrap();
    env.cluster
        .wait_replicas_caught_up(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let mut direct = env.direct_primary().await;
    let mut proxied = env.conn().await;
    for (step, read) in HIDDEN_VARS_SCRIPT {
        direct.query_drop(*step).await.unwrap();
        proxied.query_drop(*step).await.unwrap();
        let want = run(&mut direct, read).await;
        for i in 0..12 {
            let got = run(&mut proxied, read).await;
            assert_eq!(got, want, "after {step}, read {i}: {read}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_set_by_stored_programs_are_read_where_set_without_a_pool() {
    let env = Env::start_with_policy(2, SPLIT).await;
    hidden_user_vars_match_direct(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_set_by_stored_programs_are_carried_in_the_session_pool() {
    let env =
        Env::start_with_policy_and(2, SPLIT, |t| t.push_str("\n[pool]\nsession_pool = true\n"))
            .await;
    hidden_user_vars_match_direct(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_variables_set_by_stored_programs_are_carried_in_the_transaction_pool() {
    let env = Env::start_with_policy_and(2, SPLIT, |t| t.push_str(TXN_POOL)).await;
    hidden_user_vars_match_direct(&env).await;
    env.stop().await;
}
