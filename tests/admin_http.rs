//! The admin HTTP endpoint holds up against clients that connect and stall:
//! each connection must send its request within `timeouts.admin_request_ms`
//! or is closed, and beyond `proxy.admin_max_connections` at once a client
//! is answered `503` at once; `/metrics` keeps answering throughout.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SETTLE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_admin_clients_are_capped_and_timed_out() {
    let env = Env::start_with(0, |t| {
        *t = t.replacen("[proxy]\n", "[proxy]\nadmin_max_connections = 4\n", 1);
        t.push_str("\n[timeouts]\nadmin_request_ms = 700\n");
    })
    .await;
    // Four connections that send half a request and stall.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(env.admin).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        stalled.push(s);
    }
    // A fifth is turned away at once.
    let busy = common::http_get(env.admin, "/metrics").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    // The stalled ones are closed after the request timeout...
    let started = Instant::now();
    for s in &mut stalled {
        let mut rest = Vec::new();
        tokio::time::timeout(SETTLE, s.read_to_end(&mut rest))
            .await
            .expect("a stalled admin connection is closed")
            .ok();
        assert!(rest.is_empty(), "no answer to half a request");
    }
    assert!(started.elapsed() < SETTLE);
    // ...and their slots serve real requests again.
    let until = Instant::now() + SETTLE;
    loop {
        let got = common::http_get(env.admin, "/metrics").await;
        if got.starts_with("HTTP/1.1 200") {
            assert!(got.contains("causeway_client_connections_total"));
            break;
        }
        assert!(Instant::now() < until, "{got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.stop().await;
}
