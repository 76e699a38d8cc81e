//! The random differential sessions shared by `tests/differential.rs` and
//! `tests/differential_roles.rs` (each includes this file with `#[path]`):
//! random per-client scripts of session-state statements, played on any
//! connections, with what each statement returned and a report of the
//! steps that differ.
#![allow(dead_code)]

use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const CLIENTS: usize = 3;
pub const SEEDS: &[u64] = &[11, 12, 13];
pub const STEPS: usize = 120;

/// One thing a client does.
#[derive(Clone, Debug)]
pub enum Op {
    /// Text protocol; `{t}` is the client's table.
    Sql(String),
    /// Binary protocol (COM_STMT_PREPARE / EXECUTE).
    Exec(String, Vec<Value>),
    /// Disconnect and connect again.
    Reconnect,
}

/// What a statement returned, as the application sees it.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Per result set: column types and values, or the OK's counts.
    Sets(Vec<Set>),
    Error(u16),
    Reconnected,
}

#[derive(Debug, PartialEq)]
pub enum Set {
    Rows(Vec<ColumnType>, Vec<Vec<Value>>),
    Ok {
        affected: u64,
        insert_id: Option<u64>,
    },
}

pub fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// A random statement for client `c`.
pub fn op(rng: &mut StdRng, c: usize) -> Op {
    let k: i64 = rng.random_range(0..6);
    let sql = |s: String| Op::Sql(s);
    match rng.random_range(0..100) {
        0..=3 => sql(format!(
            "SET time_zone = '{}'",
            pick(rng, &["+00:00", "+05:30", "-03:00", "SYSTEM"])
        )),
        4..=6 => sql(format!(
            "SET sql_mode = '{}'",
            pick(
                rng,
                &[
                    "",
                    "PIPES_AS_CONCAT",
                    "STRICT_TRANS_TABLES,PIPES_AS_CONCAT",
                    "ANSI"
                ]
            )
        )),
        7..=8 => sql(format!(
            "SET NAMES {}",
            pick(rng, &["latin1", "utf8mb4", "utf8mb4 COLLATE utf8mb4_bin"])
        )),
        9..=10 => sql(format!("SET div_precision_increment = {}", k + 1)),
        11..=12 => sql(format!(
            "SET SESSION TRANSACTION ISOLATION LEVEL {}",
            pick(rng, &["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"])
        )),
        13..=14 => sql(format!("SET autocommit = {}", k % 2)),
        15..=17 => sql(format!(
            "SET @{} = {}",
            pick(rng, &["u", "s", "w"]),
            pick(rng, &["1", "'text'", "2.5", "NULL", "-7", "0x41"])
        )),
        18..=19 => sql("SELECT @u := COUNT(*), @s := MAX(v) FROM {t}".into()),
        20 => sql("SELECT n INTO @w FROM {t} ORDER BY id DESC LIMIT 1".into()),
        21..=22 => sql(format!("USE {}", pick(rng, &["app", "sbtest"]))),
        23..=25 => sql(pick(rng, &["BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK"]).into()),
        26 => sql("START TRANSACTION READ ONLY".into()),
        27 => sql("SET TRANSACTION READ ONLY".into()),
        28..=35 => sql(format!("INSERT INTO {{t}} (v, n) VALUES ('c{c}', {k})")),
        36..=37 => sql(format!(
            "INSERT INTO {{t}} (v, n) VALUES ('m{c}', {k}), ('m{c}', {})",
            k + 1
        )),
        38..=40 => sql(format!("UPDATE {{t}} SET n = n + 1 WHERE n >= {k}")),
        41 => sql(format!("DELETE FROM {{t}} WHERE n = {k}")),
        42..=46 => sql("SELECT LAST_INSERT_ID()".into()),
        47..=49 => sql("SELECT ROW_COUNT()".into()),
        50..=51 => sql("SELECT SQL_CALC_FOUND_ROWS id FROM {t} ORDER BY id LIMIT 1".into()),
        52..=53 => sql("SELECT FOUND_ROWS()".into()),
        54..=56 => sql(
            "SELECT @@time_zone, @@sql_mode, @@character_set_client, @@collation_connection, \
             @@div_precision_increment, @@tx_isolation, @@autocommit, DATABASE()"
                .into(),
        ),
        57..=59 => sql("SELECT @u, @s, @w".into()),
        60..=61 => sql("SELECT COUNT(*), SUM(n), MAX(id) FROM {t}".into()),
        62 => sql("SELECT FROM_UNIXTIME(86400), 1 / 3, 'a' || 'b'".into()),
        63 => sql(format!("CREATE TEMPORARY TABLE tmp_{c} (x INT)")),
        64 => sql(format!("INSERT INTO tmp_{c} VALUES ({k})")),
        65 => sql(format!("SELECT COUNT(*), SUM(x) FROM tmp_{c}")),
        66 => sql(format!("DROP TEMPORARY TABLE tmp_{c}")),
        67 => sql("PREPARE p1 FROM 'SELECT COUNT(*), ? FROM {t}'".into()),
        68 => sql(format!("SET @p = {k}")),
        69 => sql("EXECUTE p1 USING @p".into()),
        70 => sql("DEALLOCATE PREPARE p1".into()),
        71 => sql(format!("SELECT GET_LOCK('diff_lock_{c}', 0)")),
        72 => sql(format!("SELECT RELEASE_LOCK('diff_lock_{c}')")),
        73 => sql(format!("SELECT IS_FREE_LOCK('diff_lock_{c}')")),
        74..=77 => Op::Exec(
            "SELECT n, v FROM {t} WHERE id = ?".into(),
            vec![Value::Int(rng.random_range(1..8))],
        ),
        78..=80 => Op::Exec(
            "INSERT INTO {t} (v, n) VALUES (?, ?)".into(),
            vec![Value::Bytes(format!("e{c}").into_bytes()), Value::Int(k)],
        ),
        81 => Op::Exec("SELECT ? + 1, LAST_INSERT_ID()".into(), vec![Value::Int(k)]),
        82..=83 => sql(format!(
            "UPDATE {{t}} SET n = n + 1 WHERE id = {}; SELECT ROW_COUNT(), LAST_INSERT_ID()",
            k + 1
        )),
        84 => sql("SET @u = 5; SET time_zone = '+01:00'; SELECT @u".into()),
        85 => sql("SELECT * FROM no_such_table".into()),
        86 => sql("INSERT INTO {t} (id, v, n) VALUES (1, 'dup', 0)".into()),
        87 => sql(format!("SELECT n FROM {{t}} WHERE n > {k} FOR UPDATE")),
        88..=89 => Op::Reconnect,
        _ => sql("SELECT COUNT(*) FROM {t}".into()),
    }
}

