//! Stored programs and anonymous blocks through Causeway, compared reply by
//! reply with a direct connection to the primary: procedures returning no,
//! one and several result sets, OUT parameters (text and binary protocol),
//! cursors, handlers, SIGNAL part-way through, `BEGIN NOT ATOMIC` blocks and
//! `sql_mode=ORACLE` programs. Three clients: mysql_async (it asks for
//! CLIENT_DEPRECATE_EOF), a raw client with classic EOF packets (what the C
//! client library uses), and the `mariadb` CLI itself, always under a
//! timeout: a reply Causeway ends too early leaves the client waiting for
//! ever.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use causeway::protocol::buf::Reader;
use causeway::protocol::consts::{cap, status};
use causeway::protocol::reply::Expect;
use common::raw::Raw;
use common::Env;
use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// No reply may take longer than this; direct answers in milliseconds.
const REPLY: Duration = Duration::from_secs(15);

const SETUP: &[&str] = &[
    "CREATE TABLE t1 (a INT)",
    "INSERT INTO t1 VALUES (1), (2), (3)",
    "CREATE PROCEDURE p_none() BEGIN DECLARE x INT DEFAULT 1; SET x = x + 1; END",
    "CREATE PROCEDURE p_one() SELECT a FROM t1 ORDER BY a",
    "CREATE PROCEDURE p_many() BEGIN SELECT a FROM t1 ORDER BY a; \
     SELECT 'two' AS b, 2.5 AS c, NULL AS d; SELECT COUNT(*) AS n FROM t1; END",
    "CREATE PROCEDURE p_out(IN i INT, OUT o INT, INOUT io VARCHAR(20)) \
     BEGIN SET o = i * 2; SET io = CONCAT(io, '!'); END",
    "CREATE PROCEDURE p_out_rs(IN i INT, OUT o INT) BEGIN SELECT i AS echoed; SET o = i + 1; END",
    "CREATE PROCEDURE p_cursor() BEGIN DECLARE va INT; \
     DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; \
     OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END",
    "CREATE PROCEDURE p_cursor_open() BEGIN DECLARE va INT; \
     DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; \
     OPEN cur; FETCH cur INTO va; SELECT va, 'still open' AS s; SELECT va + 1 AS next; END",
    "CREATE PROCEDURE p_loop() BEGIN DECLARE done INT DEFAULT 0; DECLARE va INT; \
     DECLARE s INT DEFAULT 0; DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; \
     DECLARE CONTINUE HANDLER FOR NOT FOUND SET done = 1; OPEN cur; \
     l: LOOP FETCH cur INTO va; IF done THEN LEAVE l; END IF; SET s = s + va; \
     SELECT va, s; END LOOP; CLOSE cur; SELECT s AS total; END",
    "CREATE PROCEDURE p_signal() BEGIN SELECT 1 AS before_error; \
     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'stopped here', MYSQL_ERRNO = 1644; \
     SELECT 2 AS never; END",
    "CREATE PROCEDURE p_cursor_signal() BEGIN DECLARE va INT; \
     DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; OPEN cur; FETCH cur INTO va; \
     SELECT va; SIGNAL SQLSTATE '45001' SET MESSAGE_TEXT = 'after a fetch'; END",
    "CREATE PROCEDURE p_handler() BEGIN \
     DECLARE CONTINUE HANDLER FOR SQLEXCEPTION SELECT 'handled' AS h; \
     SELECT * FROM no_such_table; SELECT 'after' AS a; END",
    "CREATE PROCEDURE p_exit() BEGIN \
     DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN GET DIAGNOSTICS CONDITION 1 @errno = MYSQL_ERRNO; \
     SELECT 'exited' AS e, @errno AS errno; END; \
     INSERT INTO t1 VALUES ('not a number'); SELECT 'unreached'; END",
    "CREATE PROCEDURE p_write() BEGIN INSERT INTO t1 VALUES (10); DELETE FROM t1 WHERE a = 10; END",
];

