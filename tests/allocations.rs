//! Heap allocations per autocommit point read, counted on Causeway's own
//! threads (issue 12's target: at most 3 per read at the session level).
//!
//! Causeway runs in-process on its own tokio runtime whose threads mark
//! themselves with a thread-local flag; the counting allocator below counts
//! only allocations made on marked threads. The client (mysql_async) runs on
//! the test's runtime, so its allocations are not counted. The monitor and
//! the pool sweeper run on Causeway's runtime too: their rate is measured
//! over an idle window and printed beside the figure, and their intervals are
//! raised so that they add little to the count.
//!
//! The test asserts a ceiling equal to today's figure rounded up, so a change
//! that adds allocations to the read path fails here. Lower `CEILING` when
//! the path gets leaner.
//!
//! To see where the allocations come from:
//! `CAUSEWAY_ALLOC_SAMPLE=50 cargo test --release --test allocations -- --nocapture`
//! captures a backtrace of every 50th counted allocation during the measured
//! reads and prints the allocation sites in Causeway's source, most frequent
//! first (the innermost `src/` frame, and every `src/` frame on the stack).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway::config::Config;
use causeway::playground::{Cluster, ClusterOptions};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;

/// Allocations (alloc + realloc) per read that the test accepts: today's
/// measured figure (0.01 on 2026-12-05, 11.07 before the hot path was
/// trimmed) rounded up. Issue 12 targets 3; one allocation per read added
/// back to the path fails here.
const CEILING: f64 = 1.0;
/// Reads to warm up (pools, caches, first-use allocations), then to count.
const WARMUP: u64 = 2_000;
const READS: u64 = 5_000;
const ROWS: u64 = 100;

thread_local! {
    /// Set on the proxy runtime's threads.
    static PROXY_THREAD: Cell<bool> = const { Cell::new(false) };
    /// Set while the allocator itself records a sample (not counted).
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Every n-th counted allocation records a backtrace (0: none).
static SAMPLE_EVERY: AtomicU64 = AtomicU64::new(0);
static SAMPLING: AtomicBool = AtomicBool::new(false);
static SAMPLED: AtomicUsize = AtomicUsize::new(0);
static SAMPLES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());
const MAX_SAMPLES: usize = 2_000;

struct Counting;

