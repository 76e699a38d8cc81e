//! Consistency levels on a real cluster (primary server_id 1, replicas 2
//! and 3): what each level promises, proved by the values reads return
//! while replicas lag on purpose (`MASTER_DELAY`, `STOP SLAVE SQL_THREAD`),
//! and by where the reads ran (`@@server_id`, `/metrics`, `/status`).
//!
//! - session: a session reads its own writes and never goes back in time;
//! - global: a read sees every write committed anywhere before it started;
//! - bounded:T: a read is never older than T;
//! - eventual: the old rules, and stale reads can be seen;
//! - overrides (statement hint, `SET CAUSEWAY CONSISTENCY`, per user), the
//!   causal token, wait timeouts, and replica positions across restarts.
//!
//! Tests here run one at a time (`SERIAL`): the metrics recorder is
//! process-wide, so concurrent tests would pollute each other's counters,
//! and timing assertions need the two cores to themselves.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_get, routable, Env};
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde_json::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long replicas may take to apply what the primary has.
const CATCH_UP: Duration = Duration::from_secs(30);
/// How long `/status` and `/metrics` conditions are polled for.
const SETTLE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// `served` label values meaning "a replica ran the read".
const BY_REPLICA: [&str; 2] = ["replica", "replica_after_wait"];

const READS: &str = "causeway_consistency_reads_total";
const WAIT_COUNT: &str = "causeway_consistency_wait_seconds_count";
const POSITION_REQUESTS: &str = "causeway_position_requests_total";
const REPLICA_LAG: &str = "causeway_replica_lag_seconds";

/// A policy with a consistency level; ordinary reads stay off the primary.
fn policy(level: &str, wait_timeout_ms: u64, on_timeout: &str) -> String {
    format!(
        "name = \"consistency\"\n\
         [consistency]\n\
         level = \"{level}\"\n\
         wait_timeout_ms = {wait_timeout_ms}\n\
         on_timeout = \"{on_timeout}\"\n\
         [routing]\n\
         primary_accepts_reads = false\n\
         max_replica_lag_ms = 10000\n"
    )
}

// ---------------------------------------------------------------- metrics

/// The body of `GET path` on the admin endpoint.
async fn admin_body(env: &Env, path: &str) -> String {
    let resp = http_get(env.admin, path).await;
    match resp.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => panic!("no HTTP body from {path}: {resp}"),
    }
}

async fn metrics_text(env: &Env) -> String {
    admin_body(env, "/metrics").await
}

/// One Prometheus sample: name, labels, value.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// Parses one sample line of the Prometheus text format.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(char::is_whitespace)?;
    let value: f64 = value.parse().ok()?;
    let series = series.trim();
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix('}')?;
            let labels = inner
                .split("\",")
                .filter(|kv| !kv.trim().is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            (name, labels)
        }
        None => (series, Vec::new()),
    };
    Some((name, labels, value))
}

/// Values of every series called `name` carrying all of `labels`.
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter_map(parse_sample)
        .filter(|(n, l, _)| {
            *n == name && labels.iter().all(|want| l.iter().any(|have| have == want))
        })
        .map(|(_, _, v)| v)
        .collect()
}

/// Sum over every series called `name` carrying all of `labels` (0 if none).
fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name, labels).iter().sum()
}

/// Reads counted by `causeway_consistency_reads_total` with one of the
/// `served` values, at `level` (any level when `None`).
fn reads_served(text: &str, level: Option<&str>, served: &[&str]) -> f64 {
    served
        .iter()
        .map(|s| match level {
            Some(l) => metric_sum(text, READS, &[("level", l), ("served", s)]),
            None => metric_sum(text, READS, &[("served", s)]),
        })
        .sum()
}

// ----------------------------------------------------------------- status

async fn status(env: &Env) -> Value {
    let body = admin_body(env, "/status").await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// The `/status` entry of backend `name` (under `topology.backends`, or a
/// top-level `backends`).
fn backend<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    let list = status["topology"]["backends"]
        .as_array()
        .or_else(|| status["backends"].as_array())?;
    list.iter().find(|b| b["name"] == name)
}

/// The GTID position `/status` reports for backend `name`.
async fn position_of(env: &Env, name: &str) -> Option<String> {
    let s = status(env).await;
    backend(&s, name).and_then(|b| b["position"].as_str().map(str::to_string))
}

/// Polls `/status` until `pred` holds; returns the status that satisfied it.
async fn wait_status(env: &Env, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = status(env).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}; last /status: {s}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `/status` until backend `name` reports exactly `position`.
async fn wait_position(env: &Env, name: &str, position: &str) {
    wait_status(
        env,
        &format!("{name} never reported position {position}"),
        |s| backend(s, name).is_some_and(|b| b["position"].as_str() == Some(position)),
    )
    .await;
}

/// The primary's `@@gtid_binlog_pos`, asked directly.
async fn primary_pos(env: &Env) -> String {
    env.primary_sql("SELECT @@gtid_binlog_pos")
        .await
        .trim()
        .to_string()
}

// --------------------------------------------------------------- replicas

/// Runs root SQL directly on every replica.
async fn on_replicas(env: &Env, sql: &str) {
    for r in &env.cluster.replicas {
        env.cluster
            .root_sql(r, sql)
            .await
            .unwrap_or_else(|e| panic!("{} on {}: {e}", sql, r.name));
    }
}

