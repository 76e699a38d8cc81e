//! Robustness: whatever a client (or a dying backend) does, Causeway answers
//! with an error or a clean close, never hangs, never takes other sessions
//! down with it, and keeps relaying what the server says unchanged.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use causeway::protocol::buf::Reader;
use causeway::protocol::consts::{cap, status};
use causeway::protocol::handshake::{AuthSwitch, Handshake};
use causeway::protocol::packet::{write_packets, Header};
use causeway::protocol::response::{terminator_status, Ok as OkPacket};
use causeway::protocol::stream::PacketStream;
use common::raw::{err_of, Raw};
use common::Env;
use mysql_async::prelude::*;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// No single reply may take longer than this.
const REPLY: Duration = Duration::from_secs(10);

async fn pkt(raw: &mut Raw) -> (Header, Bytes) {
    timeout(REPLY, raw.s.read_packet())
        .await
        .expect("Causeway answers in time")
        .expect("a packet from Causeway")
}

fn expect_err(p: &[u8], code: u16, state: &str) -> String {
    let (c, s, m) = err_of(p).unwrap_or_else(|| panic!("an ERR packet, got {p:02x?}"));
    assert_eq!((c, s.as_str()), (code, state), "ERR {c} ({s}): {m}");
    m
}

fn expect_ok(p: &[u8]) {
    assert_eq!(
        p.first(),
        Some(&0x00),
        "OK packet, got {:?} ({p:02x?})",
        String::from_utf8_lossy(p)
    );
}

/// One result of a command: an OK, an ERR, or a result set.
#[derive(Debug)]
#[allow(dead_code)] // fields are shown in assertion messages
enum Reply {
    Ok,
    Err(u16, String, String),
    Rows {
        columns: Vec<Bytes>,
        rows: Vec<Bytes>,
    },
}

/// Whether `p` ends a row section under the capabilities `caps`.
fn is_terminator(p: &[u8], caps: u32) -> bool {
    p.first() == Some(&0xFE)
        && if caps & cap::DEPRECATE_EOF != 0 {
            p.len() < 0xFF_FFFF
        } else {
            p.len() < 9
        }
}

/// Reads the complete reply to a COM_QUERY / COM_STMT_EXECUTE (without
/// cursor): every result set until one without MORE_RESULTS_EXISTS.
async fn read_results(raw: &mut Raw) -> Vec<Reply> {
    let caps = raw.caps;
    let mut out = Vec::new();
    loop {
        let (_, p) = pkt(raw).await;
        let st = match p[0] {
            0x00 => {
                let ok = OkPacket::decode(&p, caps).expect("OK decodes");
                out.push(Reply::Ok);
                ok.status
            }
            0xFF => {
                let (c, s, m) = err_of(&p).unwrap();
                out.push(Reply::Err(c, s, m));
                return out;
            }
            _ => {
                let n = Reader::new(&p).lenenc_int().expect("column count");
                let mut columns = Vec::new();
                for _ in 0..n {
                    columns.push(pkt(raw).await.1);
                }
                if caps & cap::DEPRECATE_EOF == 0 {
                    let (_, eof) = pkt(raw).await;
                    assert!(
                        is_terminator(&eof, caps),
                        "EOF after column definitions, got {eof:02x?}"
                    );
                }
                let mut rows = Vec::new();
                let st = loop {
                    let (_, r) = pkt(raw).await;
                    if r[0] == 0xFF {
                        let (c, s, m) = err_of(&r).unwrap();
                        out.push(Reply::Err(c, s, m));
                        return out;
                    }
                    if is_terminator(&r, caps) {
                        break terminator_status(&r, caps).expect("terminator decodes");
                    }
                    rows.push(r);
                };
                out.push(Reply::Rows { columns, rows });
                st
            }
        };
        if st & status::MORE_RESULTS_EXISTS == 0 {
            return out;
        }
    }
}

/// Text-protocol row values (lenenc strings; `None` for NULL).
fn text_row(r: &[u8]) -> Vec<Option<String>> {
    let mut rd = Reader::new(r);
    let mut v = Vec::new();
    while !rd.is_empty() {
        if rd.peek() == Some(0xFB) {
            rd.u8();
            v.push(None);
        } else {
            v.push(Some(
                String::from_utf8_lossy(rd.lenenc_bytes().expect("lenenc value")).into_owned(),
            ));
        }
    }
    v
}

