//! SHOW PROCESSLIST, information_schema.PROCESSLIST and SHOW CAUSEWAY
//! PROCESSLIST through Causeway list its client sessions, with the server's
//! columns and meanings, compared with what the primary shows for an
//! equivalent direct session; each user without the PROCESS privilege sees
//! only its own sessions; the operator's columns follow a reconnect.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Env;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row, Value};

const SETTLE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// Two accounts without the PROCESS privilege.
async fn users(env: &Env) {
    env.primary_sql(
        "CREATE USER 'alice'@'%' IDENTIFIED BY 'alice-pw'; GRANT SELECT ON app.* TO 'alice'@'%'; \
         CREATE USER 'bob'@'%' IDENTIFIED BY 'bob-pw'; GRANT SELECT ON app.* TO 'bob'@'%';",
    )
    .await;
}

fn opts(host: &str, port: u16, user: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user.to_string()))
        .pass(Some(format!("{user}-pw")))
        .db_name(Some("app"))
        .prefer_socket(false)
}

/// A session of `user` through Causeway.
async fn proxied(env: &Env, user: &str) -> Conn {
    let o = opts(&env.proxy.ip().to_string(), env.proxy.port(), user);
    Conn::new(o).await.expect("connect through causeway")
}

/// A session of `user` straight to the primary.
async fn direct(env: &Env, user: &str) -> Conn {
    let p = env.cluster.primary.addr;
    Conn::new(opts(&p.ip().to_string(), p.port(), user))
        .await
        .expect("connect to the primary")
}

/// A column as a client sees it: name, type, NOT NULL.
type Col = (String, ColumnType, bool);

/// The columns and rows of `sql`.
async fn table(c: &mut Conn, sql: &str) -> (Vec<Col>, Vec<Row>) {
    let mut r = c.query_iter(sql).await.expect(sql);
    let cols = r
        .columns()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c.name_str().into_owned(),
                        c.column_type(),
                        c.flags().contains(ColumnFlags::NOT_NULL_FLAG),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Row> = r.collect().await.expect(sql);
    (cols, rows)
}

