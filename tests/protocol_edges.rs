//! Protocol edges a client library rarely shows, driven with raw packets
//! and compared with a direct connection to the primary: COM_CHANGE_USER
//! with a collation id above 255.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use causeway::protocol::auth::Credential;
use causeway::protocol::buf::Reader;
use causeway::protocol::handshake::AuthSwitch;
use causeway::protocol::packet::write_packets;
use causeway::protocol::reply::Expect;
use common::raw::{err_of, Raw};
use common::Env;
use mysql_async::prelude::*;
use tokio::time::timeout;

/// No reply may take longer than this.
const REPLY: Duration = Duration::from_secs(15);

async fn raw_login(addr: SocketAddr) -> Raw {
    Raw::login(addr, "app", "app-secret", Some("app"), 0).await
}

/// The first row of a text result set, each column as text (`None` for
/// NULL); panics on an error reply.
async fn first_row(r: &mut Raw, sql: &str) -> Vec<Option<String>> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    r.command(&p).await;
    let reply: Vec<Bytes> = timeout(REPLY, r.reply(Expect::ResultSets))
        .await
        .unwrap_or_else(|_| panic!("no reply to {sql}"));
    let first = reply.first().expect("a reply");
    assert!(first.first() != Some(&0xFF), "{sql}: {:?}", err_of(first));
    let columns = Reader::new(first).lenenc_int().expect("column count") as usize;
    // Count, definitions, EOF, then the first row.
    let row = reply.get(columns + 2).expect("a row");
    let mut rd = Reader::new(row);
    (0..columns)
        .map(|_| {
            if rd.peek() == Some(0xFB) {
                rd.u8();
                None
            } else {
                rd.lenenc_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            }
        })
        .collect()
}

/// COM_CHANGE_USER to `app` with collation id `charset` (two bytes, as
/// the protocol has them); the answer must be OK.
async fn change_user(r: &mut Raw, charset: u16) {
    let mut p = vec![0x11];
    p.extend_from_slice(b"app\0");
    let answer = Credential::from_password(b"app-secret").scramble(&r.greeting.salt);
    p.push(answer.len() as u8);
    p.extend_from_slice(&answer);
    p.extend_from_slice(b"app\0");
    p.extend_from_slice(&charset.to_le_bytes());
    p.extend_from_slice(b"mysql_native_password\0");
    r.command(&p).await;
    let (h, mut reply) = timeout(REPLY, r.packet())
        .await
        .expect("change-user answer");
    if reply.first() == Some(&0xFE) {
        // The server asks again with a fresh salt.
        let sw = AuthSwitch::decode(&reply).expect("auth switch");
        let answer = Credential::from_password(b"app-secret").scramble(&sw.data);
        let mut out = BytesMut::new();
        write_packets(&mut out, h.seq.wrapping_add(1), &answer);
        r.send_bytes(&out).await;
        reply = timeout(REPLY, r.packet())
            .await
            .expect("change-user answer")
            .1;
    }
    assert_eq!(reply.first(), Some(&0), "{:?}", err_of(&reply));
}

const CHARSETS: &str = "SELECT @@collation_connection, @@character_set_client, \
     @@character_set_connection, @@character_set_results, COLLATION('x'), 'a' = 'A'";

/// Each connection's character-set variables after COM_CHANGE_USER with
/// a collation above 255, asked twice (the second time through whatever
/// connection a pool lends).
async fn collation_after_change_user(env: &Env) {
    let mut direct = env.direct_primary().await;
    let id: u16 = direct
        .query_first(
            "SELECT ID FROM information_schema.COLLATIONS \
             WHERE COLLATION_NAME = 'utf8mb4_croatian_ci'",
        )
        .await
        .unwrap()
        .expect("utf8mb4_croatian_ci exists");
    assert!(
        id > 255,
        "the test needs a collation id above 255, got {id}"
    );
    let mut seen = Vec::new();
    for addr in [env.cluster.primary.addr, env.proxy] {
        let mut r = raw_login(addr).await;
        change_user(&mut r, id).await;
        let first = first_row(&mut r, CHARSETS).await;
        // Another statement in between, so a pool may lend another connection.
        first_row(&mut r, "SELECT 1").await;
        let again = first_row(&mut r, CHARSETS).await;
        seen.push((first, again));
    }
    assert_eq!(seen[1], seen[0], "through Causeway vs direct");
    assert_eq!(
        seen[0].0.first().cloned().flatten().as_deref(),
        Some("utf8mb4_croatian_ci")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_keeps_a_collation_id_above_255() {
    let env = Env::start(0).await;
    collation_after_change_user(&env).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_keeps_a_collation_id_above_255_through_the_transaction_pool() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = 2\n")
    })
    .await;
    // Another session of the same user leaves a connection in the pool
    // with the default collation: it must not be lent as it is.
    let mut other = env.conn().await;
    other.query_drop("SELECT 1").await.unwrap();
    collation_after_change_user(&env).await;
    other.query_drop("SELECT 1").await.unwrap();
    let cs: Option<String> = other
        .query_first("SELECT @@collation_connection")
        .await
        .unwrap();
    assert_ne!(cs.as_deref(), Some("utf8mb4_croatian_ci"));
    drop(other);
    env.stop().await;
}

