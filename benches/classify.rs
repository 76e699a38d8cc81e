//! Micro-benchmarks of `causeway::classify`: the fast path against a full
//! `sqlparser` parse (MySQL dialect) of the same statements, per group of
//! a corpus of sysbench and ORM/connector statements, plus the single
//! point select the targets are stated for (< 300 ns median, >= 20x
//! faster than `sqlparser`).
//!
//! Run: `cargo bench --bench classify` (about 45 s). Each group reports
//! the time for the whole group (throughput in statements/s); divide by
//! the group size for ns per statement. Before measuring, the bench
//! prints
//! - the heap allocations of `classify` per group: none, except in
//!   `hinted`, where a hint that carries a value (`consistency=session`)
//!   is copied into the `Class`;
//! - a quick table of ns per statement, `classify` against `sqlparser`,
//!   for every statement of the corpus (plain `Instant` timing; criterion's
//!   figures are the reference).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use causeway::classify::classify;

/// Counts allocations, to show that the fast path makes none.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates every call to the system allocator unchanged; the
// counter is a relaxed atomic that touches no allocator state.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// sysbench's point select, as sent with `--db-ps-mode=disable`.
const POINT_SELECT: &str = "SELECT c FROM sbtest1 WHERE id=5033";

const SYSBENCH_READ: &[&str] = &[
    "SELECT c FROM sbtest1 WHERE id=5033",
    "SELECT c FROM sbtest4 WHERE id BETWEEN 4011 AND 4110",
    "SELECT SUM(k) FROM sbtest2 WHERE id BETWEEN 5002 AND 5101",
    "SELECT c FROM sbtest1 WHERE id BETWEEN 301 AND 400 ORDER BY c",
    "SELECT DISTINCT c FROM sbtest3 WHERE id BETWEEN 7781 AND 7880 ORDER BY c",
];

const SYSBENCH_WRITE: &[&str] = &[
    "BEGIN",
    "UPDATE sbtest1 SET k=k+1 WHERE id=5012",
    "UPDATE sbtest2 SET c='71475133745-01345578163-68297040406-49939612212-85398547045-66137417463-45470787393-43296632437-21418287457-09541358532' WHERE id=4991",
    "DELETE FROM sbtest3 WHERE id=5033",
    "INSERT INTO sbtest3 (id, k, c, pad) VALUES (5033, 4993, '68487932199-96439406143-93774651418-41631865787-96406072701-20604855487-25459966574-28203206787-41238978918-19503783441', '22195207048-70116052123-74140395089-76317954521-98694025897')",
    "COMMIT",
];

const ORM: &[&str] = &[
    "select u1_0.id,u1_0.email,u1_0.name from users u1_0 where u1_0.id=?",
    "SELECT `users`.* FROM `users` WHERE `users`.`id` = 42 LIMIT 1",
    "SELECT `orders`.`id`, `orders`.`total` FROM `orders` INNER JOIN `users` ON `users`.`id` = `orders`.`user_id` WHERE `users`.`email` = 'a@example.com' ORDER BY `orders`.`created_at` DESC LIMIT 20",
    "INSERT INTO `users` (`email`, `name`, `created_at`) VALUES ('a@example.com', 'Ann', '2024-05-01 10:00:00')",
    "UPDATE `users` SET `name` = 'Bob', `updated_at` = '2024-05-01 10:00:00' WHERE `users`.`id` = 42",
    "select next_val as id_val from hibernate_sequence for update",
    "SELECT COUNT(*) AS `__count` FROM `app_item` WHERE `app_item`.`owner_id` = 7",
];

const CONNECT: &[&str] = &[
    "/* mysql-connector-j-8.0.33 (Revision: 7d6b0800528b6b25c68b52dc10d6c1c8429c100c) */SELECT  @@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS character_set_client, @@character_set_connection AS character_set_connection, @@character_set_results AS character_set_results, @@character_set_server AS character_set_server, @@collation_server AS collation_server, @@init_connect AS init_connect, @@interactive_timeout AS interactive_timeout, @@max_allowed_packet AS max_allowed_packet, @@sql_mode AS sql_mode, @@time_zone AS time_zone, @@transaction_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout",
    "SET NAMES utf8mb4",
    "SET character_set_results = NULL",
    "SET autocommit=1",
    "SELECT @@session.transaction_read_only",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET @@SESSION.sql_mode = CONCAT(CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), ',NO_AUTO_VALUE_ON_ZERO'),  @@SESSION.sql_auto_is_null = 0, @@SESSION.wait_timeout = 2147483",
    "SELECT @@version_comment LIMIT 1",
    "SHOW VARIABLES LIKE 'lower_case%'",
    "SELECT DATABASE()",
];

