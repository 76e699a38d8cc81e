//! The transaction-level pool on a real cluster: a client session holds no
//! backend connection between transactions; each statement or transaction
//! borrows one (shared with the user's other sessions), brought to the
//! session's own state first, and gives it back.
//!
//! - sharing: a session never sees another's state, and keeps its own
//!   across a killed backend connection;
//! - pins: what cannot move (transactions, temporary tables, LOCK TABLES,
//!   GET_LOCK, PREPARE, FOUND_ROWS, cursors, long data) keeps the session on
//!   its connection until released, visibly in SHOW CAUSEWAY PROCESSLIST;
//! - replay instead of pins: binary prepared statements, LAST_INSERT_ID(),
//!   ROW_COUNT() and user variables behave as on a direct connection;
//! - scale and limits: hundreds of clients over four connections per
//!   backend; a full pool queues, hands over, then times out with ERR 9001.
//!
//! Tests here run one at a time (`SERIAL`): the metrics recorder is
//! process-wide, and the queue timings need the cores to themselves.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway::protocol::buf::Reader;
use causeway::protocol::consts::status;
use causeway::protocol::response::terminator_status;
use common::raw::{err_of, Raw};
use common::Env;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};
use tokio::time::timeout;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// No single reply may take longer than this.
const REPLY: Duration = Duration::from_secs(10);
/// How long processlist and metric conditions are polled for.
const SETTLE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

const PINS: &str = "causeway_pins_total";
const TXN_CONNECTIONS: &str = "causeway_txn_pool_connections";
const TIMEOUTS: &str = "causeway_txn_pool_timeouts_total";

/// `[pool]` with the transaction pool on for everyone.
fn txn_pool(max_per_backend: usize, queue_timeout_ms: u64) -> String {
    format!(
        "\n[pool]\ntransaction_pool = true\n\
         transaction_pool_max_per_backend = {max_per_backend}\n\
         transaction_pool_queue_timeout_ms = {queue_timeout_ms}\n\
         transaction_pool_idle_ms = 60000\n"
    )
}

// ------------------------------------------------------------ connections

/// The thread id (`@@pseudo_thread_id`; `CONNECTION_ID()` is the
/// session's own id) of the primary connection that served the statement.
async fn backend_id(c: &mut Conn) -> u64 {
    c.query_first("/*FORCE_MASTER*/ SELECT @@pseudo_thread_id")
        .await
        .expect("SELECT @@pseudo_thread_id")
        .expect("one row")
}

/// Kills a backend connection on the primary and waits until it is gone.
async fn kill_backend(env: &Env, id: u64) {
    env.primary_sql(&format!("KILL {id}")).await;
    let deadline = Instant::now() + SETTLE;
    let gone = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}");
    while env.primary_sql(&gone).await.trim() != "0" {
        assert!(Instant::now() < deadline, "connection {id} never went away");
        tokio::time::sleep(POLL).await;
    }
}

/// Ids of the application account's connections on `server`.
async fn app_connections(env: &Env, server: &causeway::playground::Server) -> Vec<u64> {
    let sql = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}' ORDER BY ID",
        env.cluster.app_user
    );
    let out = env
        .cluster
        .root_sql(server, &sql)
        .await
        .expect("root SQL for the processlist");
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn server_error(e: &mysql_async::Error) -> Option<(u16, &str, &str)> {
    match e {
        mysql_async::Error::Server(s) => Some((s.code, s.state.as_str(), s.message.as_str())),
        _ => None,
    }
}

/// Runs `sql`, which must fail with server error `code`.
async fn fails_with(c: &mut Conn, sql: &str, code: u16) {
    let e = c
        .query_drop(sql)
        .await
        .expect_err(&format!("{sql} must fail with {code}"));
    assert_eq!(server_error(&e).map(|s| s.0), Some(code), "{sql}: {e}");
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => Some(other.as_sql(true)),
    }
}

// ------------------------------------------------------------ observation