/// Statements run on both connections; every reply must be the same.
const STATEMENTS: &[&str] = &[
    "CALL p_none()",
    "CALL p_one()",
    "CALL p_many()",
    "CALL p_out(21, @o, @io)",
    "CALL p_cursor()",
    "CALL p_cursor_open()",
    "CALL p_loop()",
    "CALL p_signal()",
    "CALL p_cursor_signal()",
    "CALL p_handler()",
    "CALL p_exit()",
    "CALL p_write()",
    "CALL no_such_procedure()",
    "BEGIN NOT ATOMIC DECLARE va INT; DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; \
     OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END",
    "BEGIN NOT ATOMIC DECLARE va INT; DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; \
     OPEN cur; FETCH cur INTO va; SELECT va; FETCH cur INTO va; SELECT va; END",
    "BEGIN NOT ATOMIC DECLARE va INT; SELECT a INTO va FROM t1 ORDER BY a LIMIT 1; SELECT va; END",
    "BEGIN NOT ATOMIC DECLARE va INT; DECLARE cur CURSOR FOR SELECT a FROM t1; \
     OPEN cur; FETCH cur INTO va; CLOSE cur; END",
    "BEGIN NOT ATOMIC SELECT 1 AS x; SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'block'; END",
    "SELECT @o, @io, @errno",
];

/// One reply as a client library sees it: for each result set its column
/// names, rows, affected rows and warnings; an error ends it.
async fn dump_text(c: &mut Conn, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    match c.query_iter(sql).await {
        Ok(mut r) => loop {
            let cols: Vec<String> = r
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            match r.collect::<Row>().await {
                Ok(rows) => {
                    out.push(format!(
                        "cols={cols:?} rows={:?} affected={} warnings={}",
                        rows.into_iter().map(Row::unwrap).collect::<Vec<_>>(),
                        r.affected_rows(),
                        r.warnings()
                    ));
                }
                Err(e) => {
                    out.push(format!("error {e}"));
                    break;
                }
            }
            if r.is_empty() {
                break;
            }
        },
        Err(e) => out.push(format!("error {e}")),
    }
    out
}

/// Like [`dump_text`] over the binary protocol (prepare + execute).
async fn dump_binary(c: &mut Conn, sql: &str, params: Params) -> Vec<String> {
    let mut out = Vec::new();
    match c.exec_iter(sql, params).await {
        Ok(mut r) => loop {
            let cols: Vec<String> = r
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            match r.collect::<Row>().await {
                Ok(rows) => out.push(format!(
                    "cols={cols:?} rows={:?} affected={}",
                    rows.into_iter().map(Row::unwrap).collect::<Vec<_>>(),
                    r.affected_rows(),
                )),
                Err(e) => {
                    out.push(format!("error {e}"));
                    break;
                }
            }
            if r.is_empty() {
                break;
            }
        },
        Err(e) => out.push(format!("error {e}")),
    }
    out
}

