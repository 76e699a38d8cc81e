//! Statements are the client's bytes: names of temporary tables in any
//! character set and after any comment, user variables and rewritten
//! statements holding latin1 bytes, `CONNECTION_ID()` as the session's own
//! id, and error messages that echo client input cut as the server cuts
//! them. Each compared with a direct connection to the primary where the
//! server has an answer, on a cluster whose reads go to two replicas.

mod common;

use common::{routable, server_id, Env, SPLIT};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

/// `[pool]` with the transaction-level pool on for everyone.
const TXN_POOL: &str = "\n[pool]\ntransaction_pool = true\n";

async fn start(pooled: bool) -> Env {
    let env = if pooled {
        Env::start_with_policy_and(2, SPLIT, |t| t.push_str(TXN_POOL)).await
    } else {
        Env::start_with_policy(2, SPLIT).await
    };
    routable(&env).await;
    env
}

async fn count(c: &mut Conn, sql: &[u8]) -> Result<i64, mysql_async::Error> {
    let n: Option<i64> = c.query_first(sql).await?;
    Ok(n.unwrap_or(-1))
}

/// Defects 1 and 2: a UTF-8 name panicked the session task; a comment
/// before `CREATE TEMPORARY TABLE` recorded the comment's word, so reads
/// of the table went to a replica (1146).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_are_named_by_the_classifier() {
    let env = start(false).await;
    let mut c = env.conn().await;
    for (create, name) in [
        ("CREATE TEMPORARY TABLE ééééééé (a INT)", "ééééééé"),
        ("/* mytable */ CREATE TEMPORARY TABLE t (a INT)", "t"),
        (
            "CREATE /* table x */ TEMPORARY TABLE IF NOT EXISTS app.`Quoted``Name` (a INT)",
            "`Quoted``Name`",
        ),
        (
            "CREATE OR REPLACE TEMPORARY TABLE `dé jà` (a INT)",
            "`dé jà`",
        ),
    ] {
        c.query_drop(create).await.unwrap();
        c.query_drop(format!("INSERT INTO {name} VALUES (1), (2)"))
            .await
            .unwrap();
        for _ in 0..6 {
            let sql = format!("SELECT COUNT(*) FROM {name}");
            assert_eq!(count(&mut c, sql.as_bytes()).await.unwrap(), 2, "{create}");
        }
    }
    // Other reads still go to the replicas; dropped tables are forgotten.
    assert_ne!(server_id(&mut c, "SELECT @@server_id").await, 1);
    c.query_drop("DROP TEMPORARY TABLE ééééééé, t, `Quoted``Name`, `dé jà`")
        .await
        .unwrap();
    let e = c.query_drop("SELECT * FROM t").await.unwrap_err();
    assert!(e.to_string().contains("1146"), "{e}");
    env.stop().await;
}

/// Defect 17: a name in a multi-byte character set that is not UTF-8
/// (after `SET NAMES ujis` / `sjis`) lost the connection. The same
/// statements through Causeway and directly give the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_named_in_ujis_and_sjis_work_as_directly() {
    let env = start(false).await;
    // 日本語テーブル, and 表 (its sjis form ends in 0x5C, a backslash).
    let names: [(&str, Vec<u8>); 4] = [
        (
            "ujis",
            b"\xc6\xfc\xcb\xdc\xb8\xec\xa5\xc6\xa1\xbc\xa5\xd6\xa5\xeb".to_vec(),
        ),
        (
            "sjis",
            b"\x93\xfa\x96\x7b\x8c\xea\x83\x65\x81\x5b\x83\x75\x83\x8b".to_vec(),
        ),
        ("sjis", b"`\x95\x5c`".to_vec()),
        ("ujis", b"`\xc9\xbd x`".to_vec()),
    ];
    for (charset, name) in names {
        let mut via = env.conn().await;
        let mut direct = env.direct_primary().await;
        for c in [&mut via, &mut direct] {
            c.query_drop(format!("SET NAMES {charset}")).await.unwrap();
            let sql = |parts: &[&[u8]]| parts.concat();
            c.query_drop(sql(&[b"CREATE TEMPORARY TABLE ", &name, b" (a INT)"]).as_slice())
                .await
                .unwrap();
            c.query_drop(sql(&[b"INSERT INTO ", &name, b" VALUES (1), (2), (3)"]).as_slice())
                .await
                .unwrap();
            for _ in 0..6 {
                let n = count(c, &sql(&[b"SELECT COUNT(*) FROM ", &name])).await;
                assert_eq!(n.unwrap(), 3, "{charset} {name:x?}");
            }
            c.query_drop(sql(&[b"DROP TEMPORARY TABLE ", &name]).as_slice())
                .await
                .unwrap();
            let gone = count(c, &sql(&[b"SELECT COUNT(*) FROM ", &name])).await;
            assert!(gone.unwrap_err().to_string().contains("1146"));
            assert_eq!(count(c, b"SELECT 7").await.unwrap(), 7, "still connected");
        }
    }
    env.stop().await;
}

/// Bytes from 0x80 to 0xFF (latin1 letters and signs, invalid as UTF-8).
fn latin1_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0x80u8..=0xff).step_by(7).collect();
    v.extend_from_slice(b"\xe9\xff\x80");
    v
}

/// One row of `sql` as bytes per column.
async fn row(c: &mut Conn, sql: &[u8]) -> Vec<Option<Vec<u8>>> {
    let r: Row = c.query_first(sql).await.unwrap().unwrap();
    (0..r.len())
        .map(|i| r.get::<Option<Vec<u8>>, _>(i).flatten())
        .collect()
}