/// Who runs what, in order: `steps` operations per client, interleaved.
pub fn schedule(seed: u64, steps: usize) -> Vec<(usize, Op)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut left = [steps; CLIENTS];
    let mut out = Vec::new();
    while left.iter().any(|&n| n > 0) {
        let c = rng.random_range(0..CLIENTS);
        if left[c] == 0 {
            continue;
        }
        left[c] -= 1;
        let o = op(&mut rng, c);
        out.push((c, o));
    }
    out
}

pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

pub async fn run(conn: &mut Conn, op: &Op, table: &str) -> Result<Outcome, String> {
    let result = match op {
        Op::Sql(s) => {
            let sql = s.replace("{t}", table);
            collect(conn.query_iter(sql).await).await
        }
        Op::Exec(s, params) => {
            let sql = s.replace("{t}", table);
            collect(
                conn.exec_iter(sql, Params::Positional(params.clone()))
                    .await,
            )
            .await
        }
        Op::Reconnect => unreachable!("handled by the caller"),
    };
    match result {
        Ok(sets) => Ok(Outcome::Sets(sets)),
        Err(e) => match server_code(&e) {
            Some(code) => Ok(Outcome::Error(code)),
            None => Err(format!("{op:?}: {e}")),
        },
    }
}

pub async fn collect<P: mysql_async::prelude::Protocol>(
    r: mysql_async::Result<mysql_async::QueryResult<'_, '_, P>>,
) -> mysql_async::Result<Vec<Set>> {
    let mut r = r?;
    let mut sets = Vec::new();
    loop {
        let types: Vec<ColumnType> = r.columns_ref().iter().map(|c| c.column_type()).collect();
        let rows: Vec<Row> = r.collect().await?;
        if types.is_empty() {
            sets.push(Set::Ok {
                affected: r.affected_rows(),
                insert_id: r.last_insert_id(),
            });
        } else {
            sets.push(Set::Rows(
                types,
                rows.into_iter().map(Row::unwrap).collect(),
            ));
        }
        if r.is_empty() {
            return Ok(sets);
        }
    }
}