/// The columns and rows of `sql` once they show session `idle` as idle.
/// The server itself reports a session's finished statement as `Query`
/// for a moment after its client has the reply, so poll for `Sleep`.
async fn idle_in(c: &mut Conn, sql: &str, idle: u32) -> (Vec<Col>, Vec<Row>) {
    let until = Instant::now() + SETTLE;
    loop {
        let (cols, rows) = table(c, sql).await;
        let command = row_of(&rows, idle)[4].clone();
        if command.as_deref() == Some("Sleep") || Instant::now() > until {
            return (cols, rows);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// A row of a process list as text, by column position.
fn cells(r: &Row) -> Vec<Option<String>> {
    (0..r.len()).map(|i| r.as_ref(i).and_then(text)).collect()
}

/// The row of session `id` (first column) in `rows`.
fn row_of(rows: &[Row], id: u32) -> Vec<Option<String>> {
    rows.iter()
        .map(cells)
        .find(|c| c.first().cloned().flatten() == Some(id.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "session {id} in {:?}",
                rows.iter().map(cells).collect::<Vec<_>>()
            )
        })
}

fn ids(rows: &[Row]) -> BTreeSet<u32> {
    rows.iter()
        .filter_map(|r| cells(r).first().cloned().flatten()?.parse().ok())
        .collect()
}

/// `127.0.0.1:<port>`, as the server writes Host.
fn host_shape(h: &Option<String>) -> bool {
    h.as_deref()
        .and_then(|h| h.strip_prefix("127.0.0.1:"))
        .is_some_and(|p| p.parse::<u16>().is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_processlist_matches_the_server_column_by_column() {
    let env = Env::start(0).await;
    users(&env).await;
    let mut p1 = proxied(&env, "alice").await;
    let p2 = proxied(&env, "alice").await;
    let mut d1 = direct(&env, "alice").await;
    let d2 = direct(&env, "alice").await;

    for sql in ["SHOW FULL PROCESSLIST", "SHOW PROCESSLIST"] {
        let (pcols, prows) = idle_in(&mut p1, sql, p2.id()).await;
        let (dcols, drows) = idle_in(&mut d1, sql, d2.id()).await;
        // Names, types and NOT NULL, column by column.
        assert_eq!(pcols, dcols, "{sql}: columns through Causeway vs direct");
        // Only client sessions: the two of alice's, none of the backend
        // connections Causeway holds for them.
        assert_eq!(ids(&prows), BTreeSet::from([p1.id(), p2.id()]), "{sql}");
        // The asking session, as the server shows its own.
        let (p, d) = (row_of(&prows, p1.id()), row_of(&drows, d1.id()));
        assert_eq!(p[1], d[1], "User");
        assert!(host_shape(&p[2]) && host_shape(&d[2]), "Host {p:?} {d:?}");
        for (i, name) in [
            (3, "db"),
            (4, "Command"),
            (5, "Time"),
            (6, "State"),
            (7, "Info"),
        ] {
            assert_eq!(p[i], d[i], "{sql}: {name} of the asking session");
        }
        assert_eq!(p[7].as_deref(), Some(sql));
        assert_eq!(
            p[8].as_deref().map(|v| v.parse::<f64>().ok()),
            Some(Some(0.0))
        );
        // An idle session.
        let (p, d) = (row_of(&prows, p2.id()), row_of(&drows, d2.id()));
        for (i, name) in [
            (1, "User"),
            (3, "db"),
            (4, "Command"),
            (6, "State"),
            (7, "Info"),
        ] {
            assert_eq!(p[i], d[i], "{sql}: {name} of an idle session");
        }
        assert_eq!(p[4].as_deref(), Some("Sleep"));
        assert_eq!(p[7], None);
    }

    // A running statement longer than 100 characters: truncated without
    // FULL, whole with it, as the server does.
    let long = format!("SELECT SLEEP(3), '{}'", "x".repeat(120));
    let run = |mut c: Conn, sql: String| {
        tokio::spawn(async move {
            c.query_drop(&sql).await.expect("the long statement");
            c
        })
    };
    let (pid, did) = (p2.id(), d2.id());
    let (tp, td) = (run(p2, long.clone()), run(d2, long.clone()));
    let deadline = Instant::now() + SETTLE;
    loop {
        let (_, prows) = table(&mut p1, "SHOW PROCESSLIST").await;
        let (_, drows) = table(&mut d1, "SHOW PROCESSLIST").await;
        let (p, d) = (row_of(&prows, pid), row_of(&drows, did));
        if p[4].as_deref() == Some("Query") && d[4].as_deref() == Some("Query") {
            assert_eq!(p[7], d[7], "truncated Info");
            assert_eq!(p[7].as_deref().map(|s| s.chars().count()), Some(100));
            let (_, full) = table(&mut p1, "SHOW FULL PROCESSLIST").await;
            assert_eq!(row_of(&full, pid)[7].as_deref(), Some(long.as_str()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the statement never showed: {p:?} {d:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let p2 = tp.await.expect("proxied task");
    let d2 = td.await.expect("direct task");

    // A prepared statement executing: Command `Execute`, Info its text.
    let prepared = "SELECT SLEEP(?), 'prepared'";
    let exec = |mut c: Conn| {
        tokio::spawn(async move {
            c.exec_drop(prepared, (2,))
                .await
                .expect("the prepared statement");
            c
        })
    };
    let (tp, td) = (exec(p2), exec(d2));
    let deadline = Instant::now() + SETTLE;
    loop {
        let (_, prows) = table(&mut p1, "SHOW PROCESSLIST").await;
        let (_, drows) = table(&mut d1, "SHOW PROCESSLIST").await;
        let (p, d) = (row_of(&prows, pid), row_of(&drows, did));
        if p[4].as_deref() == Some("Execute") && d[4].as_deref() == Some("Execute") {
            assert_eq!(p[7], d[7], "Info of an executing prepared statement");
            assert_eq!(p[7].as_deref(), Some(prepared));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the execute never showed: {p:?} {d:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let _ = tp.await;
    let _ = td.await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_schema_processlist_lists_the_client_sessions() {
    let env = Env::start(0).await;
    users(&env).await;
    let mut p1 = proxied(&env, "alice").await;
    let p2 = proxied(&env, "alice").await;
    let mut d1 = direct(&env, "alice").await;

    // The server's column list, names and order.
    let all = "SELECT * FROM information_schema.PROCESSLIST";
    let (pcols, prows) = table(&mut p1, all).await;
    let (dcols, _) = table(&mut d1, all).await;
    let names = |c: &[Col]| c.iter().map(|c| c.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&pcols), names(&dcols));
    assert_eq!(ids(&prows), BTreeSet::from([p1.id(), p2.id()]));
    assert_eq!(
        pcols[0].1,
        ColumnType::MYSQL_TYPE_LONGLONG,
        "ID is a BIGINT"
    );

    // The server evaluates WHERE, ORDER BY and the select list; an alias,
    // backquotes and any case work.
    let sql = format!(
        "select p.id, p.user, p.command, p.info, p.state from `INFORMATION_SCHEMA`.`processlist` AS p \
         where p.ID in ({}, {}) order by p.ID desc",
        p1.id(),
        p2.id()
    );
    let (_, rows) = table(&mut p1, &sql).await;
    let rows: Vec<_> = rows.iter().map(cells).collect();
    let (first, second) = if p1.id() > p2.id() {
        (p1.id(), p2.id())
    } else {
        (p2.id(), p1.id())
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0].as_deref(), Some(first.to_string().as_str()));
    assert_eq!(rows[1][0].as_deref(), Some(second.to_string().as_str()));
    let mine = rows
        .iter()
        .find(|r| r[0] == Some(p1.id().to_string()))
        .unwrap();
    assert_eq!(mine[1].as_deref(), Some("alice"));
    assert_eq!(mine[2].as_deref(), Some("Query"));
    assert_eq!(
        mine[3].as_deref(),
        Some(sql.as_str()),
        "INFO is the statement as sent"
    );
    let direct_state: Option<String> = d1
        .query_first(format!(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = {}",
            d1.id()
        ))
        .await
        .unwrap();
    assert_eq!(mine[4], direct_state, "the asking session's STATE");
    let idle = rows
        .iter()
        .find(|r| r[0] == Some(p2.id().to_string()))
        .unwrap();
    assert_eq!(
        (idle[2].as_deref(), idle[3].as_deref(), idle[4].as_deref()),
        (Some("Sleep"), None, Some(""))
    );

    // A literal id; INFO_BINARY holds the statement's bytes exactly.
    let sql = format!(
        "SELECT INFO_BINARY FROM information_schema.PROCESSLIST WHERE ID = {} AND 'é€\\'' <> ''",
        p1.id()
    );
    let got: Option<Vec<u8>> = p1.query_first(&sql).await.unwrap();
    assert_eq!(got.as_deref(), Some(sql.as_bytes()));
    let none: Option<u32> = p1
        .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = 0")
        .await
        .unwrap();
    assert_eq!(none, Some(0));

    // Strings holding the words are data, not the table.
    let s: Option<String> = p1
        .query_first("SELECT 'FROM information_schema.PROCESSLIST'")
        .await
        .unwrap();
    assert_eq!(s.as_deref(), Some("FROM information_schema.PROCESSLIST"));

    // In information_schema, the bare name; inside a transaction.
    p1.query_drop("USE information_schema").await.unwrap();
    let n: Option<u32> = p1
        .query_first(format!(
            "SELECT COUNT(*) FROM PROCESSLIST WHERE ID = {}",
            p2.id()
        ))
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    p1.query_drop("USE app").await.unwrap();
    p1.query_drop("BEGIN").await.unwrap();
    let n: Option<u32> = p1
        .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST")
        .await
        .unwrap();
    assert_eq!(n, Some(2));
    p1.query_drop("COMMIT").await.unwrap();
    drop(p2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_only_its_own_sessions() {
    let env = Env::start(0).await;
    users(&env).await;
    let mut a1 = proxied(&env, "alice").await;
    let a2 = proxied(&env, "alice").await;
    let mut b1 = proxied(&env, "bob").await;
    let alice = BTreeSet::from([a1.id(), a2.id()]);
    let bob = BTreeSet::from([b1.id()]);
    for sql in [
        "SHOW PROCESSLIST",
        "SHOW FULL PROCESSLIST",
        "SELECT ID FROM information_schema.PROCESSLIST",
        "SHOW CAUSEWAY PROCESSLIST",
    ] {
        assert_eq!(ids(&table(&mut a1, sql).await.1), alice, "alice: {sql}");
        assert_eq!(ids(&table(&mut b1, sql).await.1), bob, "bob: {sql}");
    }
    drop(a2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_sees_every_session_and_connection_id_finds_ones_own() {
    let env = Env::start(1).await;
    users(&env).await;
    // Created after Causeway loaded the accounts: its first login (an
    // unknown user) reloads them, privileges included.
    env.primary_sql(
        "CREATE USER 'carol'@'%' IDENTIFIED BY 'carol-pw'; GRANT SELECT ON app.* TO 'carol'@'%'; \
         GRANT PROCESS ON *.* TO 'carol'@'%';",
    )
    .await;
    let mut a = proxied(&env, "alice").await;
    let b = proxied(&env, "bob").await;
    let mut c = proxied(&env, "carol").await;
    let all = BTreeSet::from([a.id(), b.id(), c.id()]);
    for sql in [
        "SHOW PROCESSLIST",
        "SELECT ID FROM information_schema.PROCESSLIST",
        "SHOW CAUSEWAY PROCESSLIST",
    ] {
        assert_eq!(
            ids(&table(&mut c, sql).await.1),
            all,
            "carol (PROCESS): {sql}"
        );
    }
    // The session's own row, by the id a connector knows it by, on every
    // repetition (plain reads go to the replica; this one is rewritten
    // and runs on the primary, where CONNECTION_ID() is not the session's
    // without Causeway's rewrite).
    for _ in 0..5 {
        for (conn, user) in [(&mut a, "alice"), (&mut c, "carol")] {
            let sql =
                "SELECT ID, USER FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()";
            let rows = table(conn, sql).await.1;
            assert_eq!(ids(&rows), BTreeSet::from([conn.id()]), "{user}: {sql}");
            let got: Option<(u64, String)> = conn
                .query_first("SELECT ID, USER FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
                .await
                .unwrap();
            assert_eq!(got, Some((u64::from(conn.id()), user.to_string())));
        }
    }
    drop(b);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_cli_lists_client_sessions() {
    let env = Env::start(0).await;
    users(&env).await;
    let idle = proxied(&env, "alice").await;
    for sql in ["SHOW PROCESSLIST", "show full processlist"] {
        let out = env
            .cli("alice", "alice-pw", Some("app"), &["-e", sql])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        let idle_row = lines
            .iter()
            .find(|l| l.first() == Some(&idle.id().to_string().as_str()))
            .unwrap_or_else(|| panic!("the idle session in {stdout}"));
        assert_eq!(
            &idle_row[1..],
            &[
                "alice",
                idle_row[2],
                "app",
                "Sleep",
                idle_row[5],
                "",
                "NULL",
                "0.000"
            ]
        );
        let own = lines.iter().find(|l| l.get(4) == Some(&"Query")).unwrap();
        assert_eq!((own[1], own[6], own[7]), ("alice", "starting", sql));
    }
    let out = env
        .cli(
            "alice",
            "alice-pw",
            Some("app"),
            &[
                "-e",
                "SELECT USER, COMMAND FROM information_schema.PROCESSLIST ORDER BY ID",
            ],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["alice\tSleep", "alice\tQuery"]
    );
    drop(idle);
    env.stop().await;
}

/// The `name#thread` of the Backends and Backend_thread columns of
/// session `id` in SHOW CAUSEWAY PROCESSLIST.
async fn backends(c: &mut Conn, id: u32) -> (Option<String>, Option<String>) {
    let (cols, rows) = table(c, "SHOW CAUSEWAY PROCESSLIST").await;
    let at = |n: &str| {
        cols.iter()
            .position(|c| c.0 == n)
            .unwrap_or_else(|| panic!("column {n}"))
    };
    let r = row_of(&rows, id);
    (r[at("Backends")].clone(), r[at("Backend_thread")].clone())
}

fn thread(s: &Option<String>) -> u64 {
    s.as_deref()
        .and_then(|s| s.rsplit('#').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a backend thread in {s:?}"))
}

/// Thread ids of the application account's connections on the primary.
async fn app_threads(env: &Env) -> BTreeSet<u64> {
    let out = env
        .primary_sql(&format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}'",
            env.cluster.app_user
        ))
        .await;
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Defect 8: the Backends column kept an old thread after a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causeway_processlist_shows_the_new_backend_thread_after_a_reconnect() {
    let env = Env::start(0).await;
    let mut c = env.conn().await;
    let id = c.id();
    c.query_drop("SELECT 1").await.unwrap();
    // The server's columns, then the operator's.
    let (cols, _) = table(&mut c, "SHOW CAUSEWAY PROCESSLIST").await;
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "Id",
            "User",
            "Host",
            "db",
            "Command",
            "Time",
            "State",
            "Info",
            "Progress",
            "Pool",
            "Pin",
            "Backends",
            "Backend_thread"
        ]
    );
    let (held, running) = backends(&mut c, id).await;
    let old = thread(&held);
    assert_eq!(
        thread(&running),
        old,
        "Backend_thread is the connection that ran"
    );
    assert!(app_threads(&env).await.contains(&old));

    // The server ends the session's backend connection.
    env.primary_sql(&format!("KILL {old}")).await;
    let deadline = Instant::now() + SETTLE;
    while app_threads(&env).await.contains(&old) {
        assert!(
            Instant::now() < deadline,
            "connection {old} never went away"
        );
        tokio::time::sleep(POLL).await;
    }
    // The next statements reconnect (the first may report the loss).
    let deadline = Instant::now() + SETTLE;
    while c.query_drop("SELECT 1").await.is_err() {
        assert!(Instant::now() < deadline, "never reconnected");
    }
    let (held, running) = backends(&mut c, id).await;
    let new = thread(&held);
    assert_ne!(new, old, "Backends after the reconnect: {held:?}");
    assert_eq!(thread(&running), new);
    assert!(app_threads(&env).await.contains(&new));

    // COM_CHANGE_USER replaces the backend connection within one command.
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(env.cluster.app_user.clone()))
            .with_pass(Some(env.cluster.app_password.clone()))
            .with_db_name(Some("app".into())),
    )
    .await
    .unwrap();
    let (held, _) = backends(&mut c, id).await;
    let after = thread(&held);
    assert_ne!(after, new, "Backends after COM_CHANGE_USER: {held:?}");
    assert!(app_threads(&env).await.contains(&after));
    env.stop().await;
}

/// The same answers when sessions share pooled backend connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transaction_pool_lists_client_sessions_too() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 2\n")
    })
    .await;
    users(&env).await;
    let mut a1 = proxied(&env, "alice").await;
    let a2 = proxied(&env, "alice").await;
    let mine = BTreeSet::from([a1.id(), a2.id()]);
    for _ in 0..3 {
        let (_, rows) = table(&mut a1, "SHOW FULL PROCESSLIST").await;
        assert_eq!(ids(&rows), mine);
        assert_eq!(
            row_of(&rows, a1.id())[7].as_deref(),
            Some("SHOW FULL PROCESSLIST")
        );
        let sql = format!(
            "SELECT COMMAND, INFO FROM information_schema.PROCESSLIST WHERE ID = {}",
            a1.id()
        );
        let got: Option<(String, String)> = a1.query_first(&sql).await.unwrap();
        assert_eq!(got, Some(("Query".to_string(), sql.clone())));
    }
    let (_, rows) = table(&mut a1, "SHOW CAUSEWAY PROCESSLIST").await;
    let cols = row_of(&rows, a2.id());
    assert_eq!(cols[9].as_deref(), Some("transaction"), "Pool: {cols:?}");
    drop(a2);
    env.stop().await;
}
