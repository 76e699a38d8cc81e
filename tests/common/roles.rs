//! Role changes done by hand, as a DBA or an external tool does them, and
//! what tests look at while they happen.

use std::time::{Duration, Instant};

use causeway::playground::{Server, REPL_PASSWORD, REPL_USER};

use super::{http_get, Env};

pub async fn sql(env: &Env, s: &Server, q: &str) -> String {
    env.cluster
        .root_sql(s, q)
        .await
        .unwrap_or_else(|e| panic!("{} on {}: {e}", q, s.name))
}

/// The servers as (old primary, new primary, the others).
pub fn roles(env: &Env, to: usize) -> (&Server, &Server, Vec<&Server>) {
    let old = &env.cluster.primary;
    let new = &env.cluster.replicas[to];
    let others = env
        .cluster
        .replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != to)
        .map(|(_, s)| s)
        .collect();
    (old, new, others)
}

pub fn change_master(to: &Server) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', \
         MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos",
        to.addr.port()
    )
}

/// A switchover as a DBA does it by hand: the old primary read-only, the
/// target caught up and promoted, everyone else re-pointed. Returns when
/// the target became writable.
pub async fn switch_by_hand(env: &Env, to: usize) -> Instant {
    let (old, new, others) = roles(env, to);
    sql(env, old, "SET GLOBAL read_only = 1").await;
    let pos = sql(env, old, "SELECT @@gtid_binlog_pos").await;
    let pos = pos.trim();
    let waited = sql(env, new, &format!("SELECT MASTER_GTID_WAIT('{pos}', 30)")).await;
    assert_eq!(waited.trim(), "0", "target caught up");
    sql(
        env,
        new,
        "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0",
    )
    .await;
    let writable = Instant::now();
    for r in others {
        sql(
            env,
            r,
            &format!("STOP SLAVE; {}; START SLAVE", change_master(new)),
        )
        .await;
    }
    sql(
        env,
        old,
        &format!(
            "SET GLOBAL gtid_slave_pos = '{pos}'; {}; START SLAVE",
            change_master(new)
        ),
    )
    .await;
    writable
}

/// The primary as Causeway's /status shows it (the name, or null).
pub async fn status_primary(env: &Env) -> serde_json::Value {
    let text = http_get(env.admin, "/status").await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let topo = &v["topology"];
    match topo["primary"].as_u64() {
        Some(i) => topo["backends"][i as usize]["name"].clone(),
        None => serde_json::Value::Null,
    }
}

pub async fn until(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// `POST /switchover?to=NAME` on the admin endpoint: status and JSON body.
pub async fn post_switchover(env: &Env, to: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(env.admin).await.unwrap();
    s.write_all(format!("POST /switchover?to={to} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON ({e}): {out}"));
    (status, v)
}