/// An outcome for a failure message, values as text.
pub fn show(o: &Outcome) -> String {
    let value = |v: &Value| match v {
        Value::Bytes(b) => format!("'{}'", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    };
    match o {
        Outcome::Sets(sets) => sets
            .iter()
            .map(|s| match s {
                Set::Rows(types, rows) => format!(
                    "{types:?} {:?}",
                    rows.iter()
                        .map(|r| r.iter().map(value).collect::<Vec<_>>().join(", "))
                        .collect::<Vec<_>>()
                ),
                Set::Ok {
                    affected,
                    insert_id,
                } => format!("OK({affected}, {insert_id:?})"),
            })
            .collect::<Vec<_>>()
            .join(" / "),
        other => format!("{other:?}"),
    }
}

/// Runs the schedule on connections from `connect`, each client on its own
/// table (`app.{prefix}_{client}`).
pub async fn play<F, Fut>(schedule: &[(usize, Op)], prefix: &str, connect: F) -> Vec<Outcome>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Conn>,
{
    play_with(schedule, prefix, connect, async |_| {}).await
}

/// Like `play`, calling `before(i)` before step `i` (with every client's
/// connection open and idle): where a test changes something under the
/// sessions, e.g. the cluster's roles.
pub async fn play_with<F, Fut>(
    schedule: &[(usize, Op)],
    prefix: &str,
    connect: F,
    mut before: impl AsyncFnMut(usize),
) -> Vec<Outcome>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Conn>,
{
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(Some(connect().await));
    }
    let mut out = Vec::new();
    for (i, (c, op)) in schedule.iter().enumerate() {
        before(i).await;
        let table = format!("app.{prefix}_{c}");
        if let Op::Reconnect = op {
            if let Some(old) = conns[*c].take() {
                let _ = old.disconnect().await;
            }
            conns[*c] = Some(connect().await);
            out.push(Outcome::Reconnected);
            continue;
        }
        let conn = conns[*c].as_mut().expect("connected");
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), run(conn, op, &table))
            .await
            .unwrap_or_else(|_| Err(format!("{op:?}: no reply in 20 s")));
        match got {
            Ok(o) => out.push(o),
            Err(e) => panic!(
                "{prefix} step {i}, client {c}: {e}\n  after:\n{}",
                history(&schedule[..i], *c)
            ),
        }
    }
    for c in conns.into_iter().flatten() {
        let _ = c.disconnect().await;
    }
    out
}

pub fn seeds() -> Vec<u64> {
    match std::env::var("CAUSEWAY_DIFF_SEEDS") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => SEEDS.to_vec(),
    }
}

pub fn steps() -> usize {
    std::env::var("CAUSEWAY_DIFF_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STEPS)
}

/// Whether the last step is a `FOUND_ROWS()` that does not directly follow
/// its client's own `SQL_CALC_FOUND_ROWS` read. With a pool such a
/// `FOUND_ROWS()` reads the backend connection's own count, which is
/// documented as unsupported (docs/pools.md, "What remains unsupported"),
/// so pooled modes do not compare it.
pub fn bare_found_rows(steps: &[(usize, Op)]) -> bool {
    let Some(((c, Op::Sql(last)), before)) = steps.split_last() else {
        return false;
    };
    if last != "SELECT FOUND_ROWS()" {
        return false;
    }
    let previous = before.iter().rev().find(|(cc, _)| cc == c);
    !matches!(previous, Some((_, Op::Sql(p))) if p.contains("SQL_CALC_FOUND_ROWS"))
}

/// Each client's first step whose outcome differs between `want` (direct)
/// and `got` (through Causeway), with the client's 20 steps before it;
/// steps for which `skip(i)` holds are not compared.
pub fn differences(
    seed: u64,
    schedule: &[(usize, Op)],
    want: &[Outcome],
    got: &[Outcome],
    skip: impl Fn(usize) -> bool,
) -> Vec<String> {
    let mut differ = Vec::new();
    let mut seen = [false; CLIENTS];
    for (i, ((c, op), (w, g))) in schedule.iter().zip(want.iter().zip(got)).enumerate() {
        if w == g || seen[*c] || skip(i) {
            continue;
        }
        seen[*c] = true;
        differ.push(format!(
            "seed {seed}, step {i}, client {c}: {op:?}\n  direct:   {}\n  causeway: {}\n  after:\n{}",
            show(w),
            show(g),
            history(&schedule[..i], *c)
        ));
    }
    if want.len() != got.len() {
        differ.push(format!(
            "seed {seed}: {} outcomes direct, {} through Causeway",
            want.len(),
            got.len()
        ));
    }
    differ
}

/// Client `c`'s last 20 steps in `steps`, one a line.
fn history(steps: &[(usize, Op)], c: usize) -> String {
    let mut mine: Vec<String> = steps
        .iter()
        .filter(|(cc, _)| *cc == c)
        .rev()
        .take(20)
        .map(|(_, o)| format!("    {o:?}"))
        .collect();
    mine.reverse();
    mine.join("\n")
}