// ------------------------------------------- sequence ids and wait_timeout

/// Reads until the connection ends; returns the packets read before.
async fn until_closed(r: &mut Raw, limit: Duration) -> Vec<Bytes> {
    let mut v = Vec::new();
    let read = timeout(limit, async {
        while let Ok((_, p)) = r.s.read_packet().await {
            v.push(p);
        }
    })
    .await;
    assert!(read.is_ok(), "still open after {limit:?}; read {v:?}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_out_of_order_gets_1156_and_the_connection_closes() {
    let env = Env::start(0).await;
    let mut seen = Vec::new();
    for addr in [env.cluster.primary.addr, env.proxy] {
        let mut r = raw_login(addr).await;
        let mut out = BytesMut::new();
        write_packets(&mut out, 5, b"\x03SELECT 1");
        r.send_bytes(&out).await;
        let got = until_closed(&mut r, REPLY).await;
        let errs: Vec<_> = got.iter().map(|p| err_of(p)).collect();
        seen.push(errs);
    }
    assert_eq!(seen[1], seen[0], "through Causeway vs direct");
    assert_eq!(
        seen[0],
        vec![Some((
            1156,
            "08S01".to_string(),
            "Got packets out of order".to_string()
        ))]
    );
    env.stop().await;
}

/// `SET SESSION wait_timeout = 2`, then `then` (nothing, or half a
/// packet): the connection must end within a bounded time, not before.
async fn closed_after_wait_timeout(addr: SocketAddr, partial: bool) -> Duration {
    let mut r = raw_login(addr).await;
    first_row(&mut r, "SELECT 1").await;
    r.command(b"\x03SET SESSION wait_timeout = 2").await;
    let (_, ok) = r.packet().await;
    assert_eq!(ok.first(), Some(&0), "{:?}", err_of(&ok));
    if partial {
        // A header announcing 100 bytes, then 5 of them.
        r.send_bytes(&[100, 0, 0, 0, 0x03, b'S', b'E', b'L', b'E'])
            .await;
    }
    let start = std::time::Instant::now();
    let got = until_closed(&mut r, Duration::from_secs(20)).await;
    assert!(got.is_empty(), "closed without a packet: {got:?}");
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_or_idle_client_is_closed_after_its_wait_timeout() {
    let env = Env::start(0).await;
    // A session with the default timeout, idle across the others' timeouts.
    let mut normal = raw_login(env.proxy).await;
    for partial in [true, false] {
        for addr in [env.cluster.primary.addr, env.proxy] {
            let took = closed_after_wait_timeout(addr, partial).await;
            assert!(
                took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
                "{addr} partial={partial}: closed after {took:?}"
            );
        }
    }
    assert_eq!(
        first_row(&mut normal, "SELECT 7").await,
        vec![Some("7".to_string())],
        "a session within its timeout is unaffected"
    );
    // mysql_async: SET wait_timeout through Causeway, idle past it.
    let mut c = env.conn().await;
    c.query_drop("SET wait_timeout = 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.query_drop("SELECT 1").await.is_err(), "closed while idle");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_clients_get_interactive_timeout() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[timeouts]\ninteractive_timeout_s = 2\nwait_timeout_s = 600\n")
    })
    .await;
    let mut plain = raw_login(env.proxy).await;
    let mut inter = Raw::login(
        env.proxy,
        "app",
        "app-secret",
        Some("app"),
        causeway::protocol::consts::cap::INTERACTIVE,
    )
    .await;
    let start = std::time::Instant::now();
    assert!(until_closed(&mut inter, Duration::from_secs(20))
        .await
        .is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        first_row(&mut plain, "SELECT 8").await,
        vec![Some("8".to_string())],
        "a non-interactive client keeps wait_timeout"
    );
    env.stop().await;
}
