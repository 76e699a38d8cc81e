//! A wire-level fuzzer against a running Causeway: real sessions' commands
//! (queries, prepared statements, the other commands) mutated at random
//! (bytes flipped, cut, appended, the command byte or the sequence id
//! changed) and sent after a real login. After each one a marker query
//! must come back (or the connection must be closed cleanly, after which
//! the fuzzer logs in again): no hang. No task may panic, and a healthy
//! client is served throughout. `CAUSEWAY_WIRE_FUZZ_CASES` runs more cases
//! (`scripts/fuzz`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use causeway::protocol::packet::write_packets;
use common::raw::Raw;
use common::Env;
use mysql_async::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: usize = 400;
const REPLY: Duration = Duration::from_secs(5);

/// Command payloads of real sessions.
fn corpus() -> Vec<Vec<u8>> {
    let q = |s: &str| [&[0x03u8][..], s.as_bytes()].concat();
    vec![
        q("SELECT 1"),
        q("SELECT id, v FROM fz WHERE id = 1"),
        q("INSERT INTO fz (v) VALUES ('x')"),
        q("UPDATE fz SET v = 'y' WHERE id = 2"),
        q("SET @a = 1, SESSION sql_mode = 'ANSI'"),
        q("BEGIN"),
        q("COMMIT"),
        q("SELECT @a, LAST_INSERT_ID(), CONNECTION_ID()"),
        q("SHOW PROCESSLIST"),
        q("/* causeway: route=replica */ SELECT v FROM fz"),
        vec![0x0e],                                // COM_PING
        [&[0x02u8][..], b"app"].concat(),          // COM_INIT_DB
        [&[0x04u8][..], b"fz\0"].concat(),         // COM_FIELD_LIST
        vec![0x09],                                // COM_STATISTICS
        [&[0x16u8][..], b"SELECT ? + 1"].concat(), // COM_STMT_PREPARE
        // COM_STMT_EXECUTE of statement 1, one INT parameter, types sent.
        vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 7, 0, 0, 0],
        vec![0x1a, 1, 0, 0, 0],       // COM_STMT_RESET
        vec![0x19, 1, 0, 0, 0],       // COM_STMT_CLOSE
        vec![0x1b, 0, 0],             // COM_SET_OPTION
        vec![0x1f],                   // COM_RESET_CONNECTION
        vec![0x0c, 0xff, 0xff, 0, 0], // COM_PROCESS_KILL of no one
    ]
}

/// One mutated command: (payload, sequence id).
fn mutate(rng: &mut StdRng, seed: &[u8]) -> (Vec<u8>, u8) {
    let mut p = seed.to_vec();
    let mut seq = 0u8;
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..6) {
            0 if !p.is_empty() => {
                let i = rng.random_range(0..p.len());
                p[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !p.is_empty() => {
                let i = rng.random_range(0..p.len());
                p[i] = rng.random();
            }
            2 => p.truncate(rng.random_range(0..=p.len())),
            3 => {
                let n = rng.random_range(1..40);
                p.extend((0..n).map(|_| rng.random::<u8>()));
            }
            4 if !p.is_empty() => p[0] = rng.random(),
            5 if rng.random_range(0..4) == 0 => seq = rng.random(),
            _ => {}
        }
    }
    (p, seq)
}

async fn login(env: &Env) -> Raw {
    Raw::login(
        env.proxy,
        &env.cluster.app_user,
        &env.cluster.app_password,
        Some("app"),
        causeway::protocol::consts::cap::MULTI_STATEMENTS,
    )
    .await
}

/// Sends the marker query and reads until its row and the end of its
/// reply: `Some(true)` when it came back, `Some(false)` when the connection
/// was closed, `None` on a hang.
async fn marker_comes_back(c: &mut Raw, n: usize) -> Option<bool> {
    let marker = format!("fuzz-marker-{n}");
    let mut out = BytesMut::new();
    write_packets(&mut out, 0, format!("\x03SELECT '{marker}'").as_bytes());
    if c.s.write_all(&out).await.is_err() {
        return Some(false);
    }
    let read = async {
        let mut seen = false;
        loop {
            match c.s.read_packet().await {
                Err(_) => return false,
                Ok((_, p)) => {
                    if seen
                        && (p.first() == Some(&0xFE) || p.first() == Some(&0x00))
                        && p.len() < 12
                    {
                        return true;
                    }
                    if p.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                        seen = true;
                    }
                }
            }
        }
    };
    tokio::time::timeout(REPLY, read).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sessions_get_errors_or_closes_never_hangs_or_panics() {
    let panics = Arc::new(AtomicUsize::new(0));
    {
        let panics = panics.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    }
    let env = Env::start(1).await;
    // The healthy client is another account: the fuzzed one may KILL its
    // own user's sessions, as the server allows.
    env.primary_sql(
        "CREATE TABLE app.fz (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO app.fz (v) VALUES ('a'), ('b'); \
         CREATE USER 'steady'@'%' IDENTIFIED BY 'steady-pw'; GRANT SELECT ON app.* TO 'steady'@'%';",
    )
    .await;
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    let cases: usize = std::env::var("CAUSEWAY_WIRE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(20261205);
    let mut healthy =
        mysql_async::Conn::new(env.opts().user(Some("steady")).pass(Some("steady-pw")))
            .await
            .expect("the steady account logs in");
    let mut c = login(&env).await;
    let (mut closed, mut answered) = (0usize, 0usize);
    for n in 0..cases {
        let seed = &corpus[rng.random_range(0..corpus.len())];
        let (payload, seq) = mutate(&mut rng, seed);
        let mut out = BytesMut::new();
        write_packets(&mut out, seq, &payload);
        let sent = c.s.write_all(&out).await.is_ok();
        match if sent {
            marker_comes_back(&mut c, n).await
        } else {
            Some(false)
        } {
            Some(true) => answered += 1,
            Some(false) => {
                closed += 1;
                c = login(&env).await;
            }
            None => panic!(
                "case {n}: no answer within {REPLY:?} after {:02x?} (seq {seq})",
                &payload[..payload.len().min(64)]
            ),
        }
        if n % 50 == 0 {
            let one: i64 = healthy.query_first("SELECT 1").await.unwrap().unwrap();
            assert_eq!(one, 1, "a healthy client is served during the fuzzing");
        }
    }
    let one: i64 = healthy.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a task panicked");
    eprintln!("wire fuzz: {cases} cases, {answered} answered, {closed} closed the connection");
    assert_eq!(answered + closed, cases);
    drop(healthy);
    env.stop().await;
}