const HINTED: &[&str] = &[
    "/*FORCE_MASTER*/ SELECT c FROM sbtest1 WHERE id=5033",
    "/* causeway: route=replica consistency=session */ SELECT c FROM sbtest1 WHERE id=5033",
    "SELECT c FROM sbtest1 WHERE id=5033 -- FOR UPDATE\n",
    "SELECT 'FOR UPDATE', c FROM sbtest1 WHERE id=5033 /* FOR UPDATE */",
];

/// `WITH` statements: the fast path finds the main statement itself.
const CTE: &[&str] = &[
    "WITH x AS (SELECT id FROM t WHERE a = 1) UPDATE t JOIN x USING (id) SET b = 2",
    "WITH RECURSIVE cte (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM cte WHERE n < 5) SELECT * FROM cte",
];

const GROUPS: &[(&str, &[&str])] = &[
    ("sysbench_read", SYSBENCH_READ),
    ("sysbench_write", SYSBENCH_WRITE),
    ("orm", ORM),
    ("connect", CONNECT),
    ("hinted", HINTED),
    ("cte", CTE),
];

/// Prints the allocations `classify` makes per statement of each group.
fn report_allocations() {
    for (name, corpus) in GROUPS
        .iter()
        .copied()
        .chain([("point_select", &[POINT_SELECT][..])])
    {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for sql in corpus {
            black_box(classify(black_box(sql)));
        }
        let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
        eprintln!(
            "classify allocations, {name}: {n} for {} statements",
            corpus.len()
        );
    }
}

/// Nanoseconds per call of `f`: the median of 15 rounds of `iters` calls.
fn time_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

/// A quick table of ns per statement, classify against sqlparser, for
/// every statement of the corpus (plain `Instant` timing, median of 15
/// rounds; criterion's figures below are the reference).
fn report_per_statement() {
    eprintln!(
        "{:>10} {:>10} {:>7}  statement",
        "classify", "sqlparser", "ratio"
    );
    for (name, corpus) in GROUPS {
        for sql in *corpus {
            let fast = time_ns(2_000, || {
                black_box(classify(black_box(sql)));
            });
            let slow = time_ns(200, || parse(sql));
            let shown: String = sql.chars().take(60).collect();
            eprintln!(
                "{fast:>8.0}ns {slow:>8.0}ns {:>6.1}x  {name}: {shown}",
                slow / fast
            );
        }
    }
}

fn parse(sql: &str) {
    // A statement sqlparser rejects costs what it costs: the error is the
    // result, as the classifier's fallback would see it.
    let _ = black_box(Parser::parse_sql(&MySqlDialect {}, black_box(sql)));
}

fn bench_groups(c: &mut Criterion) {
    report_allocations();
    report_per_statement();
    for (name, corpus) in GROUPS {
        let mut g = c.benchmark_group(*name);
        g.throughput(Throughput::Elements(corpus.len() as u64));
        g.bench_function("classify", |b| {
            b.iter(|| {
                for sql in *corpus {
                    black_box(classify(black_box(sql)));
                }
            })
        });
        g.bench_function("sqlparser", |b| {
            b.iter(|| {
                for sql in *corpus {
                    parse(sql);
                }
            })
        });
        g.finish();
    }
    let mut g = c.benchmark_group("point_select");
    g.throughput(Throughput::Elements(1));
    g.bench_function("classify", |b| {
        b.iter(|| black_box(classify(black_box(POINT_SELECT))))
    });
    g.bench_function("sqlparser", |b| b.iter(|| parse(POINT_SELECT)));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = bench_groups }
criterion_main!(benches);