impl Counting {
    fn note(&self, size: usize, is_realloc: bool) {
        let counted = PROXY_THREAD.with(Cell::get) && !IN_HOOK.with(Cell::get);
        if !counted {
            return;
        }
        let n = if is_realloc {
            REALLOCS.fetch_add(1, Ordering::Relaxed);
            ALLOCS.load(Ordering::Relaxed)
        } else {
            ALLOCS.fetch_add(1, Ordering::Relaxed) + 1
        };
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        let every = SAMPLE_EVERY.load(Ordering::Relaxed);
        if every > 0
            && SAMPLING.load(Ordering::Relaxed)
            && n % every == 0
            && SAMPLED.load(Ordering::Relaxed) < MAX_SAMPLES
        {
            IN_HOOK.with(|h| h.set(true));
            let bt = Backtrace::force_capture();
            if let Ok(mut v) = SAMPLES.lock() {
                v.push(bt);
                SAMPLED.store(v.len(), Ordering::Relaxed);
            }
            IN_HOOK.with(|h| h.set(false));
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping around it touches only atomics, `const`-initialised
// thread-locals without destructors, and (while `IN_HOOK` keeps it from
// recursing) a mutex-guarded Vec.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note(layout.size(), false);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note(layout.size(), false);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note(new_size, true);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy, Debug)]
struct Count {
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

fn snapshot() -> Count {
    Count {
        allocs: ALLOCS.load(Ordering::Relaxed),
        reallocs: REALLOCS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

fn since(a: Count) -> Count {
    let b = snapshot();
    Count {
        allocs: b.allocs - a.allocs,
        reallocs: b.reallocs - a.reallocs,
        bytes: b.bytes - a.bytes,
    }
}

/// Causeway on a runtime of its own whose threads are counted.
struct Proxy {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
}

fn start_proxy(cluster: &Cluster) -> Proxy {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("causeway-proxy")
        .on_thread_start(|| PROXY_THREAD.with(|f| f.set(true)))
        .enable_all()
        .build()
        .expect("proxy runtime");
    let (listener, admin) = rt.block_on(async {
        let l = causeway::app::bind_listener("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let a = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        (l, a)
    });
    let addr = listener.local_addr().expect("proxy address");
    let admin_addr = admin.local_addr().expect("admin address");
    // The default policy (session level, reads on replicas). The monitor's
    // polls are spaced out so that they add little to the count; they are
    // not on the read path.
    let mut text =
        causeway::app::playground_config(cluster, &addr.to_string(), &admin_addr.to_string(), None);
    text = text.replace(
        "interval_ms = 50\n",
        "interval_ms = 1000\nposition_interval_ms = 1000\n",
    );
    let path = cluster.dir().join("causeway.toml");
    std::fs::write(&path, &text).expect("write config");
    let config = Arc::new(Config::load(&path).expect("config loads"));
    let (tx, rx) = watch::channel(false);
    rt.spawn(causeway::app::run(config, listener, Some(admin), rx));
    Proxy {
        rt,
        addr,
        shutdown: tx,
    }
}

async fn point_reads(c: &mut mysql_async::Conn, from: u64, n: u64) {
    for i in from..from + n {
        let id = i % ROWS + 1;
        let got: Option<String> = c
            .query_first(format!("SELECT c FROM t WHERE id = {id}"))
            .await
            .expect("point read");
        assert_eq!(got.as_deref(), Some(format!("row-{id}").as_str()));
    }
}

/// Prints the most frequent allocation sites in Causeway's source among the
/// sampled backtraces.
fn print_sites() {
    let samples = match SAMPLES.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return,
    };
    if samples.is_empty() {
        return;
    }
    let mut innermost: HashMap<String, usize> = HashMap::new();
    let mut anywhere: HashMap<String, usize> = HashMap::new();
    for bt in &samples {
        let text = bt.to_string();
        let mut seen_inner = false;
        let mut on_stack: Vec<String> = Vec::new();
        let mut last_fn = String::new();
        for line in text.lines() {
            let l = line.trim();
            if let Some((_, name)) = l.split_once(": ") {
                if l.split(':')
                    .next()
                    .is_some_and(|n| n.trim().parse::<u32>().is_ok())
                {
                    last_fn = name.to_string();
                    continue;
                }
            }
            let Some(at) = l.strip_prefix("at ") else {
                continue;
            };
            let ours = (at.starts_with("./src/")
                || at.contains("/src/") && !at.contains("/.cargo/"))
                && !at.contains("/rustc/")
                && !at.contains("/tests/");
            if !ours {
                continue;
            }
            let site = format!("{at}  ({last_fn})");
            if !seen_inner {
                *innermost.entry(site.clone()).or_default() += 1;
                seen_inner = true;
            }
            if !on_stack.contains(&site) {
                on_stack.push(site);
            }
        }
        if !seen_inner {
            *innermost.entry("(no Causeway frame)".into()).or_default() += 1;
        }
        for s in on_stack {
            *anywhere.entry(s).or_default() += 1;
        }
    }
    let top = |m: HashMap<String, usize>, title: &str| {
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        println!("{title} ({} samples):", samples.len());
        for (site, n) in v.into_iter().take(25) {
            println!("  {n:5}  {site}");
        }
    };
    top(innermost, "innermost Causeway frame of sampled allocations");
    top(anywhere, "Causeway frames anywhere on the sampled stacks");
}

#[test]
fn autocommit_point_read_allocations() {
    // The client's runtime: one thread, not counted.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let cluster = client_rt.block_on(start_cluster());
    let proxy = start_proxy(&cluster);
    let per_read = client_rt.block_on(measure(&cluster, proxy.addr));
    let _ = proxy.shutdown.send(true);
    proxy.rt.shutdown_timeout(Duration::from_secs(10));
    drop(cluster);
    assert!(
        per_read <= CEILING,
        "{per_read:.2} heap allocations per autocommit read on Causeway's threads; the ceiling is {CEILING}"
    );
}

async fn start_cluster() -> Cluster {
    let every = std::env::var("CAUSEWAY_ALLOC_SAMPLE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    SAMPLE_EVERY.store(every, Ordering::Relaxed);

    let cluster = Cluster::start(ClusterOptions {
        dir: None,
        replicas: 2,
    })
    .await
    .expect("playground cluster starts");
    // Created on the primary directly: the client session writes nothing,
    // so at the session level its reads need no replica position.
    let mut setup = String::from(
        "CREATE TABLE app.t (id INT PRIMARY KEY, c VARCHAR(64)); INSERT INTO app.t VALUES ",
    );
    for id in 1..=ROWS {
        if id > 1 {
            setup.push(',');
        }
        setup.push_str(&format!("({id}, 'row-{id}')"));
    }
    cluster
        .root_sql(&cluster.primary, &setup)
        .await
        .expect("create the table");
    cluster
        .wait_replicas_caught_up(Duration::from_secs(60))
        .await
        .expect("replicas catch up");
    cluster
}

/// Allocations per read on Causeway's threads.
async fn measure(cluster: &Cluster, proxy: std::net::SocketAddr) -> f64 {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(proxy.ip().to_string())
        .tcp_port(proxy.port())
        .user(Some(cluster.app_user.clone()))
        .pass(Some(cluster.app_password.clone()))
        .db_name(Some("app"))
        .prefer_socket(false);
    let mut c = mysql_async::Conn::new(opts)
        .await
        .expect("connect through causeway");

    // The reads must be the split reads the figure is about: on a replica.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let id: Option<u32> = c
            .query_first("SELECT @@server_id")
            .await
            .expect("server id");
        if id != Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "reads never reached a replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    point_reads(&mut c, 0, WARMUP).await;

    let started = Instant::now();
    let before = snapshot();
    SAMPLING.store(true, Ordering::Relaxed);
    point_reads(&mut c, 0, READS).await;
    SAMPLING.store(false, Ordering::Relaxed);
    let reads = since(before);
    let took = started.elapsed();

    // The same wall time with no reads: what the monitor and the other
    // background tasks allocate meanwhile.
    let before = snapshot();
    tokio::time::sleep(took).await;
    let idle = since(before);

    let per_read = (reads.allocs + reads.reallocs) as f64 / READS as f64;
    let idle_per_read = (idle.allocs + idle.reallocs) as f64 / READS as f64;
    println!(
        "{READS} autocommit point reads (text protocol, session level, default policy) in {took:?}: \
         {} allocs + {} reallocs on Causeway's threads = {per_read:.2} per read ({:.0} bytes per read); \
         the same time idle: {idle_per_read:.2} per read of background work, so {:.2} per read net",
        reads.allocs,
        reads.reallocs,
        reads.bytes as f64 / READS as f64,
        per_read - idle_per_read,
    );
    print_sites();

    c.disconnect().await.expect("disconnect");
    per_read
}