/// Defect 3: latin1 bytes in a replayed `SET @v` and in a statement
/// Causeway rewrites (`ROW_COUNT()`) arrived changed on the other backend.
async fn latin1_case(pooled: bool) {
    let env = start(pooled).await;
    let bytes = latin1_bytes();
    let mut via = env.conn().await;
    let mut direct = env.direct_primary().await;
    let set = [b"SET @v = '".as_slice(), &bytes, b"'"].concat();
    let rewritten = [b"SELECT HEX('".as_slice(), &bytes, b"'), ROW_COUNT()"].concat();
    let mut want = Vec::new();
    for c in [&mut direct, &mut via] {
        c.query_drop("SET NAMES latin1").await.unwrap();
        c.query_drop(set.as_slice()).await.unwrap();
        want.push((
            row(c, b"SELECT @v, HEX(@v)").await,
            row(c, &rewritten).await,
        ));
    }
    assert_eq!(
        want[0].0.get(1),
        want[1].0.get(1),
        "HEX(@v), pooled={pooled}"
    );
    assert_eq!(want[0].0.first(), want[1].0.first(), "@v, pooled={pooled}");
    assert_eq!(want[0].1, want[1].1, "rewritten statement, pooled={pooled}");
    // The variable was read on a replica: it was replayed there.
    let sid = server_id(&mut via, "SELECT @@server_id").await;
    let r = row(&mut via, b"SELECT HEX(@v), @@server_id").await;
    assert_eq!(r.first(), want[0].0.get(1));
    assert_ne!(sid, 1, "reads go to replicas");
    assert_ne!(r.get(1), Some(&Some(b"1".to_vec())), "read on a replica");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_bytes_are_replayed_and_rewritten_as_sent() {
    latin1_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_bytes_are_replayed_and_rewritten_as_sent_with_the_transaction_pool() {
    latin1_case(true).await;
}

/// `CONNECTION_ID()` is the handshake's id on every backend, in
/// expressions, in prepared statements (binary and text), never inside a
/// string; the column is named and typed as the server's.
async fn connection_id_case(pooled: bool) {
    let env = start(pooled).await;
    let mut c = env.conn().await;
    let id = u64::from(c.id());
    let mut servers = std::collections::HashSet::new();
    for _ in 0..12 {
        let (got, plus, sid): (u64, u64, u32) = c
            .query_first("SELECT CONNECTION_ID(), connection_id () + 1, @@server_id")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got, plus), (id, id + 1), "pooled={pooled}");
        servers.insert(sid);
        let prepared: Option<u64> = c.exec_first("SELECT CONNECTION_ID()", ()).await.unwrap();
        assert_eq!(prepared, Some(id));
    }
    assert!(
        servers.iter().all(|&s| s != 1),
        "reads ran on replicas: {servers:?}"
    );
    let text: Option<String> = c.query_first("SELECT 'CONNECTION_ID()'").await.unwrap();
    assert_eq!(text.as_deref(), Some("CONNECTION_ID()"));
    c.query_drop("PREPARE s FROM 'SELECT CONNECTION_ID()'")
        .await
        .unwrap();
    let executed: Option<u64> = c.query_first("EXECUTE s").await.unwrap();
    assert_eq!(executed, Some(id));
    c.query_drop("DEALLOCATE PREPARE s").await.unwrap();
    // The column looks as the server's own.
    let res = c.query_iter("SELECT CONNECTION_ID()").await.unwrap();
    let cols = res.columns().unwrap();
    let col = &cols[0];
    assert_eq!(col.name_str(), "CONNECTION_ID()");
    assert_eq!(col.column_length(), 10);
    assert!(col
        .flags()
        .contains(mysql_async::consts::ColumnFlags::UNSIGNED_FLAG));
    drop(res);
    // A second session has its own id.
    let mut other = env.conn().await;
    let theirs: Option<u64> = other.query_first("SELECT CONNECTION_ID()").await.unwrap();
    assert_eq!(theirs, Some(u64::from(other.id())));
    assert_ne!(theirs, Some(id));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_is_the_handshake_id() {
    connection_id_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_id_is_the_handshake_id_with_the_transaction_pool() {
    connection_id_case(true).await;
}

/// Defect 18: a 1 MB hint value came back whole in the 1231 message. It is
/// cut as the server cuts `SET sql_mode = '<1 MB>'`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_hint_values_are_cut_as_the_server_cuts_them() {
    let env = start(false).await;
    let value = "x".repeat(1 << 20);
    let mut direct = env.direct_primary().await;
    let server = direct
        .query_drop(format!("SET sql_mode = '{value}'"))
        .await
        .unwrap_err();
    let mut c = env.conn().await;
    let ours = c
        .query_drop(format!("/* causeway: after={value} */ SELECT 1"))
        .await
        .unwrap_err();
    let (mysql_async::Error::Server(s), mysql_async::Error::Server(o)) = (server, ours) else {
        panic!("server errors expected");
    };
    assert_eq!((o.code, s.code), (1231, 1231));
    let tail = |m: &str| m.rsplit("value of ").next().unwrap_or("").to_string();
    assert_eq!(tail(&o.message), tail(&s.message));
    assert!(o.message.len() < 300, "{}", o.message.len());
    assert_eq!(count(&mut c, b"SELECT 3").await.unwrap(), 3);
    env.stop().await;
}
