//! Opens many client connections to a MySQL-protocol server and keeps them
//! idle: the load behind `benches/txn_pool.sh`'s memory-per-connection
//! figure.
//!
//! ```text
//! cargo build --release --example idle_clients
//! target/release/examples/idle_clients --addr 127.0.0.1:3306 --user app \
//!     --password app-secret --db app --count 5000
//! ```
//!
//! Logs in `--count` connections (`--concurrency` at a time), then prints one
//! line `ready <connected> <failed>` on stdout (the first error goes to
//! stderr) and holds every connection open, sending nothing, until stdin
//! reaches EOF or SIGINT/SIGTERM arrives. Then it closes them and exits: 0
//! when every connection was made, 1 otherwise.
//!
//! Uses only the dev-dependency `mysql_async` and tokio; nothing from the
//! crate itself, so it measures Causeway as any client sees it.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::{Conn, OptsBuilder};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Longest a single login may take before it counts as failed.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the goodbye (COM_QUIT) of all connections may take together.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    host: String,
    port: u16,
    user: String,
    password: String,
    db: Option<String>,
    count: usize,
    concurrency: usize,
}

const USAGE: &str = "usage: idle_clients --addr HOST:PORT --user USER [--password PASS] \
                     [--db DB] [--count N (100)] [--concurrency N (64)]";

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut user = None;
    let mut password = String::new();
    let mut db = None;
    let mut count = 100;
    let mut concurrency = 64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--addr" => addr = Some(value),
            "--user" => user = Some(value),
            "--password" => password = value,
            "--db" => db = Some(value),
            "--count" => count = number(&value)?,
            "--concurrency" => concurrency = number(&value)?.max(1),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    let addr = addr.ok_or_else(|| format!("--addr is required\n{USAGE}"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--addr {addr}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|e| format!("--addr {addr}: bad port: {e}"))?;
    Ok(Args {
        host: host.to_string(),
        port,
        user: user.ok_or_else(|| format!("--user is required\n{USAGE}"))?,
        password,
        db,
        count,
        concurrency,
    })
}

async fn login(opts: OptsBuilder) -> Result<Conn, String> {
    match tokio::time::timeout(LOGIN_TIMEOUT, Conn::new(opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {LOGIN_TIMEOUT:?}")),
    }
}

/// Returns when stdin reaches EOF (or fails) or SIGINT/SIGTERM arrives.
async fn wait_for_release() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // tokio's stdin needs a feature the crate does not enable: read it on a
    // plain thread (left behind at exit) and hear about EOF over a channel.
    let (tx, eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = std::io::stdin().read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    tokio::select! {
        _ = eof => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

// One thread is plenty for idle sockets, and leaves the CPU to the server
// being measured.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let opts = OptsBuilder::default()
        .ip_or_hostname(args.host.clone())
        .tcp_port(args.port)
        .user(Some(args.user.clone()))
        .pass(Some(args.password.clone()))
        .db_name(args.db.clone())
        // Stay on the TCP address given (no switch to the server's socket).
        .prefer_socket(false);

    let began = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut logins = JoinSet::new();
    for _ in 0..args.count {
        let gate = gate.clone();
        let opts = opts.clone();
        logins.spawn(async move {
            let _permit = gate.acquire_owned().await;
            login(opts).await
        });
    }
    let mut conns = Vec::with_capacity(args.count);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(joined) = logins.join_next().await {
        match joined {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("login task: {e}"));
            }
        }
    }
    if let Some(e) = &first_error {
        eprintln!(
            "idle_clients: {failed} of {} logins failed; first: {e}",
            args.count
        );
    }
    eprintln!(
        "idle_clients: {} connected in {:.1} s",
        conns.len(),
        began.elapsed().as_secs_f64()
    );
    println!("ready {} {}", conns.len(), failed);

    if let Err(e) = wait_for_release().await {
        eprintln!("idle_clients: cannot wait for signals: {e}");
    }

    let mut closing = JoinSet::new();
    for c in conns {
        closing.spawn(async move {
            let _ = c.disconnect().await;
        });
    }
    let all_closed = async { while closing.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_TIMEOUT, all_closed)
        .await
        .is_err()
    {
        eprintln!("idle_clients: some connections did not close within {CLOSE_TIMEOUT:?}");
    }
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