/// The single value of a one-row, one-column text result.
async fn scalar(raw: &mut Raw, sql: &str) -> String {
    let mut q = vec![0x03];
    q.extend_from_slice(sql.as_bytes());
    raw.command(&q).await;
    let replies = read_results(raw).await;
    match &replies[..] {
        [Reply::Rows { rows, .. }] if rows.len() == 1 => {
            text_row(&rows[0])[0].clone().unwrap_or_default()
        }
        other => panic!("{sql}: expected one row, got {other:?}"),
    }
}

async fn ping(raw: &mut Raw) {
    raw.command(&[0x0e]).await;
    let (h, p) = pkt(raw).await;
    expect_ok(&p);
    assert_eq!(h.seq, 1);
}

/// The name of a column definition (Protocol::ColumnDefinition41).
fn column_name(def: &[u8]) -> String {
    let mut r = Reader::new(def);
    for _ in 0..4 {
        r.lenenc_bytes().expect("catalog/schema/table/org_table");
    }
    String::from_utf8_lossy(r.lenenc_bytes().expect("name")).into_owned()
}

fn app_opts(env: &Env) -> mysql_async::Opts {
    env.opts().into()
}

/// Checks an independent mysql_async session still works.
async fn still_works(c: &mut mysql_async::Conn, n: i64) {
    let got: Option<i64> = timeout(REPLY, c.query_first(format!("SELECT {n}")))
        .await
        .expect("other client answered in time")
        .expect("other client unaffected");
    assert_eq!(got, Some(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_commands_get_errors_and_the_session_goes_on() {
    let env = Env::start(0).await;
    let mut other = env.conn().await;
    still_works(&mut other, 1).await;
    let mut raw = Raw::login(env.proxy, "app", "app-secret", Some("app"), 0).await;

    // COM_STMT_CLOSE with a 1-byte statement id: ER_MALFORMED_PACKET.
    raw.command(&[0x19, 0x01]).await;
    let (h, p) = pkt(&mut raw).await;
    expect_err(&p, 1835, "08S01");
    assert_eq!(h.seq, 1, "the ERR answers the command (sequence 1)");
    ping(&mut raw).await;

    // COM_STMT_EXECUTE cut short after the statement id.
    raw.command(&[0x17, 1, 0, 0, 0]).await;
    let (_, p) = pkt(&mut raw).await;
    expect_err(&p, 1835, "08S01");
    ping(&mut raw).await;

    // An unknown command byte: ER_UNKNOWN_COM_ERROR.
    raw.command(&[0x99]).await;
    let (h, p) = pkt(&mut raw).await;
    expect_err(&p, 1047, "08S01");
    assert_eq!(h.seq, 1);
    ping(&mut raw).await;

    // COM_BINLOG_DUMP (position 4, flags 0, server id 99, file name): never
    // relayed to the primary, refused the same way.
    let mut dump = vec![0x12];
    dump.extend_from_slice(&4u32.to_le_bytes());
    dump.extend_from_slice(&0u16.to_le_bytes());
    dump.extend_from_slice(&99u32.to_le_bytes());
    dump.extend_from_slice(b"binlog.000001");
    raw.command(&dump).await;
    let (_, p) = pkt(&mut raw).await;
    expect_err(&p, 1047, "08S01");
    ping(&mut raw).await;

    // COM_SHUTDOWN is not relayed either: the primary stays up.
    raw.command(&[0x08, 0x00]).await;
    let (_, p) = pkt(&mut raw).await;
    assert_eq!(p[0], 0xFF, "COM_SHUTDOWN refused, got {p:02x?}");

    // The raw session is still in sync and still runs SQL.
    assert_eq!(scalar(&mut raw, "SELECT 6 * 7").await, "42");
    ping(&mut raw).await;
    // The other client never noticed.
    still_works(&mut other, 2).await;
    drop(other);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_over_max_allowed_packet_is_refused_and_the_connection_closed() {
    let env = Env::start_with(0, |t| {
        *t = t.replacen("[proxy]\n", "[proxy]\nmax_allowed_packet = 100000\n", 1);
        assert!(
            t.contains("max_allowed_packet = 100000"),
            "config edited: {t}"
        );
    })
    .await;
    let mut other = env.conn().await;
    still_works(&mut other, 1).await;

    // Just under the limit: fine.
    let mut raw = Raw::login(env.proxy, "app", "app-secret", Some("app"), 0).await;
    let s = "x".repeat(90_000);
    assert_eq!(
        scalar(&mut raw, &format!("SELECT LENGTH('{s}')")).await,
        "90000"
    );

    // 200 kB: ERR 1153 (ER_NET_PACKET_TOO_LARGE), then the connection closes.
    let big = format!("\x03SELECT '{}'", "y".repeat(200_000));
    let mut out = BytesMut::new();
    write_packets(&mut out, 0, big.as_bytes());
    // Causeway may stop reading (and close) before it has taken it all.
    let _ = timeout(REPLY, raw.s.write_all(&out)).await;
    let (_, p) = pkt(&mut raw).await;
    let msg = expect_err(&p, 1153, "08S01");
    assert!(msg.contains("max_allowed_packet"), "{msg}");
    let after = timeout(REPLY, raw.s.read_packet())
        .await
        .expect("closed in time, not a hang");
    assert!(
        after.is_err(),
        "connection closed after the ERR, got {after:?}"
    );

    // Everyone else goes on; new sessions too.
    still_works(&mut other, 2).await;
    let mut fresh = env.conn().await;
    still_works(&mut fresh, 3).await;
    drop((other, fresh));
    env.stop().await;
}

/// Connects and reads the greeting.
async fn greeted(addr: SocketAddr) -> PacketStream<TcpStream> {
    let sock = TcpStream::connect(addr).await.unwrap();
    let mut s = PacketStream::new(sock);
    let (_, p) = timeout(REPLY, s.read_packet())
        .await
        .expect("greeting in time")
        .expect("greeting");
    Handshake::decode(&p).expect("a Handshake v10 greeting");
    s
}

/// After sending a bogus handshake response: an ERR (returned) or a clean
/// close (`None`) — never silence.
async fn err_or_close(s: &mut PacketStream<TcpStream>) -> Option<(u16, String, String)> {
    match timeout(REPLY, s.read_packet())
        .await
        .expect("an answer or a close, not a hang")
    {
        Ok((_, p)) => {
            let e = err_of(&p)
                .unwrap_or_else(|| panic!("only an ERR may answer garbage, got {p:02x?}"));
            // Nothing follows the ERR: the connection is closed.
            let next = timeout(REPLY, s.read_packet())
                .await
                .expect("closed after the ERR");
            assert!(
                next.is_err(),
                "connection closed after the ERR, got {next:?}"
            );
            Some(e)
        }
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_handshakes_and_tls_requests_are_refused_cleanly() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[timeouts]\nclient_handshake_ms = 1000\n")
    })
    .await;

    // No PROTOCOL_41 bit and random-looking bytes: malformed.
    let mut s = greeted(env.proxy).await;
    let garbage: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 & !0x02)
        .collect();
    let mut out = BytesMut::new();
    write_packets(&mut out, 1, &garbage);
    s.write_all(&out).await.unwrap();
    let e = err_or_close(&mut s).await;
    if let Some((code, state, msg)) = e {
        assert_eq!((code, state.as_str()), (1835, "08S01"), "{msg}");
    }

    // PROTOCOL_41 set, but cut short in the middle of the user name.
    let mut s = greeted(env.proxy).await;
    let mut body = (cap::PROTOCOL_41 | cap::SECURE_CONNECTION)
        .to_le_bytes()
        .to_vec();
    body.extend_from_slice(&[0, 0, 0, 1, 45]);
    body.extend_from_slice(&[0; 23]);
    body.extend_from_slice(b"ap");
    let mut out = BytesMut::new();
    write_packets(&mut out, 1, &body);
    s.write_all(&out).await.unwrap();
    if let Some((code, state, msg)) = err_or_close(&mut s).await {
        assert_eq!((code, state.as_str()), (1835, "08S01"), "{msg}");
    }

    // Many random packets: whatever they parse to, an ERR or a close.
    for seed in 1..=20u64 {
        let mut s = greeted(env.proxy).await;
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let len = 8 + (seed as usize * 37) % 300;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut out = BytesMut::new();
        write_packets(&mut out, 1, &bytes);
        s.write_all(&out).await.unwrap();
        // Random bytes may well parse as a response naming another auth
        // plugin: then Causeway asks for mysql_native_password, and a junk
        // answer is refused like a wrong password.
        let first = timeout(REPLY, s.read_packet())
            .await
            .expect("an answer or a close, not a hang");
        let mut answer = match first {
            Ok((h, p)) if p.first() == Some(&0xFE) => {
                let sw = AuthSwitch::decode(&p).expect("an AuthSwitchRequest");
                assert_eq!(sw.plugin, "mysql_native_password");
                let mut out = BytesMut::new();
                write_packets(
                    &mut out,
                    h.seq.wrapping_add(1),
                    &bytes[..bytes.len().min(20)],
                );
                s.write_all(&out).await.unwrap();
                err_or_close(&mut s).await
            }
            Ok((_, p)) => {
                let e = err_of(&p).unwrap_or_else(|| {
                    panic!("seed {seed}: only an ERR may answer garbage, got {p:02x?}")
                });
                let next = timeout(REPLY, s.read_packet())
                    .await
                    .expect("closed after the ERR");
                assert!(
                    next.is_err(),
                    "connection closed after the ERR, got {next:?}"
                );
                Some(e)
            }
            Err(_) => None,
        };
        if let Some((code, _, msg)) = answer.take() {
            assert!(
                [1835, 1045, 1251].contains(&code),
                "seed {seed}: ERR {code}: {msg}"
            );
        }
    }

    // A header announcing a huge packet, then nothing: closed, not a hang
    // (the handshake timeout is 1 s here).
    let mut s = greeted(env.proxy).await;
    s.write_all(&[0xff, 0xff, 0x0f, 1, 1, 2, 3]).await.unwrap();
    let _ = err_or_close(&mut s).await;
    // A client that never answers the greeting is dropped.
    let mut s = greeted(env.proxy).await;
    let started = Instant::now();
    let r = timeout(REPLY, s.read_packet())
        .await
        .expect("silent client dropped in time");
    assert!(r.is_err(), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // SSLRequest: 32 bytes, CLIENT_SSL set -> ERR 1251 that says "TLS".
    let mut s = greeted(env.proxy).await;
    let caps = cap::PROTOCOL_41
        | cap::SECURE_CONNECTION
        | cap::PLUGIN_AUTH
        | cap::SSL
        | cap::LONG_PASSWORD;
    let mut body = caps.to_le_bytes().to_vec();
    body.extend_from_slice(&(1u32 << 24).to_le_bytes());
    body.push(45);
    body.extend_from_slice(&[0; 23]);
    assert_eq!(body.len(), 32);
    let mut out = BytesMut::new();
    write_packets(&mut out, 1, &body);
    s.write_all(&out).await.unwrap();
    let (h, p) = timeout(REPLY, s.read_packet())
        .await
        .expect("answer in time")
        .expect("an ERR");
    let msg = expect_err(&p, 1251, "08004");
    assert!(msg.contains("TLS"), "{msg}");
    assert_eq!(h.seq, 2);

    // Causeway does not offer CLIENT_SSL, so a client that merely prefers
    // TLS (the CLI's --ssl) goes on in plain text instead of failing.
    let s = TcpStream::connect(env.proxy).await.unwrap();
    let mut s = PacketStream::new(s);
    let (_, p) = timeout(REPLY, s.read_packet()).await.unwrap().unwrap();
    assert_eq!(
        Handshake::decode(&p).unwrap().capabilities & cap::SSL,
        0,
        "CLIENT_SSL not offered"
    );
    drop(s);
    let out = env
        .cli(
            "app",
            "app-secret",
            Some("app"),
            &["--ssl", "-e", "SELECT 1"],
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    // Causeway still serves normal logins.
    let mut raw = Raw::login(env.proxy, "app", "app-secret", Some("app"), 0).await;
    assert_eq!(scalar(&mut raw, "SELECT 1").await, "1");
    env.stop().await;
}

/// The error a query gets when its backend vanished: Causeway's 1927 (lost)
/// or 9002 (unreachable), 9003 (no primary: a statement found it dead and
/// the hold for a new one ran out), or the client noticing the connection
/// is gone.
fn is_lost(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => s.code == 1927 || s.code == 9002 || s.code == 9003,
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => true,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_dying_mid_session_gives_errors_not_hangs_and_service_resumes() {
    let mut env = Env::start(0).await;
    let mut c = env.conn().await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    // A second client inside a transaction with an uncommitted write.
    let mut tx = env.conn().await;
    tx.query_drop("BEGIN").await.unwrap();
    tx.query_drop("INSERT INTO t VALUES (2)").await.unwrap();

    env.cluster.primary.kill();

    let r = timeout(
        Duration::from_secs(15),
        c.query_first::<i64, _>("SELECT COUNT(*) FROM t"),
    )
    .await
    .expect("no hung client after the primary died");
    let e = r.expect_err("a query with the primary dead fails");
    assert!(is_lost(&e), "lost-connection error expected, got {e:?}");
    // The next one also fails quickly: the primary is unreachable.
    let r = timeout(Duration::from_secs(15), c.query_drop("SELECT 1"))
        .await
        .expect("no hung client while the primary is down");
    assert!(r.as_ref().is_err_and(is_lost), "{r:?}");

    // The client in a transaction gets an error ...
    let r = timeout(
        Duration::from_secs(15),
        tx.query_drop("INSERT INTO t VALUES (3)"),
    )
    .await
    .expect("no hung client in a transaction");
    let e = r.expect_err("a statement in a dead transaction fails");
    assert!(is_lost(&e), "{e:?}");

    env.cluster.primary.start().await.expect("primary restarts");

    // ... and its session goes on outside the (rolled back) transaction:
    // it is not in a transaction any more, now that the primary is back.
    let r = timeout(
        Duration::from_secs(15),
        tx.query_first::<u32, _>("SELECT @@in_transaction"),
    )
    .await
    .expect("no hang after a lost transaction");
    assert!(
        matches!(r, Ok(Some(0))),
        "the session of a lost transaction goes on outside it, got {r:?}"
    );

    // New connections work again (polled: the monitor has to see the primary).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fresh = loop {
        match timeout(
            Duration::from_secs(5),
            mysql_async::Conn::new(app_opts(&env)),
        )
        .await
        {
            Ok(Ok(mut conn)) => {
                if conn.query_drop("SELECT 1").await.is_ok() {
                    break conn;
                }
            }
            _ if Instant::now() < deadline => {}
            other => panic!("no working connection after the primary restarted: {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no working connection after the primary restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows: Vec<i64> = fresh.query("SELECT id FROM t ORDER BY id").await.unwrap();
    assert_eq!(
        rows,
        vec![1],
        "the dead transaction's writes are gone, nothing else ran"
    );
    assert_eq!(
        env.primary_sql("SELECT COUNT(*) FROM app.t").await.trim(),
        "1"
    );
    // The old (non-transactional) session answers something, without hanging.
    let _ = timeout(Duration::from_secs(15), c.query_drop("SELECT 1"))
        .await
        .expect("the old session answers after the restart");
    drop((c, tx, fresh));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients() {
    const CLIENTS: i64 = 200;
    const QUERIES: i64 = 20;
    let env = Env::start(0).await;
    let mut setup = env.conn().await;
    setup
        .query_drop("CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, client INT, n INT) ENGINE=InnoDB")
        .await
        .unwrap();
    let inserts_per_client = (0..QUERIES).filter(|i| i % 3 == 1).count() as i64;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS as usize));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for id in 0..CLIENTS {
        let opts = app_opts(&env);
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let mut c = mysql_async::Conn::new(opts)
                .await
                .map_err(|e| format!("client {id} connect: {e}"))?;
            // Everybody connected at once before anyone runs a query.
            barrier.wait().await;
            for i in 0..QUERIES {
                match i % 3 {
                    0 => {
                        let v: Option<i64> = c
                            .exec_first("SELECT ?", (id,))
                            .await
                            .map_err(|e| format!("client {id}: {e}"))?;
                        if v != Some(id) {
                            return Err(format!("client {id} got {v:?}"));
                        }
                    }
                    1 => c
                        .exec_drop("INSERT INTO hits (client, n) VALUES (?, ?)", (id, i))
                        .await
                        .map_err(|e| format!("client {id} insert: {e}"))?,
                    _ => {
                        let n: Option<i64> = c
                            .exec_first("SELECT COUNT(*) FROM hits WHERE client = ?", (id,))
                            .await
                            .map_err(|e| format!("client {id} count: {e}"))?;
                        // Read-your-writes on the primary.
                        let mine = (0..=i).filter(|k| k % 3 == 1).count() as i64;
                        if n != Some(mine) {
                            return Err(format!("client {id} sees {n:?} of its {mine} rows"));
                        }
                    }
                }
            }
            c.disconnect()
                .await
                .map_err(|e| format!("client {id} disconnect: {e}"))?;
            Ok::<_, String>(())
        });
    }
    let mut failures = Vec::new();
    let all = timeout(Duration::from_secs(60), async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r.expect("client task") {
                failures.push(e);
            }
        }
    })
    .await;
    assert!(all.is_ok(), "200 clients did not finish within 60 s");
    assert!(
        failures.is_empty(),
        "{} clients failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!("200 clients x {QUERIES} queries in {:?}", started.elapsed());
    let got = env
        .primary_sql("SELECT COUNT(*), COUNT(DISTINCT client) FROM app.hits")
        .await;
    assert_eq!(
        got.trim(),
        format!("{}\t{CLIENTS}", CLIENTS * inserts_per_client)
    );
    drop(setup);
    env.stop().await;
}

/// Prepares `sql` on a raw connection; returns the statement id.
async fn prepare(raw: &mut Raw, sql: &str) -> (u32, u16, u16) {
    let mut p = vec![0x16];
    p.extend_from_slice(sql.as_bytes());
    raw.command(&p).await;
    let (_, ok) = pkt(raw).await;
    assert_eq!(ok[0], 0x00, "prepare OK, got {:?}", err_of(&ok));
    let mut r = Reader::new(&ok[1..]);
    let id = r.u32().unwrap();
    let columns = r.u16().unwrap();
    let params = r.u16().unwrap();
    let deprecate = raw.caps & cap::DEPRECATE_EOF != 0;
    for (n, what) in [(params, "parameter"), (columns, "column")] {
        for _ in 0..n {
            let (_, d) = pkt(raw).await;
            assert_ne!(d[0], 0xFF, "{what} definition");
        }
        if n > 0 && !deprecate {
            let (_, eof) = pkt(raw).await;
            assert!(
                is_terminator(&eof, 0),
                "EOF after {what} definitions, got {eof:02x?}"
            );
        }
    }
    (id, columns, params)
}

/// What a packet of a cursor exchange is, for comparing two connections.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    ColumnCount(u64),
    Definition,
    Row(u64),
    Eof(u16),
    Ok(u16),
    Err(u16),
}

/// Runs the whole cursor exchange on `raw` and returns what came back.
async fn cursor_exchange(raw: &mut Raw) -> Vec<Vec<Shape>> {
    let caps = raw.caps;
    let classify = |p: &[u8], in_rows: bool| -> Shape {
        match p[0] {
            0xFF => Shape::Err(err_of(p).unwrap().0),
            // A classic EOF is exactly 5 bytes; an OK-format terminator
            // (CLIENT_DEPRECATE_EOF) is at least 7.
            0xFE if p.len() == 5 => Shape::Eof(terminator_status(p, 0).unwrap()),
            0xFE if caps & cap::DEPRECATE_EOF != 0 && p.len() < 0xFF_FFFF => {
                Shape::Ok(OkPacket::decode(p, caps).unwrap().status)
            }
            0x00 if in_rows => {
                // Binary row: header, NULL bitmap (1 byte for 1 column), BIGINT.
                Shape::Row(u64::from_le_bytes(p[2..10].try_into().unwrap()))
            }
            0x00 => Shape::Ok(OkPacket::decode(p, caps).unwrap().status),
            _ if in_rows => panic!("unexpected packet in rows: {p:02x?}"),
            _ => Shape::Definition,
        }
    };
    let (id, columns, params) = prepare(raw, "SELECT seq FROM seq_1_to_100").await;
    assert_eq!((columns, params), (1, 0));
    let mut all = Vec::new();

    // COM_STMT_EXECUTE, CURSOR_TYPE_READ_ONLY, iteration count 1, no params.
    let mut ex = vec![0x17];
    ex.extend_from_slice(&id.to_le_bytes());
    ex.push(0x01);
    ex.extend_from_slice(&1u32.to_le_bytes());
    raw.command(&ex).await;
    let mut shapes = Vec::new();
    let (_, p) = pkt(raw).await;
    assert_ne!(p[0], 0xFF, "execute: {:?}", err_of(&p));
    shapes.push(Shape::ColumnCount(Reader::new(&p).lenenc_int().unwrap()));
    shapes.push(classify(&pkt(raw).await.1, false));
    // The metadata ends with a terminator whose status says a cursor is open.
    let (_, p) = pkt(raw).await;
    let s = classify(&p, true);
    match s {
        Shape::Eof(st) | Shape::Ok(st) => {
            assert!(st & status::CURSOR_EXISTS != 0, "cursor open: {st:#x}")
        }
        ref other => panic!("terminator after metadata, got {other:?}"),
    }
    shapes.push(s);
    all.push(shapes);

    // Four fetches of 30 rows.
    for _ in 0..4 {
        let mut f = vec![0x1c];
        f.extend_from_slice(&id.to_le_bytes());
        f.extend_from_slice(&30u32.to_le_bytes());
        raw.command(&f).await;
        let mut shapes = Vec::new();
        loop {
            let (_, p) = pkt(raw).await;
            let s = classify(&p, true);
            let end = !matches!(s, Shape::Row(_));
            shapes.push(s);
            if end {
                break;
            }
        }
        all.push(shapes);
    }
    // COM_STMT_CLOSE has no reply.
    let mut cl = vec![0x19];
    cl.extend_from_slice(&id.to_le_bytes());
    raw.command(&cl).await;
    all
}

fn check_cursor_exchange(all: &[Vec<Shape>]) {
    let rows: Vec<u64> = all[1..]
        .iter()
        .flatten()
        .filter_map(|s| match s {
            Shape::Row(v) => Some(*v),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows,
        (1..=100).collect::<Vec<u64>>(),
        "exactly the 100 rows, in order"
    );
    for (i, fetch) in all[1..].iter().enumerate() {
        let n = fetch.iter().filter(|s| matches!(s, Shape::Row(_))).count();
        assert_eq!(n, if i < 3 { 30 } else { 10 }, "rows of fetch {}", i + 1);
        let st = match fetch.last().unwrap() {
            Shape::Eof(st) | Shape::Ok(st) => *st,
            other => panic!("fetch {} ends with {other:?}", i + 1),
        };
        if i == 3 {
            assert!(
                st & status::LAST_ROW_SENT != 0,
                "last fetch says LAST_ROW_SENT: {st:#x}"
            );
        } else {
            assert!(
                st & status::CURSOR_EXISTS != 0,
                "fetch {} keeps the cursor: {st:#x}",
                i + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_fetch_through_the_raw_client() {
    let env = Env::start(0).await;
    for extra in [0, cap::DEPRECATE_EOF] {
        let mut raw = Raw::login(env.proxy, "app", "app-secret", Some("app"), extra).await;
        let via_proxy = cursor_exchange(&mut raw).await;
        check_cursor_exchange(&via_proxy);
        // In sync: the next command gets its own reply.
        assert_eq!(
            scalar(&mut raw, "SELECT 'after cursor'").await,
            "after cursor"
        );
        ping(&mut raw).await;

        // The same exchange directly on the primary: Causeway relays what
        // the server sends, packet for packet.
        let mut direct = Raw::login(
            env.cluster.primary.addr,
            "app",
            "app-secret",
            Some("app"),
            extra,
        )
        .await;
        let from_server = cursor_exchange(&mut direct).await;
        let strip = |v: &[Vec<Shape>]| -> Vec<Vec<Shape>> {
            // Status bits unrelated to the cursor (e.g. NO_INDEX_USED) may differ.
            let mask = status::CURSOR_EXISTS | status::LAST_ROW_SENT | status::IN_TRANS;
            v.iter()
                .map(|s| {
                    s.iter()
                        .map(|x| match x {
                            Shape::Eof(st) => Shape::Eof(st & mask),
                            Shape::Ok(st) => Shape::Ok(st & mask),
                            o => o.clone(),
                        })
                        .collect()
                })
                .collect()
        };
        assert_eq!(
            strip(&via_proxy),
            strip(&from_server),
            "DEPRECATE_EOF={}",
            extra != 0
        );
        // MariaDB 10.11 ends the cursor's metadata and each fetch with an
        // OK-format terminator when CLIENT_DEPRECATE_EOF is negotiated, with
        // a classic EOF otherwise; the client must get that same format.
        let want_ok = extra != 0;
        for s in std::iter::once(&via_proxy[0][2])
            .chain(via_proxy[1..].iter().map(|f| f.last().unwrap()))
        {
            assert_eq!(
                matches!(s, Shape::Ok(_)),
                want_ok,
                "terminator format {s:?}"
            );
        }
        eprintln!(
            "cursor exchange (DEPRECATE_EOF={}): {:?} / fetch ends {:?}",
            extra != 0,
            from_server[0],
            from_server[1..]
                .iter()
                .map(|f| f.last().cloned())
                .collect::<Vec<_>>()
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_list_statistics_ping_and_set_option() {
    let env = Env::start(0).await;
    let mut raw = Raw::login(
        env.proxy,
        "app",
        "app-secret",
        Some("app"),
        cap::MULTI_STATEMENTS,
    )
    .await;
    let create = b"\x03CREATE TABLE three (a INT, b VARCHAR(10), c DATE)";
    raw.command(create).await;
    assert!(matches!(&read_results(&mut raw).await[..], [Reply::Ok]));

    // COM_FIELD_LIST: three definitions then EOF.
    raw.command(b"\x04three\x00").await;
    let packets = timeout(REPLY, raw.until_terminal())
        .await
        .expect("field list in time");
    let (last, defs) = packets.split_last().unwrap();
    assert!(is_terminator(last, 0), "ends with EOF: {last:02x?}");
    let names: Vec<String> = defs.iter().map(|d| column_name(d)).collect();
    assert_eq!(names, ["a", "b", "c"]);
    // An unknown table: an ERR, the session goes on.
    raw.command(b"\x04nope\x00").await;
    let (_, p) = pkt(&mut raw).await;
    expect_err(&p, 1146, "42S02");
    ping(&mut raw).await;

    // COM_STATISTICS and COM_PING with the real admin tool.
    let admin = |args: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new("mariadb-admin");
        cmd.arg("--no-defaults")
            .arg("-h")
            .arg(env.proxy.ip().to_string())
            .arg("-P")
            .arg(env.proxy.port().to_string())
            .arg("-uapp")
            .arg("-papp-secret")
            .args(args);
        async move {
            timeout(Duration::from_secs(30), cmd.output())
                .await
                .expect("mariadb-admin finishes")
                .unwrap()
        }
    };
    let out = admin(&["status"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Uptime:"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin(&["ping"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("is alive"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The raw session's own COM_STATISTICS: one packet of text.
    raw.command(&[0x09]).await;
    let (_, p) = pkt(&mut raw).await;
    assert!(
        String::from_utf8_lossy(&p).starts_with("Uptime:"),
        "{:?}",
        String::from_utf8_lossy(&p)
    );
    ping(&mut raw).await;

    // COM_SET_OPTION: multi statements off ...
    let multi = b"\x03SELECT 1; SELECT 2";
    raw.command(&[0x1b, 0x01, 0x00]).await;
    let (_, p) = pkt(&mut raw).await;
    assert!(p[0] == 0xFE || p[0] == 0x00, "EOF/OK, got {p:02x?}");
    raw.command(multi).await;
    match &read_results(&mut raw).await[..] {
        [Reply::Err(1064, state, _)] => assert_eq!(state, "42000"),
        other => panic!("multi statements refused with 1064, got {other:?}"),
    }
    // ... and on again.
    raw.command(&[0x1b, 0x00, 0x00]).await;
    let (_, p) = pkt(&mut raw).await;
    assert!(p[0] == 0xFE || p[0] == 0x00, "EOF/OK, got {p:02x?}");
    raw.command(multi).await;
    let replies = read_results(&mut raw).await;
    let values: Vec<String> = replies
        .iter()
        .map(|r| match r {
            Reply::Rows { rows, columns } if columns.len() == 1 && rows.len() == 1 => {
                text_row(&rows[0])[0].clone().unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(values, ["1", "2"]);
    ping(&mut raw).await;
    env.stop().await;
}

/// Without `max_allowed_packet` in the config, the primary's value is the
/// limit: a command over it gets the server's ERROR 1153 from Causeway,
/// as directly, instead of being forwarded for the server to cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primarys_max_allowed_packet_is_the_default_limit() {
    let env = Env::start(0).await;
    // 1 MiB on the server; a new account makes Causeway read its settings
    // with the accounts again.
    env.primary_sql(
        "SET GLOBAL max_allowed_packet = 1048576; \
         CREATE USER 'pk'@'%' IDENTIFIED BY 'pk-pw'; GRANT SELECT ON app.* TO 'pk'@'%';",
    )
    .await;
    let _ = Raw::login(env.proxy, "pk", "pk-pw", Some("app"), 0).await;
    let big = format!("\x03SELECT LENGTH('{}')", "z".repeat(20 << 20));
    let mut out = BytesMut::new();
    write_packets(&mut out, 0, big.as_bytes());
    let received = || async {
        let out = env
            .primary_sql("SHOW GLOBAL STATUS LIKE 'Bytes_received'")
            .await;
        out.split_whitespace()
            .rev()
            .find_map(|w| w.parse::<u64>().ok())
            .expect("a byte count")
    };
    for addr in [env.cluster.primary.addr, env.proxy] {
        let before = received().await;
        let mut raw = Raw::login(addr, "app", "app-secret", Some("app"), 0).await;
        let _ = timeout(REPLY, raw.s.write_all(&out)).await;
        let (_, p) = pkt(&mut raw).await;
        let msg = expect_err(&p, 1153, "08S01");
        assert!(msg.contains("max_allowed_packet"), "{addr}: {msg}");
        if addr == env.proxy {
            // Causeway refused it itself: the primary never got the 20 MiB.
            let got = received().await - before;
            assert!(got < 1 << 20, "the primary received {got} bytes");
        }
    }
    // Under it, fine.
    let mut raw = Raw::login(env.proxy, "app", "app-secret", Some("app"), 0).await;
    let s = "w".repeat(500_000);
    assert_eq!(
        scalar(&mut raw, &format!("SELECT LENGTH('{s}')")).await,
        "500000"
    );
    env.stop().await;
}