/// Sum of the samples of metric `name` whose labels contain `label`.
async fn metric(env: &Env, name: &str, label: &str) -> f64 {
    let body = common::http_get(env.admin, "/metrics").await;
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn pins(env: &Env, reason: &str) -> f64 {
    metric(env, PINS, &format!("reason=\"{reason}\"")).await
}

/// Waits until `causeway_pins_total{reason}` is above `before`.
async fn pins_grew(env: &Env, reason: &str, before: f64) {
    let deadline = Instant::now() + SETTLE;
    while pins(env, reason).await <= before {
        assert!(
            Instant::now() < deadline,
            "{PINS}{{reason=\"{reason}\"}} stayed at {before}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One session's row of SHOW CAUSEWAY PROCESSLIST.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    user: Option<String>,
    pool: Option<String>,
    pin: Option<String>,
    backends: Option<String>,
}

impl Session {
    /// The connection id in `Backends` (e.g. `primary#1234`).
    fn backend(&self) -> u64 {
        self.backends
            .as_deref()
            .and_then(|b| b.split('#').nth(1))
            .map(|n| {
                n.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a backend connection in Backends: {self:?}"))
    }
}

async fn session(o: &mut Conn, id: u32) -> Option<Session> {
    let rows: Vec<Row> = o
        .query("SHOW CAUSEWAY PROCESSLIST")
        .await
        .expect("SHOW CAUSEWAY PROCESSLIST");
    let id = id.to_string();
    rows.into_iter().find_map(|r| {
        let col = |n: &str| -> Option<String> {
            r.get::<Option<String>, _>(n)
                .unwrap_or_else(|| panic!("column {n} in SHOW CAUSEWAY PROCESSLIST"))
        };
        (col("Id").as_deref() == Some(id.as_str())).then(|| Session {
            user: col("User"),
            pool: col("Pool"),
            pin: col("Pin"),
            backends: col("Backends"),
        })
    })
}

/// Polls `o`'s processlist until session `id` has pin `pin` (and, when
/// unpinned, holds no backend connection).
async fn wait_pin(o: &mut Conn, id: u32, pin: Option<&str>) -> Session {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = session(o, id)
            .await
            .unwrap_or_else(|| panic!("session {id} in SHOW CAUSEWAY PROCESSLIST"));
        if s.pin.as_deref() == pin && (pin.is_some() || s.backends.is_none()) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "session {id}: want Pin {pin:?}, processlist says {s:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Session `a` is pinned for `reason` to one primary connection, which `b`
/// never gets while it runs statements meanwhile, and the pin was counted.
/// Returns that connection's id.
async fn pinned(env: &Env, o: &mut Conn, a: u32, b: &mut Conn, reason: &str, before: f64) -> u64 {
    let s = wait_pin(o, a, Some(reason)).await;
    assert_eq!(s.pool.as_deref(), Some("transaction"), "{s:?}");
    assert_eq!(s.user.as_deref(), Some(env.cluster.app_user.as_str()));
    let held = s.backend();
    for _ in 0..3 {
        assert_ne!(
            backend_id(b).await,
            held,
            "B was given the connection A is pinned to ({reason})"
        );
    }
    let again = session(o, a).await.expect("A still listed");
    assert_eq!(
        again, s,
        "A stays on its connection while B runs ({reason})"
    );
    pins_grew(env, reason, before).await;
    held
}

// ------------------------------------------------------------ 1. isolation

/// Everything a session can set, in one row.
const STATE: &str = "SELECT DATABASE(), @@time_zone, @@sql_mode, @@character_set_client, \
     @@character_set_results, @@collation_connection, @@div_precision_increment, @uv, \
     @@tx_isolation, @@autocommit";

async fn state(c: &mut Conn) -> Vec<Option<String>> {
    let row: Row = c
        .query_first(STATE)
        .await
        .expect("state read")
        .expect("one row");
    row.unwrap().into_iter().map(text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_a_backend_connection_see_only_their_own_state() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with(0, |t| t.push_str(&txn_pool(1, 5000))).await;
    let mut fresh = env.direct_primary().await;
    let defaults = state(&mut fresh).await;
    fresh.disconnect().await.unwrap();
    assert_eq!(defaults[0].as_deref(), Some("app"));
    assert_eq!(defaults[1].as_deref(), Some("SYSTEM"));
    assert_eq!(defaults[8].as_deref(), Some("REPEATABLE-READ"));
    assert_eq!(defaults[9].as_deref(), Some("1"));

    let mut a = env.conn().await;
    let mut b = env.conn().await;
    let shared = backend_id(&mut a).await;
    for sql in [
        "USE sbtest",
        "SET time_zone = '+03:00'",
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET NAMES latin1",
        "SET SESSION div_precision_increment = 7",
        "SET @uv = 7",
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "SET autocommit = 0",
    ] {
        a.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(
        backend_id(&mut b).await,
        shared,
        "one connection per backend: B borrows the one A used"
    );
    assert_eq!(state(&mut b).await, defaults, "B sees none of A's state");

    let mine: Vec<Option<String>> = [
        "sbtest",
        "+03:00",
        "ANSI_QUOTES",
        "latin1",
        "latin1",
        "latin1_swedish_ci",
        "7",
        "7",
        "READ-COMMITTED",
        "0",
    ]
    .iter()
    .map(|s| Some(s.to_string()))
    .collect();
    assert_eq!(state(&mut a).await, mine, "A keeps all of its state");
    assert_eq!(backend_id(&mut a).await, shared, "A is back on it");
    // autocommit=0: A's reads opened a transaction.
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(state(&mut b).await, defaults, "B still sees defaults");

    // The backend connection dies between A's statements: nobody notices.
    kill_backend(&env, shared).await;
    let after = timeout(REPLY, state(&mut a))
        .await
        .expect("A answered after the kill");
    assert_eq!(after, mine, "A's state moved to a new backend connection");
    let moved = backend_id(&mut a).await;
    assert_ne!(moved, shared, "the killed connection is not used again");
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(state(&mut b).await, defaults);
    assert_eq!(backend_id(&mut b).await, moved, "B shares the new one");
    drop((a, b));
    env.stop().await;
}

// ------------------------------------------------------------ 2. pins

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pin_pins_and_unpins() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with(0, |t| t.push_str(&txn_pool(2, 5000))).await;
    let mut setup = env.conn().await;
    for sql in [
        "CREATE TABLE pin_t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO pin_t SELECT seq, seq * 10 FROM seq_1_to_5",
        "CREATE TABLE pin_other (id INT)",
    ] {
        setup.query_drop(sql).await.unwrap();
    }
    drop(setup);
    let mut a = env.conn().await;
    let mut b = env.conn().await;
    let mut o = env.conn().await;
    let aid = a.id();
    let s = wait_pin(&mut o, aid, None).await;
    assert_eq!(s.pool.as_deref(), Some("transaction"), "{s:?}");

    // temporary_table
    let before = pins(&env, "temporary_table").await;
    a.query_drop("CREATE TEMPORARY TABLE tmp_pin (x INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO tmp_pin VALUES (1), (2)")
        .await
        .unwrap();
    let held = pinned(&env, &mut o, aid, &mut b, "temporary_table", before).await;
    fails_with(&mut b, "SELECT COUNT(*) FROM tmp_pin", 1146).await;
    let got: Option<(i64, u64)> = a
        .query_first("SELECT COUNT(*), @@pseudo_thread_id FROM tmp_pin")
        .await
        .unwrap();
    assert_eq!(got, Some((2, held)));
    a.query_drop("DROP TEMPORARY TABLE tmp_pin").await.unwrap();
    wait_pin(&mut o, aid, None).await;

    // lock_tables
    let before = pins(&env, "lock_tables").await;
    a.query_drop("LOCK TABLES pin_t READ").await.unwrap();
    let held = pinned(&env, &mut o, aid, &mut b, "lock_tables", before).await;
    let n: Option<i64> = b.query_first("SELECT COUNT(*) FROM pin_t").await.unwrap();
    assert_eq!(n, Some(5), "a READ lock lets B read");
    // Only the locking connection refuses tables it did not lock.
    fails_with(&mut a, "SELECT COUNT(*) FROM pin_other", 1100).await;
    assert_eq!(backend_id(&mut a).await, held);
    a.query_drop("UNLOCK TABLES").await.unwrap();
    wait_pin(&mut o, aid, None).await;
    a.query_drop("SELECT COUNT(*) FROM pin_other")
        .await
        .unwrap();

    // user_lock, released by RELEASE_LOCK, then by RELEASE_ALL_LOCKS
    let before = pins(&env, "user_lock").await;
    let got: Option<i64> = a
        .query_first("SELECT GET_LOCK('causeway_pin', 5)")
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    let held = pinned(&env, &mut o, aid, &mut b, "user_lock", before).await;
    let owner: Option<Option<u64>> = b
        .query_first("SELECT IS_USED_LOCK('causeway_pin')")
        .await
        .unwrap();
    assert_eq!(
        owner,
        Some(Some(held)),
        "the lock is held by A's connection"
    );
    assert_eq!(backend_id(&mut a).await, held);
    let got: Option<i64> = a
        .query_first("SELECT RELEASE_LOCK('causeway_pin')")
        .await
        .unwrap();
    assert_eq!(got, Some(1), "A releases it on the same connection");
    wait_pin(&mut o, aid, None).await;
    let before = pins(&env, "user_lock").await;
    a.query_drop("SELECT GET_LOCK('causeway_pin', 5), GET_LOCK('causeway_pin2', 5)")
        .await
        .unwrap();
    pinned(&env, &mut o, aid, &mut b, "user_lock", before).await;
    let got: Option<i64> = a.query_first("SELECT RELEASE_ALL_LOCKS()").await.unwrap();
    assert_eq!(got, Some(2));
    wait_pin(&mut o, aid, None).await;
    let owner: Option<Option<u64>> = b
        .query_first("SELECT IS_USED_LOCK('causeway_pin')")
        .await
        .unwrap();
    assert_eq!(owner, Some(None), "no lock left behind");

    // text_prepare
    let before = pins(&env, "text_prepare").await;
    a.query_drop("PREPARE pin_s FROM 'SELECT ? + 1, @@pseudo_thread_id'")
        .await
        .unwrap();
    let held = pinned(&env, &mut o, aid, &mut b, "text_prepare", before).await;
    fails_with(&mut b, "EXECUTE pin_s USING 1", 1243).await;
    let got: Option<(i64, u64)> = a.query_first("EXECUTE pin_s USING 41").await.unwrap();
    assert_eq!(got, Some((42, held)));
    a.query_drop("DEALLOCATE PREPARE pin_s").await.unwrap();
    wait_pin(&mut o, aid, None).await;

    // handler: an open HANDLER lives in one server connection
    let before = pins(&env, "handler").await;
    a.query_drop("HANDLER pin_t OPEN AS h").await.unwrap();
    pinned(&env, &mut o, aid, &mut b, "handler", before).await;
    fails_with(&mut b, "HANDLER h READ FIRST", 1109).await;
    let first: Option<(i64, i64)> = a
        .query_first("HANDLER h READ `PRIMARY` FIRST")
        .await
        .unwrap();
    assert_eq!(first, Some((1, 10)), "A reads through its own handler");
    a.query_drop("HANDLER h CLOSE").await.unwrap();
    wait_pin(&mut o, aid, None).await;

    // found_rows: pinned until the session's next statement
    let before = pins(&env, "found_rows").await;
    let ids: Vec<i64> = a
        .query("SELECT SQL_CALC_FOUND_ROWS id FROM pin_t ORDER BY id LIMIT 2")
        .await
        .unwrap();
    assert_eq!(ids, [1, 2]);
    let held = pinned(&env, &mut o, aid, &mut b, "found_rows", before).await;
    let n: Option<i64> = b
        .query_first("SELECT COUNT(*) FROM pin_t WHERE id < 3")
        .await
        .unwrap();
    assert_eq!(n, Some(2));
    let got: Option<(i64, u64)> = a
        .query_first("SELECT FOUND_ROWS(), @@pseudo_thread_id")
        .await
        .unwrap();
    assert_eq!(got, Some((5, held)), "FOUND_ROWS() of A's own SELECT");
    wait_pin(&mut o, aid, None).await;

    // transaction
    let before = pins(&env, "transaction").await;
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO pin_t VALUES (100, 1000)")
        .await
        .unwrap();
    let held = pinned(&env, &mut o, aid, &mut b, "transaction", before).await;
    let n: Option<i64> = b.query_first("SELECT COUNT(*) FROM pin_t").await.unwrap();
    assert_eq!(n, Some(5), "B does not see A's uncommitted row");
    let got: Option<(i64, u64)> = a
        .query_first("SELECT COUNT(*), @@pseudo_thread_id FROM pin_t")
        .await
        .unwrap();
    assert_eq!(
        got,
        Some((6, held)),
        "A sees its own row, on its connection"
    );
    a.query_drop("COMMIT").await.unwrap();
    wait_pin(&mut o, aid, None).await;
    let n: Option<i64> = b.query_first("SELECT COUNT(*) FROM pin_t").await.unwrap();
    assert_eq!(n, Some(6), "committed");

    cursor_and_long_data_pins(&env, &mut o, &mut b).await;
    drop((a, b, o));
    env.stop().await;
}

async fn pkt(raw: &mut Raw) -> Bytes {
    timeout(REPLY, raw.s.read_packet())
        .await
        .expect("Causeway answers in time")
        .expect("a packet from Causeway")
        .1
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xFE) && p.len() < 9
}

fn no_err(p: &[u8], what: &str) {
    assert_ne!(p.first(), Some(&0xFF), "{what}: {:?}", err_of(p));
}

/// COM_STMT_PREPARE (the raw client has no DEPRECATE_EOF); returns the id.
async fn prepare(raw: &mut Raw, sql: &str, columns: u16, params: u16) -> u32 {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    raw.command(&p).await;
    let ok = pkt(raw).await;
    assert_eq!(ok.first(), Some(&0x00), "prepare {sql}: {:?}", err_of(&ok));
    let mut r = Reader::new(&ok[1..]);
    let id = r.u32().expect("statement id");
    assert_eq!((r.u16(), r.u16()), (Some(columns), Some(params)), "{sql}");
    for n in [params, columns] {
        for _ in 0..n {
            no_err(&pkt(raw).await, "definition");
        }
        if n > 0 {
            assert!(is_eof(&pkt(raw).await), "EOF after definitions");
        }
    }
    id
}

/// Reads a binary result set's metadata (one column): the EOF status.
async fn metadata(raw: &mut Raw, what: &str) -> u16 {
    let p = pkt(raw).await;
    no_err(&p, what);
    assert_eq!(Reader::new(&p).lenenc_int(), Some(1), "{what}: one column");
    no_err(&pkt(raw).await, what);
    let eof = pkt(raw).await;
    assert!(is_eof(&eof), "{what}: EOF after metadata, got {eof:02x?}");
    terminator_status(&eof, 0).expect("EOF status")
}

/// Binary rows up to the EOF, and the EOF's status.
async fn rows(raw: &mut Raw) -> (Vec<Bytes>, u16) {
    let mut v = Vec::new();
    loop {
        let p = pkt(raw).await;
        no_err(&p, "row");
        if is_eof(&p) {
            return (v, terminator_status(&p, 0).expect("EOF status"));
        }
        v.push(p);
    }
}

async fn open_cursor(raw: &mut Raw, stmt: u32) {
    let mut ex = vec![0x17];
    ex.extend_from_slice(&stmt.to_le_bytes());
    ex.push(0x01); // CURSOR_TYPE_READ_ONLY
    ex.extend_from_slice(&1u32.to_le_bytes());
    raw.command(&ex).await;
    let st = metadata(raw, "execute with a cursor").await;
    assert!(st & status::CURSOR_EXISTS != 0, "cursor open: {st:#x}");
}

/// COM_STMT_FETCH: the `seq` values (BIGINT UNSIGNED) and the EOF status.
async fn fetch(raw: &mut Raw, stmt: u32, n: u32) -> (Vec<u64>, u16) {
    let mut f = vec![0x1c];
    f.extend_from_slice(&stmt.to_le_bytes());
    f.extend_from_slice(&n.to_le_bytes());
    raw.command(&f).await;
    let (rows, st) = rows(raw).await;
    let seq = rows
        .iter()
        .map(|r| u64::from_le_bytes(r[2..10].try_into().expect("an 8-byte BIGINT")))
        .collect();
    (seq, st)
}

async fn ping(raw: &mut Raw) {
    raw.command(&[0x0e]).await;
    assert_eq!(pkt(raw).await.first(), Some(&0x00), "ping OK: in sync");
}

/// The two pins only the binary protocol can take, with the raw client.
async fn cursor_and_long_data_pins(env: &Env, o: &mut Conn, b: &mut Conn) {
    let (user, pw) = (&env.cluster.app_user, &env.cluster.app_password);
    let mut raw = Raw::login(env.proxy, user, pw, Some("app"), 0).await;
    let rid = raw.greeting.connection_id;
    let stmt = prepare(&mut raw, "SELECT seq FROM seq_1_to_100", 1, 0).await;
    wait_pin(o, rid, None).await;

    // cursor: until fetched to the end ...
    let before = pins(env, "cursor").await;
    open_cursor(&mut raw, stmt).await;
    pinned(env, o, rid, b, "cursor", before).await;
    let s = session(o, rid).await.expect("raw session listed");
    let (first, st) = fetch(&mut raw, stmt, 60).await;
    assert_eq!(first, (1..=60).collect::<Vec<u64>>());
    assert!(st & status::CURSOR_EXISTS != 0, "more to fetch: {st:#x}");
    assert_eq!(
        session(o, rid).await,
        Some(s),
        "still pinned, same connection"
    );
    let (rest, st) = fetch(&mut raw, stmt, 100).await;
    assert_eq!(rest, (61..=100).collect::<Vec<u64>>());
    assert!(
        st & status::LAST_ROW_SENT != 0,
        "fetched to the end: {st:#x}"
    );
    wait_pin(o, rid, None).await;
    // ... or COM_STMT_RESET (OK reply) ...
    open_cursor(&mut raw, stmt).await;
    wait_pin(o, rid, Some("cursor")).await;
    let mut reset = vec![0x1a];
    reset.extend_from_slice(&stmt.to_le_bytes());
    raw.command(&reset).await;
    assert_eq!(pkt(&mut raw).await.first(), Some(&0x00), "reset OK");
    wait_pin(o, rid, None).await;
    // ... or COM_STMT_CLOSE (no reply).
    open_cursor(&mut raw, stmt).await;
    wait_pin(o, rid, Some("cursor")).await;
    let mut close = vec![0x19];
    close.extend_from_slice(&stmt.to_le_bytes());
    raw.command(&close).await;
    wait_pin(o, rid, None).await;
    ping(&mut raw).await;

    // long_data: from COM_STMT_SEND_LONG_DATA (no reply) to the execute.
    let stmt = prepare(&mut raw, "SELECT ?", 1, 1).await;
    let before = pins(env, "long_data").await;
    let chunks = ["long data, part one; ".repeat(100), "part two.".repeat(50)];
    for chunk in &chunks {
        let mut p = vec![0x18];
        p.extend_from_slice(&stmt.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(chunk.as_bytes());
        raw.command(&p).await;
    }
    pinned(env, o, rid, b, "long_data", before).await;
    let mut ex = vec![0x17];
    ex.extend_from_slice(&stmt.to_le_bytes());
    ex.push(0x00);
    ex.extend_from_slice(&1u32.to_le_bytes());
    ex.push(0x00); // NULL bitmap
    ex.push(0x01); // new parameters bound
    ex.extend_from_slice(&[0xfc, 0x00]); // MYSQL_TYPE_BLOB, its value sent as long data
    raw.command(&ex).await;
    metadata(&mut raw, "execute with long data").await;
    let (got, _) = rows(&mut raw).await;
    assert_eq!(got.len(), 1, "one row");
    let value = Reader::new(&got[0][2..])
        .lenenc_bytes()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(
        value,
        Some(chunks.concat()),
        "the execute saw the long data"
    );
    wait_pin(o, rid, None).await;
    ping(&mut raw).await;
}

// ------------------------------------------------------------ 3. replay

/// One statement of the script, run through the pool and directly.
struct Step {
    name: &'static str,
    /// `{t}` is the session's own table.
    sql: &'static str,
    /// Binary protocol (COM_STMT_EXECUTE) when set.
    params: Option<Vec<Value>>,
}

fn q(name: &'static str, sql: &'static str) -> Step {
    Step {
        name,
        sql,
        params: None,
    }
}

fn x(name: &'static str, sql: &'static str, params: Vec<Value>) -> Step {
    Step {
        name,
        sql,
        params: Some(params),
    }
}

const BY_ID: &str = "SELECT v, n FROM {t} WHERE id = ?";

fn script() -> Vec<Step> {
    vec![
        q(
            "insert3",
            "INSERT INTO {t} (v, n) VALUES ('one', 1), ('two', 2), ('three', 3)",
        ),
        q("lid1", "SELECT LAST_INSERT_ID()"),
        x("exec2", BY_ID, vec![2.into()]),
        x("exec3", BY_ID, vec![3.into()]),
        x(
            "insert_ps",
            "INSERT INTO {t} (v, n) VALUES (?, ?)",
            vec!["four".into(), 4.into()],
        ),
        q("lid4", "SELECT LAST_INSERT_ID()"),
        q("update3", "UPDATE {t} SET n = n + 10 WHERE id <= 3"),
        q("rc3", "SELECT ROW_COUNT()"),
        q(
            "insert2",
            "INSERT INTO {t} (v, n) VALUES ('five', 5), ('six', 6)",
        ),
        q("rc2_lid5", "SELECT ROW_COUNT(), LAST_INSERT_ID()"),
        q("set_x", "SET @x = (SELECT COUNT(*) FROM {t})"),
        q("into_y", "SELECT v INTO @y FROM {t} WHERE id = 1"),
        q("assign_z", "SELECT @z := 'text'"),
        q("assign_w", "SELECT @w := n FROM {t} WHERE id = 2"),
        q("set_d", "SET @d = (SELECT AVG(n) FROM {t})"),
        q(
            "update_plus",
            "UPDATE {t} SET v = CONCAT(v, '+') WHERE id <= 3",
        ),
        // The shared backend connection was killed just before these.
        q("rc_after_kill", "SELECT ROW_COUNT()"),
        q("lid_after_kill", "SELECT LAST_INSERT_ID()"),
        x("exec_after_kill", BY_ID, vec![1.into()]),
        q(
            "vars_math",
            "SELECT @x + 1, CONCAT(@y, '!'), @z, @w * 2, @d / 2",
        ),
        q("vars", "SELECT @x, @y, @z, @w, @d"),
    ]
}

/// What a step returned: column types and values, or the OK's counts.
#[derive(Debug, PartialEq)]
struct Outcome {
    types: Vec<ColumnType>,
    rows: Vec<Vec<Value>>,
    affected: Option<u64>,
    insert_id: Option<u64>,
}

async fn run_step(c: &mut Conn, s: &Step, table: &str) -> Outcome {
    let sql = s.sql.replace("{t}", table);
    let rows: Vec<Row> = match &s.params {
        None => c.query(&sql).await,
        Some(p) => c.exec(&sql, Params::Positional(p.clone())).await,
    }
    .unwrap_or_else(|e| panic!("{}: {sql}: {e}", s.name));
    let types = rows
        .first()
        .map(|r| r.columns_ref().iter().map(|c| c.column_type()).collect())
        .unwrap_or_default();
    let (affected, insert_id) = if rows.is_empty() {
        (Some(c.affected_rows()), c.last_insert_id())
    } else {
        (None, None)
    };
    Outcome {
        types,
        rows: rows.into_iter().map(Row::unwrap).collect(),
        affected,
        insert_id,
    }
}

async fn vars_are_null(b: &mut Conn, after: &str) {
    let row: Row = b
        .query_first("SELECT @x, @y, @z, @w, @d")
        .await
        .unwrap()
        .unwrap();
    assert!(
        row.unwrap().iter().all(|v| *v == Value::NULL),
        "B sees none of A's user variables (after {after})"
    );
}

/// What B does on the shared connection after A's step `after`.
async fn between(env: &Env, b: &mut Conn, after: &str) {
    match after {
        "insert3" => {
            b.query_drop("INSERT INTO ps_b (v, n) VALUES ('b', 0)")
                .await
                .unwrap();
            let lid: Option<u64> = b.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
            assert_eq!(lid, Some(1000), "B gets its own LAST_INSERT_ID()");
        }
        "exec2" => {
            let n: Option<i64> = b
                .exec_first("SELECT COUNT(*) FROM ps_b WHERE id >= ?", (1000,))
                .await
                .unwrap();
            assert_eq!(n, Some(1));
            let v: Option<i64> = b.exec_first("SELECT ? + 1", (1,)).await.unwrap();
            assert_eq!(v, Some(2));
        }
        "insert_ps" => b
            .exec_drop("INSERT INTO ps_b (v, n) VALUES (?, ?)", ("b2", 0))
            .await
            .unwrap(),
        "update3" => {
            b.query_drop("UPDATE ps_b SET n = n + 1").await.unwrap();
            let rc: Option<i64> = b.query_first("SELECT ROW_COUNT()").await.unwrap();
            assert_eq!(rc, Some(2), "B gets its own ROW_COUNT()");
        }
        "insert2" => b.query_drop("SELECT 1").await.unwrap(),
        "set_x" | "into_y" | "assign_z" | "assign_w" | "set_d" | "vars" => {
            vars_are_null(b, after).await
        }
        "update_plus" => {
            let shared = backend_id(b).await;
            assert_eq!(
                app_connections(env, &env.cluster.primary).await,
                [shared],
                "A and B share the only backend connection"
            );
            kill_backend(env, shared).await;
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_last_insert_id_row_count_and_user_variables_match_a_direct_connection()
{
    let _serial = SERIAL.lock().await;
    let env = Env::start_with(0, |t| t.push_str(&txn_pool(1, 5000))).await;
    let table = "(id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)";
    let mut setup = env.conn().await;
    setup
        .query_drop(format!("CREATE TABLE ps_a {table}"))
        .await
        .unwrap();
    setup
        .query_drop(format!("CREATE TABLE ps_b {table} AUTO_INCREMENT = 1000"))
        .await
        .unwrap();
    drop(setup);

    // The reference: the same script on a direct connection.
    let mut d = env.direct_primary().await;
    d.query_drop(format!("CREATE TABLE ps_d {table}"))
        .await
        .unwrap();
    let mut want = Vec::new();
    for s in script() {
        want.push(run_step(&mut d, &s, "ps_d").await);
    }
    drop(d);
    let by_name: HashMap<&str, &Outcome> =
        script().iter().map(|s| s.name).zip(want.iter()).collect();
    let one = |name: &str| -> Vec<Option<String>> {
        by_name[name].rows[0].iter().cloned().map(text).collect()
    };
    let s = |v: &str| Some(v.to_string());
    // The script means what it says.
    assert_eq!(one("lid1"), [s("1")]);
    assert_eq!(one("rc3"), [s("3")]);
    assert_eq!(one("rc2_lid5"), [s("2"), s("5")]);
    assert_eq!(one("rc_after_kill"), [s("3")]);
    assert_eq!(
        one("vars"),
        [s("6"), s("one"), s("text"), s("12"), s("8.500000000")]
    );

    // Through the pool, with B on the same backend connection in between.
    let mut a = env.conn().await;
    let mut b = env.conn().await;
    let mut differ = Vec::new();
    for (s, want) in script().iter().zip(&want) {
        let got = run_step(&mut a, s, "ps_a").await;
        if &got != want {
            differ.push(format!("{}: pool {got:?}, direct {want:?}", s.name));
        }
        between(&env, &mut b, s.name).await;
    }
    assert!(
        differ.is_empty(),
        "steps that differ from a direct connection:\n{}",
        differ.join("\n")
    );
    drop((a, b));
    env.stop().await;
}

// ------------------------------------------------------------ 4. scale

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_clients_over_few_backend_connections() {
    const CLIENTS: usize = 300;
    const READS: i64 = 20;
    const MAX: usize = 4;
    let _serial = SERIAL.lock().await;
    let env = Env::start_with(1, |t| t.push_str(&txn_pool(MAX, 20_000))).await;
    let mut setup = env.conn().await;
    for sql in [
        "CREATE TABLE pts (id INT PRIMARY KEY, v INT)",
        "INSERT INTO pts SELECT seq, seq * 10 FROM seq_1_to_100",
        "CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, client INT, n INT)",
    ] {
        setup.query_drop(sql).await.unwrap();
    }
    drop(setup);
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .expect("the replica has the tables");

    let done = AtomicBool::new(false);
    // Samples the app account's connections on each server meanwhile.
    let watch = async {
        let servers: Vec<_> = std::iter::once(&env.cluster.primary)
            .chain(&env.cluster.replicas)
            .collect();
        let mut most = vec![0usize; servers.len()];
        let mut samples = 0;
        while !done.load(Ordering::Relaxed) {
            for (i, server) in servers.iter().enumerate() {
                most[i] = most[i].max(app_connections(&env, server).await.len());
            }
            samples += 1;
            tokio::time::sleep(POLL).await;
        }
        (most, samples)
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let connected = Arc::new(AtomicUsize::new(0));
    // Connections are opened a few dozen at a time: the test listener's
    // accept backlog is 128, and a burst of 300 SYNs overflows it (clients
    // then hang in the kernel, before Causeway ever sees them).
    let connecting = Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..CLIENTS as i64 {
        let opts = env.opts();
        let barrier = barrier.clone();
        let connected = connected.clone();
        let connecting = connecting.clone();
        tasks.spawn(async move {
            let err = |what: &str, e: mysql_async::Error| format!("client {id} {what}: {e}");
            let permit = connecting.acquire_owned().await.expect("semaphore open");
            let mut c = Conn::new(opts).await.map_err(|e| err("connect", e))?;
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            barrier.wait().await;
            for i in 0..READS {
                let k = (id * 7 + i) % 100 + 1;
                let v: Option<i64> = c
                    .exec_first("SELECT v FROM pts WHERE id = ?", (k,))
                    .await
                    .map_err(|e| err("read", e))?;
                if v != Some(k * 10) {
                    return Err(format!("client {id}: row {k} read as {v:?}"));
                }
                if i % 7 == 3 {
                    c.exec_drop("INSERT INTO hits (client, n) VALUES (?, ?)", (id, i))
                        .await
                        .map_err(|e| err("insert", e))?;
                }
            }
            let sql = format!("/*FORCE_MASTER*/ SELECT COUNT(*) FROM hits WHERE client = {id}");
            let n: Option<i64> = c.query_first(sql).await.map_err(|e| err("count", e))?;
            if n != Some(3) {
                return Err(format!("client {id} sees {n:?} of its 3 rows"));
            }
            c.disconnect().await.map_err(|e| err("disconnect", e))
        });
    }
    let run = async {
        let mut failures = Vec::new();
        let mut finished = 0;
        let _ = timeout(Duration::from_secs(45), async {
            while let Some(r) = tasks.join_next().await {
                finished += 1;
                if let Err(e) = r.expect("client task") {
                    failures.push(e);
                }
            }
        })
        .await;
        done.store(true, Ordering::Relaxed);
        (finished, failures)
    };
    let started = Instant::now();
    let ((most, samples), (finished, failures)) = tokio::join!(watch, run);
    if finished < CLIENTS {
        let backends = env
            .primary_sql(&format!(
                "SELECT ID, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST \
                 WHERE USER = '{}'",
                env.cluster.app_user
            ))
            .await;
        panic!(
            "{} of {CLIENTS} clients still running after 45 s ({} had connected); \
             failures so far {:?}; \
             the app account's connections on the primary:\n{backends}\n{}",
            CLIENTS - finished,
            connected.load(Ordering::Relaxed),
            &failures[..failures.len().min(5)],
            stuck_report(&env).await
        );
    }
    assert!(
        failures.is_empty(),
        "{} clients failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!(
        "{CLIENTS} clients in {:?}; most app connections per server {most:?} ({samples} samples)",
        started.elapsed()
    );
    assert!(samples > 0);
    assert!(
        most.iter().all(|&n| n <= MAX),
        "at most {MAX} backend connections per server, saw {most:?}"
    );
    assert!(most[0] >= 1, "the primary served the clients: {most:?}");
    let got = env
        .primary_sql("SELECT COUNT(*), COUNT(DISTINCT client) FROM app.hits")
        .await;
    assert_eq!(got.trim(), format!("{}\t{CLIENTS}", CLIENTS * 3));

    // The pool's own gauge agrees: idle + busy per backend within the limit.
    let body = common::http_get(env.admin, "/metrics").await;
    let mut per_backend: HashMap<String, f64> = HashMap::new();
    for l in body
        .lines()
        .filter(|l| l.starts_with(&format!("{TXN_CONNECTIONS}{{")))
    {
        let backend = l
            .split("backend=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *per_backend.entry(backend.to_string()).or_default() += v;
    }
    assert!(!per_backend.is_empty(), "{TXN_CONNECTIONS} is exported");
    assert!(
        per_backend.values().all(|&n| n <= MAX as f64),
        "{TXN_CONNECTIONS}: {per_backend:?}"
    );
    env.stop().await;
}

/// What Causeway says about its sessions and pool, for a failure message.
async fn stuck_report(env: &Env) -> String {
    let sessions = timeout(Duration::from_secs(5), async {
        let mut c = Conn::new(env.opts()).await?;
        c.query::<Row, _>("SHOW CAUSEWAY PROCESSLIST").await
    })
    .await;
    let mut out = match sessions {
        Err(_) => "a new client could not connect and list sessions within 5 s\n".to_string(),
        Ok(Err(e)) => format!("SHOW CAUSEWAY PROCESSLIST: {e}\n"),
        Ok(Ok(rows)) => {
            let mut by_state: HashMap<(Option<String>, bool), usize> = HashMap::new();
            for r in &rows {
                let pin = r.get::<Option<String>, _>("Pin").flatten();
                let holds = r.get::<Option<String>, _>("Backends").flatten().is_some();
                *by_state.entry((pin, holds)).or_default() += 1;
            }
            format!(
                "{} sessions listed; (Pin, holds a backend) -> count: {by_state:?}\n",
                rows.len()
            )
        }
    };
    let body = common::http_get(env.admin, "/metrics").await;
    for l in body
        .lines()
        .filter(|l| l.contains("txn_pool") || l.contains("pinned"))
    {
        out.push_str(l);
        out.push('\n');
    }
    out
}

// ------------------------------------------------------------ 5. queue

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_then_times_out_with_a_clear_error() {
    let _serial = SERIAL.lock().await;
    // The pool is turned on for the application account only.
    let env = Env::start_with(0, |t| {
        t.push_str(
            "\n[pool]\ntransaction_pool_max_per_backend = 1\n\
             transaction_pool_queue_timeout_ms = 300\n",
        );
        t.push_str(&format!(
            "\n[users.{}]\ntransaction_pool = true\n",
            causeway::playground::APP_USER
        ));
    })
    .await;
    let mut setup = env.conn().await;
    setup
        .query_drop("CREATE TABLE q_t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    drop(setup);
    // Connected up front: mysql_async asks for settings when it connects,
    // which would queue too.
    let mut c = env.conn().await;
    let mut d = env.conn().await;
    let e_conn = env.conn().await;

    // C's transaction holds the only connection: D waits, then gives up.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO q_t VALUES (1)").await.unwrap();
    let before = metric(&env, TIMEOUTS, "").await;
    let started = Instant::now();
    let e = timeout(REPLY, d.query_drop("SELECT COUNT(*) FROM q_t"))
        .await
        .expect("D answered in time")
        .expect_err("D cannot borrow the connection C's transaction holds");
    let waited = started.elapsed();
    let (code, state, msg) = server_error(&e).unwrap_or_else(|| panic!("a server error: {e}"));
    assert_eq!((code, state), (9001, "HY000"), "{msg}");
    let primary = &env.cluster.primary;
    assert!(
        msg.contains(&primary.name) || msg.contains(&primary.addr.to_string()),
        "the error names the backend: {msg}"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "D waited about the queue timeout (300 ms), not {waited:?}"
    );
    assert!(
        metric(&env, TIMEOUTS, "").await > before,
        "{TIMEOUTS} counted it"
    );

    // Both sessions go on.
    c.query_drop("COMMIT").await.unwrap();
    let n: Option<i64> = d.query_first("SELECT COUNT(*) FROM q_t").await.unwrap();
    assert_eq!(n, Some(1), "D works once the connection is free");

    // Freed within the timeout: the waiting clients are handed it in turn.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO q_t VALUES (2)").await.unwrap();
    let waiter = |mut w: Conn| {
        tokio::spawn(async move {
            let t = Instant::now();
            let r: Result<Option<i64>, _> = w.query_first("SELECT COUNT(*) FROM q_t").await;
            (r, t.elapsed(), w)
        })
    };
    let (dq, eq) = (waiter(d), waiter(e_conn));
    // A third of the timeout: long enough for both to be queued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !dq.is_finished() && !eq.is_finished(),
        "D and E wait while C's transaction holds the connection"
    );
    c.query_drop("COMMIT").await.unwrap();
    for (name, q) in [("D", dq), ("E", eq)] {
        let (r, waited, _w) = timeout(REPLY, q).await.expect("answered").unwrap();
        let n = r.unwrap_or_else(|e| panic!("{name} was handed the connection: {e}"));
        assert_eq!(n, Some(2), "{name} ran after C's commit");
        assert!(
            waited >= Duration::from_millis(90),
            "{name} waited {waited:?}"
        );
    }
    drop(c);
    env.stop().await;
}

// ------------------------------------ 6. state the client's SQL does not show

/// Variables changed where Causeway cannot see a `SET` (inside a stored
/// procedure, in a multi-statement) still follow the session, because the
/// server reports them; and a pooled connection the server closes on its
/// own (`wait_timeout`) is never handed to a client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reported_changes_follow_the_session_and_timed_out_connections_are_dropped() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with(0, |t| t.push_str(&txn_pool(1, 5000))).await;
    let mut a = env.conn().await;
    let mut b = env.conn().await;
    a.query_drop(
        "CREATE PROCEDURE set_zone() BEGIN SET SESSION time_zone = '+07:00'; \
         SET SESSION group_concat_max_len = 4321; END",
    )
    .await
    .unwrap();
    a.query_drop("CALL set_zone()").await.unwrap();
    // A multi-statement whose SET is not the statement's first.
    a.query_drop("SELECT 1; SET SESSION div_precision_increment = 9")
        .await
        .unwrap();
    let shared = backend_id(&mut a).await;
    assert_eq!(backend_id(&mut b).await, shared, "B shares A's connection");
    let theirs: (String, u64, u32) = b
        .query_first("SELECT @@time_zone, @@group_concat_max_len, @@div_precision_increment")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        theirs.0, "SYSTEM",
        "B does not get A's procedure's time zone"
    );
    assert_ne!(theirs.1, 4321, "nor its group_concat_max_len");
    assert_eq!(theirs.2, 4);
    kill_backend(&env, shared).await;
    let mine: (String, u64, u32) = a
        .query_first("SELECT @@time_zone, @@group_concat_max_len, @@div_precision_increment")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mine,
        ("+07:00".to_string(), 4321, 9),
        "A's changes moved to a new connection"
    );

    // B makes the shared connection time out on the server while idle.
    b.query_drop("SET SESSION wait_timeout = 1").await.unwrap();
    let short = backend_id(&mut b).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let gone = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {short}");
    while env.primary_sql(&gone).await.trim() != "0" {
        assert!(
            Instant::now() < deadline,
            "wait_timeout never closed {short}"
        );
        tokio::time::sleep(POLL).await;
    }
    // A gets another connection (brought to A's state), with no error.
    let after: (u64, String) = a
        .query_first("SELECT @@pseudo_thread_id, @@time_zone")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(after.0, short, "the timed-out connection is not handed out");
    assert_eq!(after.1, "+07:00");
    let wt: u32 = a
        .query_first("SELECT @@wait_timeout")
        .await
        .unwrap()
        .unwrap();
    assert!(wt > 1, "B's wait_timeout is B's own");
    env.stop().await;
}
