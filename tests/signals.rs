//! Signals to the `causeway` binary as an operator sends them: SIGHUP
//! (which `kill -HUP` and a closing terminal send) must not stop it while
//! reload is not supported; SIGTERM drains: a running statement finishes,
//! then the process exits cleanly.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;
use mysql_async::prelude::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn opts(env: &Env, addr: SocketAddr) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(env.cluster.app_user.clone()))
        .pass(Some(env.cluster.app_password.clone()))
        .db_name(Some("app"))
        .prefer_socket(false)
}

/// `SELECT 40 + 2` through the binary, retried until it answers or
/// `limit` passes.
async fn answers(env: &Env, addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut c) = mysql_async::Conn::new(opts(env, addr)).await {
            if let Ok(Some(42)) = c.query_first::<i32, _>("SELECT 40 + 2").await {
                let _ = c.disconnect().await;
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_serving_and_sigterm_drains() {
    let env = Env::start(0).await;
    let port = free_port();
    let text =
        causeway::app::playground_config(&env.cluster, &format!("127.0.0.1:{port}"), "", None);
    let cfg = env.cluster.dir().join("signals.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id().expect("a pid") as i32);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(answers(&env, addr, Duration::from_secs(20)).await);

    // A session open across the SIGHUP keeps working too.
    let mut kept = mysql_async::Conn::new(opts(&env, addr)).await.unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    // Give a default-action SIGHUP time to end the process (it would be
    // immediate), then check it is still there and serving.
    let gone = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
    assert!(gone.is_err(), "SIGHUP stopped the process: {gone:?}");
    assert!(
        answers(&env, addr, Duration::from_secs(5)).await,
        "serves after SIGHUP"
    );
    let one: Option<i32> = kept.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    // SIGTERM while a statement runs: it completes, then the process exits 0.
    let running = tokio::spawn(async move {
        let r = kept.query_first::<i32, _>("SELECT SLEEP(1) + 7").await;
        let _ = kept.disconnect().await;
        r
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .primary_sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(1)%'")
        .await
        .trim()
        .starts_with('1')
    {
        assert!(Instant::now() < deadline, "the statement never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(pid, Signal::SIGTERM).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the running statement finishes")
        .unwrap();
    assert_eq!(
        r.unwrap(),
        Some(7),
        "drained: the statement's result arrived"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the process exits after draining")
        .unwrap();
    assert!(status.success(), "{status:?}");
    env.stop().await;
}
