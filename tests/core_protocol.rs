//! The core promise: through Causeway a client can do everything it could
//! on a direct connection to the primary. Real MariaDB, real clients.

mod common;

use common::Env;
use mysql_async::prelude::*;
use mysql_async::{Row, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_queries_with_common_types_and_nulls() {
    let env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop(
        "CREATE TABLE types (
            id INT PRIMARY KEY, ti TINYINT, si SMALLINT, bi BIGINT UNSIGNED, fl FLOAT, db DOUBLE,
            de DECIMAL(12,3), ch CHAR(3), vc VARCHAR(50), tx TEXT, bl BLOB, bt BIT(8),
            dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP NULL, yr YEAR, en ENUM('a','b'),
            js JSON) DEFAULT CHARSET=utf8mb4",
    )
    .await
    .unwrap();
    c.exec_drop(
        "INSERT INTO types VALUES (?,?,?,?,?,?,?,?,?,?,?,b'10100101',?,?,?,?,?,?,?)",
        vec![
            Value::from(1),
            Value::from(-5i8),
            Value::from(-300i16),
            Value::from(18_446_744_073_709_551_615u64),
            Value::from(1.5f32),
            Value::from(-2.25f64),
            Value::from("123456789.125"),
            Value::from("abc"),
            Value::from("héllo ✓"),
            Value::from("long text"),
            Value::from(vec![0u8, 1, 2, 255]),
            Value::from("2024-02-29"),
            Value::from("12:34:56.789"),
            Value::from("2024-02-29 23:59:58.123456"),
            Value::from("2024-01-01 00:00:00"),
            Value::from(2024),
            Value::from("b"),
            Value::from(r#"{"k": [1, 2]}"#),
        ],
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO types (id) VALUES (2)")
        .await
        .unwrap();

    let select = "SELECT id, ti, si, bi, fl, db, de, ch, vc, tx, bl, bt, dt, tm, dtm, ts, yr, en, js FROM types ORDER BY id";
    // Text protocol.
    let text: Vec<Row> = c.query(select).await.unwrap();
    // Binary protocol (prepared).
    let bin: Vec<Row> = c.exec(select, ()).await.unwrap();
    assert_eq!(text.len(), 2);
    assert_eq!(bin.len(), 2);
    for rows in [&text, &bin] {
        let r = &rows[0];
        assert_eq!(r.get::<i32, _>(0), Some(1));
        assert_eq!(r.get::<i8, _>(1), Some(-5));
        assert_eq!(r.get::<i16, _>(2), Some(-300));
        assert_eq!(r.get::<u64, _>(3), Some(u64::MAX));
        assert_eq!(r.get::<f32, _>(4), Some(1.5));
        assert_eq!(r.get::<f64, _>(5), Some(-2.25));
        assert_eq!(r.get::<String, _>(6).as_deref(), Some("123456789.125"));
        assert_eq!(r.get::<String, _>(7).as_deref(), Some("abc"));
        assert_eq!(r.get::<String, _>(8).as_deref(), Some("héllo ✓"));
        assert_eq!(r.get::<String, _>(9).as_deref(), Some("long text"));
        assert_eq!(r.get::<Vec<u8>, _>(10), Some(vec![0u8, 1, 2, 255]));
        assert_eq!(r.get::<Vec<u8>, _>(11), Some(vec![0b1010_0101]));
        assert_eq!(r.get::<String, _>(17).as_deref(), Some("b"));
        // Every column of the second row except the key is NULL.
        let n = &rows[1];
        for i in 1..19 {
            assert_eq!(
                n.as_ref(i),
                Some(&Value::NULL),
                "column {i} of the NULL row"
            );
        }
    }
    // Dates and times compare equal across both protocols.
    for i in 12..17 {
        let t: Option<String> = text[0].get::<Option<String>, _>(i).flatten();
        let b: mysql_async::Value = bin[0].as_ref(i).unwrap().clone();
        assert!(t.is_some(), "column {i} text");
        assert_ne!(b, Value::NULL, "column {i} binary");
    }
    let dtm: String = text[0].get(14).unwrap();
    assert_eq!(dtm, "2024-02-29 23:59:58.123456");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statements_return_every_result_set() {
    let env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE m (a INT); INSERT INTO m VALUES (1),(2)")
        .await
        .unwrap();
    let mut result = c
        .query_iter("SELECT a FROM m ORDER BY a; SELECT 'x', 'y'")
        .await
        .unwrap();
    let first: Vec<Row> = result.collect().await.unwrap();
    let second: Vec<Row> = result.collect().await.unwrap();
    assert!(result.is_empty());
    drop(result);
    assert_eq!(
        first
            .iter()
            .map(|r| r.get::<i32, _>(0).unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(second[0].get::<String, _>(1).as_deref(), Some("y"));
    let n: Option<i64> = c.query_first("SELECT SUM(a) FROM m").await.unwrap();
    assert_eq!(n, Some(3));

    // Byte for byte what a direct connection gets, for a mix of OK results
    // and result sets, with and without CLIENT_DEPRECATE_EOF.
    use causeway::protocol::consts::cap;
    use causeway::protocol::reply::Expect;
    let sql = b"\x03CREATE TEMPORARY TABLE tm (a INT); INSERT INTO tm VALUES (1),(2); SELECT a FROM tm ORDER BY a; SELECT 'x', 'y'; UPDATE tm SET a = a + 10; SELECT COUNT(*) FROM tm";
    for extra in [0, cap::DEPRECATE_EOF] {
        let caps = extra | cap::MULTI_STATEMENTS | cap::MULTI_RESULTS;
        let mut via =
            common::raw::Raw::login(env.proxy, "app", "app-secret", Some("app"), caps).await;
        let mut direct = common::raw::Raw::login(
            env.cluster.primary.addr,
            "app",
            "app-secret",
            Some("app"),
            caps,
        )
        .await;
        direct.command(&sql[..]).await;
        let want = direct.reply(Expect::ResultSets).await;
        via.command(&sql[..]).await;
        let got = via.reply(Expect::ResultSets).await;
        let shape = |v: &Vec<bytes::Bytes>| {
            v.iter()
                .map(|p| format!("{:02x}/{}", p.first().copied().unwrap_or(0), p.len()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            got.len(),
            want.len(),
            "same number of packets (caps {caps:x})\nvia:    {}\ndirect: {}",
            shape(&got),
            shape(&want)
        );
        assert!(got.len() >= 14, "every result set arrived: {}", got.len());
        for (g, w) in got.iter().zip(&want) {
            if w.first() == Some(&0xFE) || w.first() == Some(&0) && w.len() > 7 {
                continue; // terminators differ in affected rows / tracked GTIDs
            }
            assert_eq!(g, w);
        }
    }
    // The CLI sees every result set too.
    let out = env
        .cli(
            "app",
            "app-secret",
            Some("app"),
            &["-e", "SELECT 1; SELECT 2; SELECT COUNT(*) FROM m"],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n2\n");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mib_blob_round_trip_both_directions() {
    let env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    let blob: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // Text protocol: the statement itself is larger than 16 MiB.
    let hex: String = blob[..(9 << 20)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.query_drop(format!("INSERT INTO big VALUES (1, x'{hex}')"))
        .await
        .unwrap();
    // Binary protocol parameter.
    c.exec_drop("INSERT INTO big VALUES (2, ?)", (blob.clone(),))
        .await
        .unwrap();
    let got: Option<Vec<u8>> = c
        .query_first("SELECT b FROM big WHERE id = 2")
        .await
        .unwrap();
    assert_eq!(got.as_deref().map(<[u8]>::len), Some(blob.len()));
    assert!(
        got.as_deref() == Some(&blob[..]),
        "20 MiB blob differs after the round trip"
    );
    let got: Option<Vec<u8>> = c
        .exec_first("SELECT b FROM big WHERE id = ?", (1,))
        .await
        .unwrap();
    assert!(got.as_deref() == Some(&blob[..(9 << 20)]));
    // Verified on the primary itself.
    let md5 = env
        .primary_sql("SELECT MD5(b) = MD5(SUBSTRING(b, 1)), LENGTH(b) FROM app.big WHERE id = 2")
        .await;
    assert_eq!(md5.trim(), format!("1\t{}", 20u32 << 20));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile_is_relayed_to_the_client() {
    let env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE li (a INT, b VARCHAR(10))")
        .await
        .unwrap();
    let file = env.cluster.dir().join("rows.tsv");
    let mut content = String::new();
    for i in 0..5000 {
        content.push_str(&format!("{i}\tv{i}\n"));
    }
    std::fs::write(&file, content).unwrap();
    let sql = format!("LOAD DATA LOCAL INFILE '{}' INTO TABLE li", file.display());
    let out = env
        .cli(
            "app",
            "app-secret",
            Some("app"),
            &["--local-infile=1", "-e", &sql],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: Option<(i64, i64)> = c
        .query_first("SELECT COUNT(*), SUM(a) FROM li")
        .await
        .unwrap();
    assert_eq!(n, Some((5000, (0..5000).sum())));
    // A refused file (client without local-infile) is a clean error, and the
    // session stays usable.
    let out = env
        .cli(
            "app",
            "app-secret",
            Some("app"),
            &["--local-infile=0", "-e", &format!("{sql}; SELECT 7")],
        )
        .await;
    assert!(!out.status.success());
    let still: Option<i64> = c.query_first("SELECT COUNT(*) FROM li").await.unwrap();
    assert_eq!(still, Some(5000));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_rollback_reach_the_primary() {
    let env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE tx (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    let mut t = c.start_transaction(Default::default()).await.unwrap();
    t.exec_drop("INSERT INTO tx VALUES (?, ?)", (1, 10))
        .await
        .unwrap();
    t.query_drop("INSERT INTO tx VALUES (2, 20)").await.unwrap();
    // Not visible outside the transaction yet.
    assert_eq!(
        env.primary_sql("SELECT COUNT(*) FROM app.tx").await.trim(),
        "0"
    );
    t.commit().await.unwrap();
    assert_eq!(
        env.primary_sql("SELECT SUM(v) FROM app.tx").await.trim(),
        "30"
    );

    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE tx SET v = 0").await.unwrap();
    let inside: Option<i64> = c.query_first("SELECT SUM(v) FROM tx").await.unwrap();
    assert_eq!(inside, Some(0));
    c.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(
        env.primary_sql("SELECT SUM(v) FROM app.tx").await.trim(),
        "30"
    );
    let after: Option<i64> = c.query_first("SELECT SUM(v) FROM tx").await.unwrap();
    assert_eq!(after, Some(30));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_and_reset_connection() {
    let env = Env::start(0).await;
    env.primary_sql(
        "CREATE USER 'other'@'%' IDENTIFIED BY 'other-pw'; GRANT SELECT ON app.* TO 'other'@'%';",
    )
    .await;
    let mut c = env.conn().await;
    c.query_drop("SET @v = 42").await.unwrap();
    c.query_drop("CREATE TEMPORARY TABLE tmp (a INT)")
        .await
        .unwrap();
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("app@%"));

    // COM_RESET_CONNECTION: user variables and temporary tables are gone,
    // the user and database stay.
    c.reset().await.unwrap();
    let v: Option<Option<i64>> = c.query_first("SELECT @v").await.unwrap();
    assert_eq!(v, Some(None));
    assert!(c.query_drop("SELECT * FROM tmp").await.is_err());
    let db: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some("app"));

    // COM_CHANGE_USER to another account.
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("other".into()))
            .with_pass(Some("other-pw".into()))
            .with_db_name(Some("app".into())),
    )
    .await
    .unwrap();
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("other@%"));
    // The new account's grants apply: it may not write.
    let e = c.query_drop("CREATE TABLE nope (a INT)").await.unwrap_err();
    assert!(
        e.to_string().contains("1142") || e.to_string().contains("denied"),
        "{e}"
    );

    // A wrong password on change user is refused with 1045.
    let mut c2 = env.conn().await;
    let e = c2
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some("other".into()))
                .with_pass(Some("wrong".into())),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("1045"), "{e}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_that_probe_the_socket_stay_on_causeway() {
    let env = Env::start(0).await;
    // mysql_async's default (prefer_socket) asks for @@socket and would
    // switch to the primary's Unix socket if it got one.
    let url = format!(
        "mysql://{}:{}@{}/app",
        env.cluster.app_user, env.cluster.app_password, env.proxy
    );
    let mut c = mysql_async::Conn::from_url(url).await.unwrap();
    let sock: Option<Option<String>> = c.query_first("SELECT @@socket").await.unwrap();
    assert_eq!(sock, Some(None));
    let status = common::http_get(env.admin, "/status").await;
    assert!(status.contains("\"sessions\":1"), "{status}");
    drop(c);
    env.stop().await;
}