/// Polls every replica (directly, as root) until `sql` prints `expected`.
async fn wait_on_replicas(env: &Env, sql: &str, expected: &str) {
    let deadline = Instant::now() + CATCH_UP;
    for r in &env.cluster.replicas {
        loop {
            let got = env.cluster.root_sql(r, sql).await;
            if matches!(&got, Ok(out) if out.trim() == expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never answered {expected:?} to {sql:?}: {got:?}",
                r.name
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Waits until every replica has table `app.<table>`.
async fn wait_replicas_have_table(env: &Env, table: &str) {
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = 'app' AND table_name = '{table}'"
    );
    wait_on_replicas(env, &sql, "1").await;
}

/// Makes replica `i` apply every event `secs` seconds after the primary.
async fn delay_replica(env: &Env, i: usize, secs: u32) {
    let sql = format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {secs}; START SLAVE;");
    env.cluster
        .root_sql(&env.cluster.replicas[i], &sql)
        .await
        .unwrap();
}

/// Creates `app.<table> (id INT PRIMARY KEY, v INT)` with row (1, 0)
/// through Causeway and waits until every replica has the row.
async fn create_row_table(env: &Env, c: &mut Conn, table: &str) {
    c.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO {table} VALUES (1, 0)"))
        .await
        .unwrap();
    wait_replicas_have_table(env, table).await;
    wait_on_replicas(
        env,
        &format!("SELECT COUNT(*) FROM app.{table} WHERE id = 1"),
        "1",
    )
    .await;
}

/// A two-replica cluster at `level` (see [`policy`]), replicas taking
/// reads, and a connection that created `app.<table>` with row (1, 0).
async fn start_with_table(
    level: &str,
    wait_timeout_ms: u64,
    on_timeout: &str,
    table: &str,
) -> (Env, Conn) {
    let env = Env::start_with_policy(2, &policy(level, wait_timeout_ms, on_timeout)).await;
    routable(&env).await;
    let mut c = env.conn().await;
    create_row_table(&env, &mut c, table).await;
    (env, c)
}

// ------------------------------------------------------------ connections

async fn set_level(c: &mut Conn, level: &str) {
    c.query_drop(format!("SET CAUSEWAY CONSISTENCY = '{level}'"))
        .await
        .unwrap_or_else(|e| panic!("SET CAUSEWAY CONSISTENCY = '{level}': {e}"));
}

/// `SHOW CAUSEWAY CONSISTENCY`: one row, one column named `consistency`.
async fn show_level(c: &mut Conn) -> String {
    let mut r = c.query_iter("SHOW CAUSEWAY CONSISTENCY").await.unwrap();
    let columns: Vec<String> = r
        .columns()
        .map(|cols| cols.iter().map(|c| c.name_str().into_owned()).collect())
        .unwrap_or_default();
    let rows: Vec<String> = r.collect().await.unwrap();
    r.drop_result().await.unwrap();
    assert_eq!(
        columns,
        ["consistency"],
        "SHOW CAUSEWAY CONSISTENCY columns"
    );
    assert_eq!(rows.len(), 1, "SHOW CAUSEWAY CONSISTENCY rows: {rows:?}");
    rows.into_iter().next().unwrap()
}

/// `SHOW CAUSEWAY TOKEN`: one row, one column named `token`.
async fn take_token(c: &mut Conn) -> String {
    let mut r = c.query_iter("SHOW CAUSEWAY TOKEN").await.unwrap();
    let columns: Vec<String> = r
        .columns()
        .map(|cols| cols.iter().map(|c| c.name_str().into_owned()).collect())
        .unwrap_or_default();
    let rows: Vec<String> = r.collect().await.unwrap();
    r.drop_result().await.unwrap();
    assert_eq!(columns, ["token"], "SHOW CAUSEWAY TOKEN columns");
    assert_eq!(rows.len(), 1, "SHOW CAUSEWAY TOKEN rows: {rows:?}");
    let token = rows.into_iter().next().unwrap();
    assert!(
        !token.is_empty()
            && !token.contains(char::is_whitespace)
            && !token.contains("*/")
            && !token.contains("/*"),
        "a token must be usable inside a comment: {token:?}"
    );
    token
}

/// The rows of `EXPLAIN ROUTE <stmt>` and the value of its `key` row.
async fn explain_row(c: &mut Conn, stmt: &str, key: &str) -> String {
    let rows: Vec<(String, String)> = c.query(format!("EXPLAIN ROUTE {stmt}")).await.unwrap();
    rows.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("EXPLAIN ROUTE {stmt}: no {key} row in {rows:?}"))
}

/// Code and SQLSTATE of a server error; panics on any other error.
fn server_error(e: &mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.state.clone()),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// `n` write-then-read pairs on `c` against `app.<table>` row 1: every
/// read must return the value just written. Returns how many reads a
/// replica served.
async fn fresh_pairs(c: &mut Conn, table: &str, next: &mut i64, n: usize, what: &str) -> usize {
    let mut by_replica = 0;
    for _ in 0..n {
        *next += 1;
        let i = *next;
        c.query_drop(format!("UPDATE {table} SET v = {i} WHERE id = 1"))
            .await
            .unwrap_or_else(|e| panic!("{what}: write {i}: {e}"));
        let (v, sid): (i64, u32) = c
            .query_first(format!("SELECT v, @@server_id FROM {table} WHERE id = 1"))
            .await
            .unwrap_or_else(|e| panic!("{what}: read after write {i}: {e}"))
            .unwrap();
        assert_eq!(v, i, "{what}: stale read on server {sid}");
        if sid != 1 {
            by_replica += 1;
        }
    }
    by_replica
}

/// Writes each value to `app.g` row 1 on `writer`, then reads it on
/// `reader`. Returns the stale reads (wrote, read, server) and how many
/// reads a replica served.
async fn cross_pairs(
    writer: &mut Conn,
    reader: &mut Conn,
    values: std::ops::RangeInclusive<i64>,
) -> (Vec<(i64, i64, u32)>, usize) {
    let mut stale = Vec::new();
    let mut by_replica = 0;
    for i in values {
        writer
            .query_drop(format!("UPDATE g SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
        let (v, sid): (i64, u32) = reader
            .query_first("SELECT v, @@server_id FROM g WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
        if v != i {
            stale.push((i, v, sid));
        }
        if sid != 1 {
            by_replica += 1;
        }
    }
    (stale, by_replica)
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_level_reads_your_writes_and_eventual_can_be_stale() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with_policy(2, &policy("session", 1000, "primary")).await;
    routable(&env).await;
    let mut c = env.conn().await;
    assert_eq!(show_level(&mut c).await, "session", "the policy's level");
    create_row_table(&env, &mut c, "t").await;
    // replica1 applies everything 2 s late; replica2 keeps up.
    delay_replica(&env, 0, 2).await;

    let before = metrics_text(&env).await;
    let update = c.prep("UPDATE t SET v = ? WHERE id = 1").await.unwrap();
    let select = c
        .prep("SELECT v, @@server_id FROM t WHERE id = 1")
        .await
        .unwrap();
    let mut stale = Vec::new();
    let mut by_replica = 0;
    for i in 1..=1000i64 {
        // Text protocol and prepared statements alternate.
        let (v, sid): (i64, u32) = if i % 2 == 0 {
            c.query_drop(format!("UPDATE t SET v = {i} WHERE id = 1"))
                .await
                .unwrap();
            c.query_first("SELECT v, @@server_id FROM t WHERE id = 1")
                .await
                .unwrap()
                .unwrap()
        } else {
            c.exec_drop(&update, (i,)).await.unwrap();
            c.exec_first(&select, ()).await.unwrap().unwrap()
        };
        if v != i {
            stale.push((i, v, sid));
        }
        if sid != 1 {
            by_replica += 1;
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads at session level (wrote, read, server): {:?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
    let after = metrics_text(&env).await;
    let replica_reads = reads_served(&after, Some("session"), &BY_REPLICA)
        - reads_served(&before, Some("session"), &BY_REPLICA);
    assert!(
        replica_reads >= 500.0,
        "replicas served {replica_reads} of 1000 session reads by the metrics; {after}"
    );
    assert!(
        by_replica >= 500,
        "replicas served {by_replica} of 1000 session reads by @@server_id"
    );

    // replica1's lag by positions shows in /metrics and /status (writes keep
    // it behind), next to the Seconds_Behind_Master view.
    let deadline = Instant::now() + SETTLE;
    loop {
        c.query_drop("UPDATE t SET v = v + 1 WHERE id = 1")
            .await
            .unwrap();
        let text = metrics_text(&env).await;
        let lag = metric_sum(
            &text,
            REPLICA_LAG,
            &[("backend", "replica1"), ("source", "positions")],
        );
        let sbm_present = !samples(
            &text,
            REPLICA_LAG,
            &[("backend", "replica1"), ("source", "seconds_behind_master")],
        )
        .is_empty();
        let st = status(&env).await;
        let r1 = backend(&st, "replica1").expect("replica1 in /status");
        let lag_ms = r1["position_lag_ms"].as_f64().unwrap_or(0.0);
        let has_position = r1["position"].as_str().is_some_and(|p| !p.is_empty());
        if lag > 0.0 && sbm_present && lag_ms > 0.0 && has_position {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica1's position lag never showed: lag {lag}, sbm series {sbm_present}, \
             /status {r1}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // At eventual level the same pattern can read stale data: the delayed
    // replica1 takes reads. Fresh connections spread the sessions.
    let mut stale_eventual = 0;
    let mut servers = HashSet::new();
    for round in 0..10i64 {
        let mut e = env.conn().await;
        set_level(&mut e, "eventual").await;
        assert_eq!(show_level(&mut e).await, "eventual");
        for j in 0..30i64 {
            let i = 100_000 + round * 100 + j;
            e.query_drop(format!("UPDATE t SET v = {i} WHERE id = 1"))
                .await
                .unwrap();
            let (v, sid): (i64, u32) = e
                .query_first("SELECT v, @@server_id FROM t WHERE id = 1")
                .await
                .unwrap()
                .unwrap();
            servers.insert(sid);
            if v != i {
                stale_eventual += 1;
            }
        }
        e.disconnect().await.unwrap();
    }
    assert!(
        stale_eventual >= 1,
        "300 eventual reads behind a 2 s-delayed replica were all fresh (servers {servers:?}): \
         the test cannot see staleness"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monotonic_reads_never_go_backwards() {
    let _serial = SERIAL.lock().await;
    let (env, _c) = start_with_table("session", 1000, "primary", "counter").await;
    delay_replica(&env, 0, 1).await;

    let stop = Arc::new(AtomicBool::new(false));
    // The writer bypasses Causeway: the sessions never write, so only their
    // own reads tell Causeway how far they have seen.
    let mut w = env.direct_primary().await;
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(4);
            let mut n = 0u64;
            while Instant::now() < end {
                w.query_drop("UPDATE counter SET v = v + 1 WHERE id = 1")
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            stop.store(true, Ordering::SeqCst);
            n
        })
    };
    // Long sessions (one with a prepared statement).
    let mut long = Vec::new();
    for s in 0..3 {
        let url = env.url("app");
        let stop = stop.clone();
        long.push(tokio::spawn(async move {
            let mut c = Conn::from_url(url).await.unwrap();
            let stmt = c
                .prep("SELECT v, @@server_id FROM counter WHERE id = 1")
                .await
                .unwrap();
            let mut seq: Vec<(i64, u32)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let row: (i64, u32) = if s == 0 {
                    c.exec_first(&stmt, ()).await.unwrap().unwrap()
                } else {
                    c.query_first("SELECT v, @@server_id FROM counter WHERE id = 1")
                        .await
                        .unwrap()
                        .unwrap()
                };
                seq.push(row);
            }
            c.disconnect().await.unwrap();
            seq
        }));
    }
    // Short sessions: a fresh connection every 15 reads.
    let fresh = {
        let url = env.url("app");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sessions: Vec<Vec<(i64, u32)>> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let mut c = Conn::from_url(url.clone()).await.unwrap();
                let mut seq = Vec::new();
                for _ in 0..15 {
                    let row: (i64, u32) = c
                        .query_first("SELECT v, @@server_id FROM counter WHERE id = 1")
                        .await
                        .unwrap()
                        .unwrap();
                    seq.push(row);
                }
                c.disconnect().await.unwrap();
                sessions.push(seq);
            }
            sessions
        })
    };
    let writes = writer.await.unwrap();
    assert!(writes > 100, "the writer made only {writes} writes");
    let mut all: Vec<(String, Vec<(i64, u32)>)> = Vec::new();
    for (i, h) in long.into_iter().enumerate() {
        let seq = h.await.unwrap();
        assert!(
            seq.len() >= 20,
            "long session {i} read only {} times",
            seq.len()
        );
        let distinct: HashSet<i64> = seq.iter().map(|(v, _)| *v).collect();
        assert!(
            distinct.len() >= 2,
            "long session {i} never saw the counter move: {distinct:?}"
        );
        all.push((format!("long session {i}"), seq));
    }
    let short = fresh.await.unwrap();
    assert!(short.len() >= 3, "only {} fresh sessions ran", short.len());
    for (i, seq) in short.into_iter().enumerate() {
        all.push((format!("fresh session {i}"), seq));
    }
    let mut replica_reads = 0;
    for (name, seq) in &all {
        for pair in seq.windows(2) {
            let ((a, sa), (b, sb)) = (pair[0], pair[1]);
            assert!(
                b >= a,
                "{name} went back in time: read {a} on server {sa}, then {b} on server {sb}"
            );
        }
        replica_reads += seq.iter().filter(|(_, sid)| *sid != 1).count();
    }
    assert!(replica_reads > 0, "no session read ran on a replica");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_level_sees_writes_from_other_connections_and_from_the_primary_directly() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with_policy(2, &policy("global", 1000, "primary")).await;
    routable(&env).await;
    let mut a = env.conn().await;
    let mut b = env.conn().await;
    assert_eq!(show_level(&mut b).await, "global", "the policy's level");
    create_row_table(&env, &mut a, "g").await;
    // replica1 runs 1 s behind: a read it served would be stale.
    delay_replica(&env, 0, 1).await;

    let before = metrics_text(&env).await;
    let (stale, mut by_replica) = cross_pairs(&mut a, &mut b, 1..=1000).await;
    assert!(
        stale.is_empty(),
        "{} stale reads of another connection's writes (wrote, read, server): {:?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );

    // Writes Causeway never saw: the primary's own position must be asked.
    let mut d = env.direct_primary().await;
    let (stale, n) = cross_pairs(&mut d, &mut b, 1_000_001..=1_001_000).await;
    by_replica += n;
    assert!(
        stale.is_empty(),
        "{} stale reads of writes made directly on the primary (wrote, read, server): {:?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
    let after = metrics_text(&env).await;
    let requests =
        metric_sum(&after, POSITION_REQUESTS, &[]) - metric_sum(&before, POSITION_REQUESTS, &[]);
    assert!(
        requests > 0.0,
        "no position requests at global level; {after}"
    );
    let replica_reads = reads_served(&after, Some("global"), &BY_REPLICA)
        - reads_served(&before, Some("global"), &BY_REPLICA);
    assert!(
        replica_reads > 0.0,
        "replicas served no global reads by the metrics; {after}"
    );
    assert!(
        by_replica > 0,
        "replicas served no global reads by @@server_id"
    );
    d.disconnect().await.unwrap();
    env.stop().await;
}

/// Many concurrent global reads while a writer Causeway never sees commits
/// straight on the primary: the reads share fresh positions and, on each
/// replica, one wait statement per batch; every read still sees every
/// write whose commit had returned before the read started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_global_reads_see_every_hidden_write_before_them() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with_policy(2, &policy("global", 1000, "primary")).await;
    routable(&env).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE hg (v INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO hg VALUES (0)").await.unwrap();
    wait_replicas_have_table(&env, "hg").await;
    wait_on_replicas(&env, "SELECT COUNT(*) FROM app.hg", "1").await;
    c.disconnect().await.unwrap();

    let before = metrics_text(&env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = env.direct_primary().await;
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // (when the commit had returned, value)
            let mut committed: Vec<(Instant, i64)> = Vec::new();
            let end = Instant::now() + Duration::from_secs(3);
            let mut v = 0i64;
            while Instant::now() < end {
                v += 1;
                w.query_drop(format!("INSERT INTO hg VALUES ({v})"))
                    .await
                    .unwrap();
                committed.push((Instant::now(), v));
            }
            stop.store(true, Ordering::SeqCst);
            w.disconnect().await.unwrap();
            committed
        })
    };
    let mut readers = Vec::new();
    for _ in 0..8 {
        let url = env.url("app");
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut c = Conn::from_url(url).await.unwrap();
            // (when the read was sent, value read, server)
            let mut reads: Vec<(Instant, i64, u32)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (v, sid): (i64, u32) = c
                    .query_first("SELECT MAX(v), @@server_id FROM hg")
                    .await
                    .unwrap()
                    .unwrap();
                reads.push((started, v, sid));
            }
            c.disconnect().await.unwrap();
            reads
        }));
    }
    let committed = writer.await.unwrap();
    assert!(committed.len() > 100, "only {} writes", committed.len());
    let mut reads = Vec::new();
    for h in readers {
        reads.extend(h.await.unwrap());
    }
    assert!(reads.len() > 100, "only {} reads", reads.len());
    let mut stale = Vec::new();
    for &(started, got, sid) in &reads {
        let required = committed
            .iter()
            .take_while(|(t, _)| *t < started)
            .map(|(_, v)| *v)
            .last()
            .unwrap_or(0);
        if got < required {
            stale.push((required, got, sid));
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {} global reads missed a write committed before them (required, read, server): {:?}",
        stale.len(),
        reads.len(),
        &stale[..stale.len().min(10)]
    );
    let after = metrics_text(&env).await;
    let replica_reads = reads_served(&after, Some("global"), &BY_REPLICA)
        - reads_served(&before, Some("global"), &BY_REPLICA);
    assert!(
        replica_reads > 0.0,
        "replicas served no global reads by the metrics; {after}"
    );
    assert!(
        metric_sum(&after, WAIT_COUNT, &[]) > metric_sum(&before, WAIT_COUNT, &[]),
        "no global read waited on a replica while writes flowed; {after}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_staleness_is_never_older_than_t() {
    const BOUND: Duration = Duration::from_millis(300);
    let _serial = SERIAL.lock().await;
    let env = Env::start_with_policy(2, &policy("bounded:300ms", 1000, "primary")).await;
    routable(&env).await;
    let mut c = env.conn().await;
    assert_eq!(
        show_level(&mut c).await,
        "bounded:300ms",
        "the policy's level"
    );
    c.query_drop("CREATE TABLE b (v INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO b VALUES (0)").await.unwrap();
    wait_replicas_have_table(&env, "b").await;
    wait_on_replicas(&env, "SELECT COUNT(*) FROM app.b", "1").await;
    // replica1 is 1 s behind: more than the bound.
    delay_replica(&env, 0, 1).await;

    let before = metrics_text(&env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut w = env.direct_primary().await;
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // (when the commit had returned, value)
            let mut committed: Vec<(Instant, i64)> = Vec::new();
            let end = Instant::now() + Duration::from_secs(4);
            let mut v = 0i64;
            while Instant::now() < end {
                v += 1;
                w.query_drop(format!("INSERT INTO b VALUES ({v})"))
                    .await
                    .unwrap();
                committed.push((Instant::now(), v));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.store(true, Ordering::SeqCst);
            w.disconnect().await.unwrap();
            committed
        })
    };
    let mut readers = Vec::new();
    for r in 0..2 {
        let url = env.url("app");
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut c = Conn::from_url(url).await.unwrap();
            let stmt = c.prep("SELECT MAX(v), @@server_id FROM b").await.unwrap();
            // (when the read was sent, value read, server)
            let mut reads: Vec<(Instant, i64, u32)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (v, sid): (i64, u32) = if r == 0 {
                    c.query_first("SELECT MAX(v), @@server_id FROM b")
                        .await
                        .unwrap()
                        .unwrap()
                } else {
                    c.exec_first(&stmt, ()).await.unwrap().unwrap()
                };
                reads.push((started, v, sid));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            c.disconnect().await.unwrap();
            reads
        }));
    }
    let committed = writer.await.unwrap();
    assert!(committed.len() > 100, "only {} writes", committed.len());
    let mut reads = Vec::new();
    for h in readers {
        reads.extend(h.await.unwrap());
    }
    assert!(reads.len() > 100, "only {} reads", reads.len());
    let mut too_old = Vec::new();
    for &(started, got, sid) in &reads {
        // Every value whose commit had returned more than BOUND before the
        // read started must be visible (values only grow).
        let required = committed
            .iter()
            .take_while(|(t, _)| *t + BOUND < started)
            .map(|(_, v)| *v)
            .last()
            .unwrap_or(0);
        if got < required {
            too_old.push((required, got, sid));
        }
    }
    assert!(
        too_old.is_empty(),
        "{} of {} reads older than {BOUND:?} (required, read, server): {:?}",
        too_old.len(),
        reads.len(),
        &too_old[..too_old.len().min(10)]
    );
    let by_replica = reads.iter().filter(|(_, _, sid)| *sid != 1).count();
    assert!(by_replica > 0, "no bounded read ran on a replica");
    let after = metrics_text(&env).await;
    let replica_reads =
        reads_served(&after, None, &BY_REPLICA) - reads_served(&before, None, &BY_REPLICA);
    assert!(
        replica_reads > 0.0,
        "replicas served no bounded reads by the metrics; {after}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_falls_back_to_primary_or_errors_and_the_connection_stays_usable() {
    let _serial = SERIAL.lock().await;

    // on_timeout = "primary": the read waits, then runs on the primary.
    let (env, mut c) = start_with_table("session", 500, "primary", "tw").await;
    on_replicas(&env, "STOP SLAVE SQL_THREAD").await;
    let before = metrics_text(&env).await;
    c.query_drop("UPDATE tw SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    let t0 = Instant::now();
    let (v, sid): (i64, u32) = c
        .query_first("SELECT v, @@server_id FROM tw WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    let took = t0.elapsed();
    assert_eq!((v, sid), (1, 1), "fresh, from the primary");
    assert!(
        took >= Duration::from_millis(400),
        "the read did not wait for a replica: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "the read waited {took:?}");
    let after = metrics_text(&env).await;
    let fallbacks = reads_served(&after, Some("session"), &["primary_after_timeout"])
        - reads_served(&before, Some("session"), &["primary_after_timeout"]);
    assert!(
        fallbacks >= 1.0,
        "no primary_after_timeout read counted; {after}"
    );
    let waits = metric_sum(&after, WAIT_COUNT, &[("level", "session")])
        - metric_sum(&before, WAIT_COUNT, &[("level", "session")]);
    assert!(waits >= 1.0, "the wait was not measured; {after}");
    // Replicas apply again: the same connection reads fresh data from one.
    on_replicas(&env, "START SLAVE SQL_THREAD").await;
    env.cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        let (v, sid): (i64, u32) = c
            .query_first("SELECT v, @@server_id FROM tw WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, 1, "stale read from server {sid}");
        if sid != 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never returned to the replicas"
        );
        tokio::time::sleep(POLL).await;
    }
    drop(c);
    env.stop().await;

    // on_timeout = "error": the read fails with 1969 / 70100 after the wait.
    let (env, mut c) = start_with_table("session", 500, "error", "tw").await;
    on_replicas(&env, "STOP SLAVE SQL_THREAD").await;
    let before = metrics_text(&env).await;
    c.query_drop("UPDATE tw SET v = 2 WHERE id = 1")
        .await
        .unwrap();
    let t0 = Instant::now();
    let e = c
        .query_first::<(i64, u32), _>("SELECT v, @@server_id FROM tw WHERE id = 1")
        .await
        .expect_err("no replica can serve the read in time");
    let took = t0.elapsed();
    assert_eq!(server_error(&e), (1969, "70100".to_string()), "{e}");
    assert!(
        took >= Duration::from_millis(400),
        "the read did not wait before failing: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "the read waited {took:?}");
    let after = metrics_text(&env).await;
    let errors = reads_served(&after, Some("session"), &["error"])
        - reads_served(&before, Some("session"), &["error"]);
    assert!(errors >= 1.0, "no error read counted; {after}");
    // The connection is still usable: writes work, and once the replicas
    // apply again a read is served by one of them.
    c.query_drop("UPDATE tw SET v = 3 WHERE id = 1")
        .await
        .unwrap();
    on_replicas(&env, "START SLAVE SQL_THREAD").await;
    env.cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();
    let deadline = Instant::now() + SETTLE;
    loop {
        match c
            .query_first::<(i64, u32), _>("SELECT v, @@server_id FROM tw WHERE id = 1")
            .await
        {
            Ok(Some((v, sid))) => {
                assert_eq!(v, 3, "stale read from server {sid}");
                assert_ne!(sid, 1, "on_timeout = error never reads on the primary");
                break;
            }
            Ok(None) => panic!("the row vanished"),
            Err(e) => assert_eq!(server_error(&e).0, 1969, "{e}"),
        }
        assert!(
            Instant::now() < deadline,
            "reads kept timing out after the replicas caught up"
        );
        tokio::time::sleep(POLL).await;
    }
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_statement_session_user_and_causal_token() {
    let _serial = SERIAL.lock().await;
    // The policy says session; the app account's override says global.
    let env = Env::start_with_policy_and(2, &policy("session", 300, "primary"), |cfg| {
        cfg.push_str(&format!(
            "\n[users.{}]\nconsistency = \"global\"\n",
            causeway::playground::APP_USER
        ));
    })
    .await;
    routable(&env).await;
    let mut c = env.conn().await;
    assert_eq!(show_level(&mut c).await, "global", "the user's level");
    assert_eq!(
        explain_row(&mut c, "SELECT 1", "consistency").await,
        "global"
    );

    // Per statement.
    for level in ["eventual", "session", "bounded:200ms"] {
        let stmt = format!("/* causeway: consistency={level} */ SELECT 1");
        assert_eq!(explain_row(&mut c, &stmt, "consistency").await, level);
    }
    assert_eq!(
        show_level(&mut c).await,
        "global",
        "a hint changes only its statement"
    );

    // Per session; DEFAULT returns to the user's level.
    for level in ["session", "bounded:200ms", "eventual", "global"] {
        set_level(&mut c, level).await;
        assert_eq!(show_level(&mut c).await, level);
        assert_eq!(explain_row(&mut c, "SELECT 1", "consistency").await, level);
    }
    set_level(&mut c, "session").await;
    assert_eq!(
        explain_row(
            &mut c,
            "/* causeway: consistency=eventual */ SELECT 1",
            "consistency"
        )
        .await,
        "eventual",
        "a hint outranks the session's level"
    );
    c.query_drop("SET CAUSEWAY CONSISTENCY = DEFAULT")
        .await
        .unwrap();
    assert_eq!(show_level(&mut c).await, "global");
    for bad in ["sometimes", "bounded:soon", ""] {
        let e = c
            .query_drop(format!("SET CAUSEWAY CONSISTENCY = '{bad}'"))
            .await
            .expect_err("a bad level is refused");
        assert_eq!(
            server_error(&e),
            (1231, "42000".to_string()),
            "'{bad}': {e}"
        );
    }
    assert_eq!(
        show_level(&mut c).await,
        "global",
        "a refused SET changes nothing"
    );
    // MariaDB itself rejects the statement: it worked above only because
    // Causeway answered it without a backend.
    assert!(env
        .cluster
        .root_sql(&env.cluster.primary, "SET CAUSEWAY CONSISTENCY = 'global'")
        .await
        .is_err());

    // Causal token: B at eventual level sees what A wrote before taking it.
    create_row_table(&env, &mut c, "k").await;
    delay_replica(&env, 0, 2).await;
    env.cluster
        .root_sql(&env.cluster.replicas[1], "STOP SLAVE SQL_THREAD")
        .await
        .unwrap();
    let mut a = env.conn().await;
    set_level(&mut a, "session").await;
    let mut b = env.conn().await;
    set_level(&mut b, "eventual").await;
    let mut stale_without_token = 0;
    for i in 1..=8i64 {
        a.query_drop(format!("UPDATE k SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
        let token = take_token(&mut a).await;
        // Without the token, eventual may read an old value.
        let plain: Option<i64> = b.query_first("SELECT v FROM k WHERE id = 1").await.unwrap();
        if plain != Some(i) {
            stale_without_token += 1;
        }
        let with: Option<i64> = b
            .query_first(format!(
                "/* causeway: after={token} */ SELECT v FROM k WHERE id = 1"
            ))
            .await
            .unwrap();
        assert_eq!(with, Some(i), "a read after token {token} missed write {i}");
        // A brand-new connection can use it too.
        if i % 4 == 0 {
            let mut fresh = env.conn().await;
            set_level(&mut fresh, "eventual").await;
            let v: Option<i64> = fresh
                .query_first(format!(
                    "/* causeway: after={token} */ SELECT v FROM k WHERE id = 1"
                ))
                .await
                .unwrap();
            assert_eq!(v, Some(i), "a new connection's read after token {token}");
            fresh.disconnect().await.unwrap();
        }
    }
    assert!(
        stale_without_token >= 1,
        "without tokens no eventual read was stale: the test proves nothing"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_positions_follow_restarts_and_repointing() {
    let _serial = SERIAL.lock().await;
    let mut env = Env::start_with_policy(2, &policy("session", 1000, "primary")).await;
    routable(&env).await;
    let mut c = env.conn().await;
    create_row_table(&env, &mut c, "p").await;
    let mut next = 0i64;
    fresh_pairs(&mut c, "p", &mut next, 20, "before the restart").await;
    let pos = primary_pos(&env).await;
    wait_position(&env, "replica1", &pos).await;
    wait_position(&env, "replica2", &pos).await;

    // replica2 dies: writes go on, reads stay fresh.
    env.cluster.replicas[1].kill();
    wait_status(&env, "replica2 never seen down", |s| {
        backend(s, "replica2").is_some_and(|b| b["up"] == false)
    })
    .await;
    let mut c = env.conn().await;
    fresh_pairs(&mut c, "p", &mut next, 100, "replica2 down").await;
    // It comes back behind and catches up; reads stay fresh throughout.
    env.cluster.replicas[1]
        .start()
        .await
        .expect("replica2 restarts");
    let mut c = env.conn().await;
    fresh_pairs(&mut c, "p", &mut next, 50, "replica2 catching up").await;
    let pos = primary_pos(&env).await;
    wait_position(&env, "replica2", &pos).await;
    fresh_pairs(&mut c, "p", &mut next, 50, "replica2 back").await;

    // replica1 is repointed to an older position: /status must report what
    // the replica really says, not the newer position it had cached.
    let old = primary_pos(&env).await;
    wait_position(&env, "replica1", &old).await;
    fresh_pairs(&mut c, "p", &mut next, 20, "more writes").await;
    let newer = primary_pos(&env).await;
    assert_ne!(old, newer);
    wait_position(&env, "replica1", &newer).await;
    env.cluster
        .root_sql(
            &env.cluster.replicas[0],
            &format!("STOP SLAVE; SET GLOBAL gtid_slave_pos = '{old}';"),
        )
        .await
        .unwrap();
    wait_position(&env, "replica1", &old).await;
    fresh_pairs(&mut c, "p", &mut next, 50, "replica1 repointed").await;
    assert_eq!(
        position_of(&env, "replica1").await.as_deref(),
        Some(old.as_str()),
        "replica1's older position was replaced by a cached one"
    );
    // Back to where its data really is, and replicating again.
    env.cluster
        .root_sql(
            &env.cluster.replicas[0],
            "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos; START SLAVE;",
        )
        .await
        .unwrap();
    fresh_pairs(&mut c, "p", &mut next, 20, "replica1 resumed").await;
    let pos = primary_pos(&env).await;
    wait_position(&env, "replica1", &pos).await;
    wait_position(&env, "replica2", &pos).await;
    let by_replica = fresh_pairs(&mut c, "p", &mut next, 50, "all caught up").await;
    assert!(
        by_replica > 0,
        "no read ran on a replica once all caught up"
    );
    env.stop().await;
}

/// Writes that report their position in unusual ways — several statements
/// in one COM_QUERY, a stored procedure, and a write after the client turned
/// variable tracking off — are still read
/// back at session level. Both replicas stay eligible but behind (one
/// applies 30 s late, one has stopped applying), so a read that trusted a
/// missing or wrong position would return the old value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statements_procedures_and_untracked_writes_are_read_back() {
    let _serial = SERIAL.lock().await;
    let (env, mut c) = start_with_table("session", 200, "primary", "mp").await;
    c.query_drop("CREATE PROCEDURE bump(x INT) BEGIN UPDATE mp SET v = x WHERE id = 1; END")
        .await
        .unwrap();
    wait_on_replicas(
        &env,
        "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_NAME = 'bump'",
        "1",
    )
    .await;
    delay_replica(&env, 0, 30).await;
    env.cluster
        .root_sql(&env.cluster.replicas[1], "STOP SLAVE SQL_THREAD")
        .await
        .unwrap();
    // A fresh session each time: it has read nothing, so only the write's
    // own position can keep its read off the replicas that lack it.
    let mut i = 0i64;
    for _ in 0..3 {
        i += 1;
        let mut c = env.conn().await;
        c.query_drop(format!(
            "UPDATE mp SET v = {} WHERE id = 1; UPDATE mp SET v = {i} WHERE id = 1",
            i * 1000
        ))
        .await
        .unwrap();
        assert_eq!(read_v(&mut c).await, i, "multi-statement write read back");
        i += 1;
        let mut c = env.conn().await;
        c.query_drop(format!("CALL bump({i})")).await.unwrap();
        assert_eq!(read_v(&mut c).await, i, "procedure write read back");
    }
    // A client that turns variable tracking off (connectors narrow it):
    // Causeway turns its own back on, so the write's OK still carries its
    // position and the read needs no request to the primary.
    let before = metric_sum(&metrics_text(&env).await, POSITION_REQUESTS, &[]);
    for _ in 0..3 {
        i += 1;
        let mut c = env.conn().await;
        c.query_drop("SET SESSION session_track_system_variables = ''")
            .await
            .unwrap();
        c.query_drop(format!("UPDATE mp SET v = {i} WHERE id = 1"))
            .await
            .unwrap();
        assert_eq!(
            read_v(&mut c).await,
            i,
            "write after tracking off read back"
        );
    }
    let after = metric_sum(&metrics_text(&env).await, POSITION_REQUESTS, &[]);
    assert_eq!(
        after, before,
        "the writes' positions came in their OK packets: {before} -> {after}"
    );
    // Tracking off and the write in one statement: that write's OK carries
    // no position, so Causeway asks the primary for its own.
    for _ in 0..3 {
        i += 1;
        let mut c = env.conn().await;
        c.query_drop(format!(
            "SET SESSION session_track_system_variables = ''; UPDATE mp SET v = {i} WHERE id = 1"
        ))
        .await
        .unwrap();
        assert_eq!(read_v(&mut c).await, i, "untracked write read back");
    }
    let last = metric_sum(&metrics_text(&env).await, POSITION_REQUESTS, &[]);
    assert!(
        last >= after + 3.0,
        "each untracked write made the next read ask the primary: {after} -> {last}"
    );
    env.stop().await;
}

async fn read_v(c: &mut Conn) -> i64 {
    c.query_first("SELECT v FROM mp WHERE id = 1")
        .await
        .unwrap()
        .unwrap()
}

/// A prepared read whose first execute ran on a replica and a later one
/// falls back to the primary after a wait timeout: the primary gets the
/// parameter types the client sent only with its first execute (as
/// libmysqlclient does), and answers with the fresh row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_read_falling_back_to_the_primary_gets_its_parameter_types() {
    use causeway::protocol::reply::Expect;
    use common::raw::{err_of, Raw};
    let _serial = SERIAL.lock().await;
    let (env, mut c) = start_with_table("session", 200, "primary", "pt").await;
    let mut raw = Raw::login(
        env.proxy,
        &env.cluster.app_user,
        &env.cluster.app_password,
        Some("app"),
        0,
    )
    .await;
    let mut prep = vec![0x16];
    prep.extend_from_slice(b"SELECT v, @@server_id FROM pt WHERE id = ?");
    raw.command(&prep).await;
    let reply = raw.reply(Expect::Prepare).await;
    assert_eq!(reply[0][0], 0, "prepare: {:?}", err_of(&reply[0]));
    let id = u32::from_le_bytes(reply[0][1..5].try_into().unwrap());
    // COM_STMT_EXECUTE: id, no cursor, 1 iteration, NULL bitmap, then the
    // types only when `with_types`, then the BIGINT value 1.
    let execute = |with_types: bool| {
        let mut ex = vec![0x17];
        ex.extend_from_slice(&id.to_le_bytes());
        ex.push(0);
        ex.extend_from_slice(&1u32.to_le_bytes());
        ex.push(0);
        if with_types {
            ex.extend_from_slice(&[1, 0x08, 0x00]);
        } else {
            ex.push(0);
        }
        ex.extend_from_slice(&1i64.to_le_bytes());
        ex
    };
    // Binary row: header, NULL bitmap (2 columns: 1 byte), INT v, BIGINT id.
    let row = |reply: &[bytes::Bytes]| -> (i32, i64) {
        assert!(
            reply.iter().all(|p| p[0] != 0xFF),
            "execute: {:?}",
            err_of(reply.last().unwrap())
        );
        let p = reply
            .iter()
            .find(|p| p[0] == 0 && p.len() == 2 + 4 + 8)
            .unwrap_or_else(|| panic!("no row in {reply:02x?}"));
        (
            i32::from_le_bytes(p[2..6].try_into().unwrap()),
            i64::from_le_bytes(p[6..14].try_into().unwrap()),
        )
    };
    raw.command(&execute(true)).await;
    let (v, server) = row(&raw.reply(Expect::ResultSets).await);
    assert_eq!(v, 0);
    assert_ne!(server, 1, "the first execute ran on a replica");
    on_replicas(&env, "STOP SLAVE SQL_THREAD").await;
    c.query_drop("UPDATE pt SET v = 7 WHERE id = 1")
        .await
        .unwrap();
    // The same session writes, then executes again without types.
    let mut q = vec![0x03];
    q.extend_from_slice(b"UPDATE pt SET v = 8 WHERE id = 1");
    raw.command(&q).await;
    let ok = raw.reply(Expect::ResultSets).await;
    assert_eq!(ok[0][0], 0, "update: {:?}", err_of(&ok[0]));
    raw.command(&execute(false)).await;
    let (v, server) = row(&raw.reply(Expect::ResultSets).await);
    assert_eq!(
        (v, server),
        (8, 1),
        "fresh value, from the primary after the wait timed out"
    );
    on_replicas(&env, "START SLAVE SQL_THREAD").await;
    env.stop().await;
}