async fn setup(env: &Env) {
    let mut c = env.direct_primary().await;
    for s in SETUP {
        c.query_drop(*s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// Both connections answer every statement alike, and the proxied one
/// still works afterwards.
async fn compare_text(proxied: &mut Conn, direct: &mut Conn, sql: &str) -> Vec<String> {
    let want = timeout(REPLY, dump_text(direct, sql))
        .await
        .expect("direct answers");
    let got = timeout(REPLY, dump_text(proxied, sql))
        .await
        .unwrap_or_else(|_| panic!("no reply through Causeway to {sql}"));
    assert_eq!(got, want, "text protocol: {sql}");
    let d = direct.query_first::<i32, _>("SELECT 1").await;
    let p = timeout(REPLY, proxied.query_first::<i32, _>("SELECT 1"))
        .await
        .expect("the session answers after the statement");
    let (p, d) = (format!("after: {p:?}"), format!("after: {d:?}"));
    assert_eq!(p, d, "after {sql}");
    let mut want = want;
    want.push(d);
    want
}

fn joined(v: &[String]) -> String {
    v.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_programs_reply_as_direct_over_text_and_binary_protocols() {
    let env = Env::start(0).await;
    setup(&env).await;
    text_and_binary(&env).await;
    env.stop().await;
}

/// The same through the transaction-level pool: the session borrows a
/// connection per statement, and a stored program's leftover cursor flag
/// must not pin it as if the client had opened a cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_programs_reply_as_direct_through_the_transaction_pool() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 2\n")
    })
    .await;
    setup(&env).await;
    text_and_binary(&env).await;
    env.stop().await;
}

async fn text_and_binary(env: &Env) {
    let mut direct = env.direct_primary().await;
    let mut proxied = env.conn().await;
    let mut seen = Vec::new();
    for sql in STATEMENTS {
        seen.push(joined(&compare_text(&mut proxied, &mut direct, sql).await));
    }
    // The comparisons above mean something only if direct answered as
    // MariaDB does: spot-check the shapes.
    let all = seen.join("\n---\n");
    assert!(seen[0].contains("cols=[]"), "{all}");
    assert_eq!(seen[2].matches("cols=").count(), 3, "three sets: {all}");
    assert!(
        seen[4].contains("cols=[\"va\"] rows=[[Bytes(\"1\")]]"),
        "{all}"
    );
    assert!(
        seen[7].contains("before_error") && seen[7].contains("1644"),
        "{all}"
    );
    assert!(
        seen[9].contains("handled") && seen[9].contains("after"),
        "{all}"
    );
    assert!(
        seen[10].contains("exited") && seen[10].contains("1366"),
        "{all}"
    );
    assert!(seen[13].contains("rows=[[Bytes(\"1\")]]"), "{all}");
    assert!(seen[18].contains("Bytes(\"42\")"), "{all}");

    // Binary protocol: CALL with IN, OUT and INOUT placeholders (the
    // server answers with an OUT-parameter result set), and the cursor
    // programs.
    for (sql, params) in [
        (
            "CALL p_out(?, ?, ?)",
            Params::Positional(vec![21.into(), Value::NULL, "x".into()]),
        ),
        (
            "CALL p_out_rs(?, ?)",
            Params::Positional(vec![5.into(), Value::NULL]),
        ),
        ("CALL p_cursor()", Params::Empty),
        ("CALL p_cursor_open()", Params::Empty),
        ("CALL p_loop()", Params::Empty),
        ("CALL p_signal()", Params::Empty),
        ("CALL p_many()", Params::Empty),
    ] {
        let want = timeout(REPLY, dump_binary(&mut direct, sql, params.clone()))
            .await
            .expect("direct answers");
        let got = timeout(REPLY, dump_binary(&mut proxied, sql, params))
            .await
            .unwrap_or_else(|_| panic!("no binary reply through Causeway to {sql}"));
        assert_eq!(got, want, "binary protocol: {sql}");
        if sql == "CALL p_out(?, ?, ?)" {
            assert!(joined(&want).contains("Int(42)"), "{want:?}");
            assert!(joined(&want).contains("x!"), "{want:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_mode_programs_reply_as_direct() {
    let env = Env::start(0).await;
    setup(&env).await;
    let mut direct = env.direct_primary().await;
    let mut proxied = env.conn().await;
    for sql in [
        "SET sql_mode = ORACLE",
        "CREATE OR REPLACE PROCEDURE po AS va INT; CURSOR cur IS SELECT a FROM t1 ORDER BY a; \
         BEGIN OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END;",
        "CREATE OR REPLACE PROCEDURE po_out(i IN INT, o OUT INT) AS \
         BEGIN o := i * 3; SELECT i AS echoed FROM DUAL; END;",
    ] {
        direct.query_drop(sql).await.unwrap();
        // The second CREATE replaces the procedure: harmless on the
        // shared primary.
        proxied.query_drop(sql).await.unwrap();
    }
    let mut seen = Vec::new();
    for sql in [
        "DECLARE va INT; CURSOR cur IS SELECT a FROM t1 ORDER BY a; \
         BEGIN OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END",
        "DECLARE va INT; BEGIN SELECT a INTO va FROM t1 ORDER BY a LIMIT 1; SELECT va FROM DUAL; END",
        "CALL po",
        "CALL po_out(4, @o)",
        "SELECT @o",
        "DECLARE x INT; BEGIN x := 1 / 0; SELECT x FROM DUAL; END",
        "DECLARE e EXCEPTION; BEGIN SELECT 1 AS first FROM DUAL; RAISE e; END",
    ] {
        seen.push(joined(&compare_text(&mut proxied, &mut direct, sql).await));
    }
    assert!(seen[0].contains("rows=[[Bytes(\"1\")]]"), "{seen:?}");
    assert!(seen[2].contains("rows=[[Bytes(\"1\")]]"), "{seen:?}");
    assert!(seen[4].contains("Bytes(\"12\")"), "{seen:?}");
    drop(direct);
    drop(proxied);
    env.stop().await;
}

// ------------------------------------------------------- classic EOF, raw

/// Reads one COM_QUERY/COM_STMT_EXECUTE reply with classic EOF packets,
/// independently of Causeway's own reply scanner: a result set is a column
/// count, that many definitions, an EOF, rows, and an EOF or ERR; OK, ERR
/// and EOF terminators go on while they carry SERVER_MORE_RESULTS_EXISTS.
async fn classic_reply(r: &mut Raw) -> Vec<(u8, Bytes)> {
    let mut v = Vec::new();
    let more = |p: &Bytes| -> bool {
        let st = if p.first() == Some(&0xFE) {
            p.get(3..5).map(|b| u16::from_le_bytes([b[0], b[1]]))
        } else {
            let mut rd = Reader::new(p.get(1..).unwrap_or_default());
            rd.lenenc_int().and(rd.lenenc_int()).and(rd.u16())
        };
        st.is_some_and(|s| s & status::MORE_RESULTS_EXISTS != 0)
    };
    loop {
        let (h, p) = r.packet().await;
        v.push((h.seq, p.clone()));
        match p.first() {
            Some(0xFF) => return v,
            Some(0x00) if more(&p) => continue,
            Some(0x00) => return v,
            _ => {}
        }
        let n = Reader::new(&p).lenenc_int().expect("column count");
        for _ in 0..=n {
            let (h, p) = r.packet().await;
            v.push((h.seq, p));
        }
        loop {
            let (h, p) = r.packet().await;
            v.push((h.seq, p.clone()));
            if p.first() == Some(&0xFF) {
                return v;
            }
            if p.first() == Some(&0xFE) && p.len() < 9 {
                if more(&p) {
                    break;
                }
                return v;
            }
        }
    }
}

async fn raw_login(addr: SocketAddr) -> Raw {
    // PS_MULTI_RESULTS: a CALL that returns result sets may be executed.
    Raw::login(
        addr,
        "app",
        "app-secret",
        Some("app"),
        cap::PS_MULTI_RESULTS,
    )
    .await
}

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    p
}

/// COM_STMT_EXECUTE with no cursor and the given parameter block.
fn execute(id: u32, params: &[u8]) -> Vec<u8> {
    let mut p = vec![0x17];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0);
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(params);
    p
}

/// Prepares `sql`, returning the statement id.
async fn prepare(r: &mut Raw, sql: &str) -> u32 {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    r.command(&p).await;
    let reply = timeout(REPLY, r.reply(Expect::Prepare))
        .await
        .expect("prepare reply");
    let first = reply.first().expect("a prepare reply");
    assert_eq!(first.first(), Some(&0), "prepare {sql}: {first:?}");
    Reader::new(first.get(1..).unwrap_or_default())
        .u32()
        .expect("statement id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_eof_replies_match_direct_packet_for_packet() {
    let env = Env::start(0).await;
    setup(&env).await;
    let mut direct = raw_login(env.cluster.primary.addr).await;
    let mut proxied = raw_login(env.proxy).await;
    for sql in STATEMENTS {
        direct.command(&query(sql)).await;
        let want = timeout(REPLY, classic_reply(&mut direct))
            .await
            .expect("direct answers");
        proxied.command(&query(sql)).await;
        let got = timeout(REPLY, classic_reply(&mut proxied))
            .await
            .unwrap_or_else(|_| panic!("no classic reply through Causeway to {sql}"));
        assert_eq!(got, want, "COM_QUERY {sql}");
    }
    // The same over COM_STMT_EXECUTE, including OUT parameters:
    // IN 21 (LONG), OUT NULL, INOUT 'x' (VAR_STRING).
    let out_params: &[u8] = &[0x02, 1, 0x03, 0, 0x06, 0, 0xFD, 0, 21, 0, 0, 0, 1, b'x'];
    for (sql, params) in [
        ("CALL p_cursor()", &[][..]),
        ("CALL p_cursor_open()", &[][..]),
        ("CALL p_loop()", &[][..]),
        ("CALL p_cursor_signal()", &[][..]),
        ("CALL p_out(?, ?, ?)", out_params),
    ] {
        let mut replies = Vec::new();
        for r in [&mut direct, &mut proxied] {
            let id = prepare(r, sql).await;
            r.command(&execute(id, params)).await;
            let reply = timeout(REPLY, classic_reply(r))
                .await
                .unwrap_or_else(|_| panic!("no execute reply to {sql}"));
            replies.push(reply);
        }
        assert_eq!(replies[1], replies[0], "COM_STMT_EXECUTE {sql}");
    }
    env.stop().await;
}

// ---------------------------------------------------------- mariadb CLI

/// Runs a script through the `mariadb` CLI (batch mode, headers on) under
/// a timeout. `None` when it did not finish: the client hung.
async fn cli_script(env: &Env, addr: SocketAddr, script: &str) -> Option<(bool, String, String)> {
    let mut child = tokio::process::Command::new(env.cluster.mariadb_cli())
        .arg("--no-defaults")
        .arg(format!("-h{}", addr.ip()))
        .arg(format!("-P{}", addr.port()))
        .arg("-uapp")
        .arg("-papp-secret")
        .arg("app")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("mariadb CLI runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    let out = timeout(REPLY, child.wait_with_output()).await.ok()?.ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_fetch_then_select_does_not_hang() {
    let env = Env::start(0).await;
    setup(&env).await;
    let scripts = [
        "DELIMITER $$\n\
         BEGIN NOT ATOMIC DECLARE va INT; DECLARE cur CURSOR FOR SELECT a FROM t1 ORDER BY a; \
         OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END$$\n",
        "CALL p_cursor();\nCALL p_loop();\nCALL p_many();\nCALL p_out(1, @o, @io);\nSELECT @o, @io;\n",
        "CALL p_cursor_signal();\nSELECT 'not reached in batch mode';\n",
        "SET sql_mode = ORACLE;\nDELIMITER $$\n\
         DECLARE va INT; CURSOR cur IS SELECT a FROM t1 ORDER BY a; \
         BEGIN OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END$$\n\
         CREATE OR REPLACE PROCEDURE po_cli AS va INT; CURSOR cur IS SELECT a FROM t1 ORDER BY a; \
         BEGIN OPEN cur; FETCH cur INTO va; SELECT va; CLOSE cur; END;$$\n\
         CALL po_cli$$\n",
    ];
    for script in scripts {
        let direct = cli_script(&env, env.cluster.primary.addr, script)
            .await
            .expect("direct CLI finishes");
        let proxied = cli_script(&env, env.proxy, script)
            .await
            .unwrap_or_else(|| panic!("the mariadb CLI hung through Causeway on:\n{script}"));
        assert_eq!(proxied, direct, "{script}");
    }
    // Sanity: the first script printed the fetched value as direct does.
    let (ok, out, _) = cli_script(&env, env.proxy, scripts[0]).await.unwrap();
    assert!(ok && out == "va\n1\n", "{out}");
    env.stop().await;
}
