//! Connections that never finish their login cannot lock real clients out:
//! sessions are capped by `max_connections` (ERROR 1040 beyond it, as from
//! the server) and logins in progress apart by `max_handshakes`, the
//! longest-waiting login dropped to make room.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use mysql_async::prelude::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const SETTLE: Duration = Duration::from_secs(10);

async fn env(max_connections: usize, max_handshakes: usize) -> Env {
    Env::start_with(0, |t| {
        *t = t.replacen(
            "[proxy]\n",
            &format!(
                "[proxy]\nmax_connections = {max_connections}\nmax_handshakes = {max_handshakes}\n"
            ),
            1,
        )
    })
    .await
}

/// A socket that reads Causeway's greeting and then says nothing.
async fn silent(env: &Env) -> TcpStream {
    let mut s = TcpStream::connect(env.proxy).await.unwrap();
    let mut greeting = [0u8; 4];
    s.read_exact(&mut greeting).await.expect("a greeting");
    s
}

async fn connect(env: &Env) -> Result<mysql_async::Conn, mysql_async::Error> {
    mysql_async::Conn::new(env.opts()).await
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_take_no_session_slot_and_sessions_are_capped() {
    let env = env(3, 1000).await;
    // Ten times as many silent sockets as session slots.
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(silent(&env).await);
    }
    // Real clients still log in, up to the session cap.
    let mut real = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&env).await.expect("a session slot");
        let one: i64 = c.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1);
        real.push(c);
    }
    // The fourth session gets the server's error for it.
    let e = connect(&env).await.expect_err("no fourth session");
    assert_eq!(server_code(&e), Some(1040), "{e}");
    // A slot freed is a slot for the next client.
    drop(real.pop());
    let until = Instant::now() + SETTLE;
    loop {
        match connect(&env).await {
            Ok(_) => break,
            Err(e) if server_code(&e) == Some(1040) && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("the freed slot: {e}"),
        }
    }
    drop(idle);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_logins_drops_the_oldest_not_the_real_client() {
    let env = env(100, 5).await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(silent(&env).await);
    }
    // A real client logs in at once, past the 20 silent ones.
    let started = Instant::now();
    let mut c = connect(&env).await.expect("a real client logs in");
    assert!(started.elapsed() < Duration::from_secs(5));
    let one: i64 = c.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    // The oldest silent ones were closed to make room: each reads EOF.
    let mut closed = 0;
    for s in idle.iter_mut().take(15) {
        // The rest of the greeting, then the end.
        let mut rest = Vec::new();
        match tokio::time::timeout(SETTLE, s.read_to_end(&mut rest)).await {
            Ok(_) => closed += 1,
            Err(_) => panic!("an evicted login still open"),
        }
    }
    assert_eq!(closed, 15);
    drop(idle);
    drop(c);
    env.stop().await;
}
