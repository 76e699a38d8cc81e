//! The compressed protocol between clients and Causeway (`CLIENT_COMPRESS`,
//! zlib), with real clients: the `mariadb` CLI with `--compress`,
//! mysql_async with compression on (text and binary protocol, replies
//! larger than one compressed packet, statements that fail), and sysbench
//! with `--mysql-compression=on`. What a compressed client sees through
//! Causeway is what it sees from the server.

mod common;

use std::process::Output;

use common::Env;
use mysql_async::prelude::*;
use mysql_async::{Compression, Conn, OptsBuilder};

/// The `mariadb` CLI, compressed, at `port`, running `sql` in batch mode.
async fn cli(env: &Env, port: u16, sql: &str) -> Output {
    tokio::process::Command::new(env.cluster.mariadb_cli())
        .arg("--no-defaults")
        .arg("--compress")
        .args(["-h", "127.0.0.1", "-P", &port.to_string()])
        .arg(format!("-u{}", env.cluster.app_user))
        .arg(format!("-p{}", env.cluster.app_password))
        .args(["--batch", "-e", sql, "app"])
        .output()
        .await
        .expect("the mariadb CLI runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn compressed(o: OptsBuilder) -> OptsBuilder {
    o.compression(Some(Compression::default()))
}

fn direct_opts(env: &Env) -> OptsBuilder {
    let p = env.cluster.primary.addr;
    OptsBuilder::default()
        .ip_or_hostname(p.ip().to_string())
        .tcp_port(p.port())
        .user(Some(env.cluster.app_user.clone()))
        .pass(Some(env.cluster.app_password.clone()))
        .db_name(Some("app"))
        .prefer_socket(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_cli_with_compress_gets_what_it_gets_directly() {
    let env = Env::start(1).await;
    env.primary_sql(
        "USE app; CREATE TABLE z (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO z SELECT seq, REPEAT(CONCAT('row ', seq, ' '), 40) FROM seq_1_to_3000;",
    )
    .await;
    env.cluster
        .wait_replicas_caught_up(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    // A result of about 1.5 MB (many compressed packets, read from the
    // replica), a large single value, a multi-statement, an error.
    let sql = "SELECT id, v FROM z ORDER BY id; \
               SELECT LENGTH(REPEAT('ab', 3000000)), MD5(REPEAT('ab', 3000000)); \
               SELECT 1; SELECT * FROM no_such_table";
    let direct = cli(&env, env.cluster.primary.addr.port(), sql).await;
    let proxied = cli(&env, env.proxy.port(), sql).await;
    assert!(
        !direct.status.success(),
        "the last statement fails directly"
    );
    assert!(
        text(&direct.stdout).lines().count() > 3000,
        "{}",
        text(&direct.stderr)
    );
    assert_eq!(text(&proxied.stdout), text(&direct.stdout));
    assert_eq!(text(&proxied.stderr), text(&direct.stderr));
    assert!(text(&proxied.stderr).contains("ERROR 1146 (42S02)"));

    // The CLI's own view: the connection is compressed.
    let status = cli(&env, env.proxy.port(), "status").await;
    let out = text(&status.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Protocol:") && l.contains("Compressed")),
        "{out}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_connector_round_trips_large_values_and_errors() {
    let env = Env::start(1).await;
    let mut p = Conn::new(compressed(env.opts())).await.unwrap();
    let mut d = Conn::new(compressed(direct_opts(&env))).await.unwrap();
    p.query_drop("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    // 6 MB that zlib cannot shrink (a pseudo-random sequence) and 6 MB
    // that it shrinks a thousandfold, sent as prepared-statement parameters.
    let noise: Vec<u8> = (0u64..6_000_000)
        .map(|i| {
            (i.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 56) as u8
        })
        .collect();
    let plain = vec![b'z'; 6_000_000];
    for (id, v) in [(1, &noise), (2, &plain)] {
        p.exec_drop("INSERT INTO blobs VALUES (?, ?)", (id, v.clone()))
            .await
            .unwrap();
    }
    // Read back in the same session (the primary has it) over both
    // protocols.
    let text_back: Vec<Vec<u8>> = p.query("SELECT b FROM blobs ORDER BY id").await.unwrap();
    assert!(text_back[0] == noise && text_back[1] == plain);
    let bin_back: Option<Vec<u8>> = p
        .exec_first("SELECT b FROM blobs WHERE id = ?", (1,))
        .await
        .unwrap();
    assert!(bin_back.as_deref() == Some(&noise[..]));

    // Errors and warnings as the server gives them to a compressed client.
    for sql in [
        "SELECT * FROM no_such_table",
        "SELECT 1 +",
        "SELECT CAST('x' AS INT)",
    ] {
        let via = p.query_drop(sql).await.map(|_| p.get_warnings());
        let direct = d.query_drop(sql).await.map(|_| d.get_warnings());
        match (via, direct) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{sql}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{sql}"),
            (a, b) => panic!("{sql}: through Causeway {a:?}, directly {b:?}"),
        }
    }
    // The session goes on after the errors, and many small statements in a
    // row keep the compressed sequence ids in step.
    for i in 0..200u32 {
        let v: u32 = p
            .query_first(format!("SELECT {i} + 1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v, i + 1);
    }
    drop(p);
    drop(d);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_status_says_the_connection_is_compressed_as_directly() {
    let env = Env::start(1).await;
    for zlib in [true, false] {
        let z = |o: OptsBuilder| if zlib { compressed(o) } else { o };
        let mut p = Conn::new(z(env.opts())).await.unwrap();
        let mut d = Conn::new(z(direct_opts(&env))).await.unwrap();
        for sql in [
            "SHOW STATUS LIKE 'Compression'",
            "SHOW SESSION STATUS LIKE 'Compr%'",
            "SHOW STATUS WHERE Variable_name IN ('Compression', 'Uptime_since_flush_status')",
            "SHOW GLOBAL STATUS LIKE 'Compression'",
        ] {
            let via: Vec<(String, String)> = p.query(sql).await.unwrap();
            let direct: Vec<(String, String)> = d.query(sql).await.unwrap();
            let row = |rows: &[(String, String)]| {
                rows.iter()
                    .find(|(n, _)| n == "Compression")
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(row(&via), row(&direct), "compressed: {zlib}, {sql}");
            assert_eq!(via.len(), direct.len(), "{sql}");
        }
        let on: (String, String) = p
            .query_first("SHOW STATUS LIKE 'Compression'")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(on.1, if zlib { "ON" } else { "OFF" });
    }
    env.stop().await;
}

/// The figure after `label:` on sysbench's summary line.
fn figure(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_with_compression_has_zero_errors() {
    let env = Env::start(1).await;
    // Workloads whose own transactions cannot deadlock one another (an
    // InnoDB deadlock is an error sysbench counts, with or without Causeway).
    let run = |port: u16, args: &'static [&'static str]| {
        tokio::process::Command::new("sysbench")
            .arg("--mysql-host=127.0.0.1")
            .arg(format!("--mysql-port={port}"))
            .arg(format!("--mysql-user={}", env.cluster.app_user))
            .arg(format!("--mysql-password={}", env.cluster.app_password))
            .args(["--mysql-db=sbtest", "--tables=2", "--table-size=5000"])
            .args(args)
            .output()
    };
    let prep = run(
        env.cluster.primary.addr.port(),
        &["oltp_read_write", "prepare"],
    )
    .await
    .unwrap();
    assert!(prep.status.success(), "{}", text(&prep.stderr));
    for args in [
        &[
            "oltp_read_only",
            "--mysql-compression=on",
            "--threads=4",
            "--time=4",
            "--db-ps-mode=auto",
            "run",
        ][..],
        &[
            "oltp_read_only",
            "--mysql-compression=on",
            "--threads=4",
            "--time=4",
            "--db-ps-mode=disable",
            "run",
        ][..],
        &[
            "oltp_insert",
            "--mysql-compression=on",
            "--threads=4",
            "--time=3",
            "--db-ps-mode=auto",
            "run",
        ][..],
    ] {
        let out = run(env.proxy.port(), args).await.unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success() && !all.contains("FATAL"),
            "{args:?}\n{all}"
        );
        assert_eq!(figure(&all, "ignored errors"), Some(0), "{args:?}\n{all}");
        assert!(figure(&all, "queries:").unwrap_or(0) > 0, "{args:?}\n{all}");
    }
    // sysbench's sessions did use the compressed protocol.
    let metrics = common::http_get(env.admin, "/metrics").await;
    let compressed: f64 = metrics
        .lines()
        .find(|l| l.starts_with("causeway_compressed_sessions_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(compressed >= 12.0, "{metrics}");
    env.stop().await;
}
