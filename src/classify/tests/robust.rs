//! Nothing panics, whatever the input: every prefix of every statement of
//! the tables, random text built from SQL fragments, random bytes, and
//! inputs built to exhaust the stack or the time of a careless parser.

use super::super::{classify, mentions_table, Kind};
use super::all_cases;

/// A small deterministic generator (xorshift64*): no dependency, the same
/// inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_prefix_of_every_statement() {
    for (sql, _, _) in all_cases() {
        for end in (0..=sql.len()).filter(|i| sql.is_char_boundary(*i)) {
            let prefix = &sql[..end];
            let _ = classify(prefix);
            let _ = mentions_table(prefix, "t");
            // and the suffixes: statements cut at the front
            let _ = classify(&sql[end..]);
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "UPDATE",
    "FOR",
    "WITH",
    "SET",
    "@",
    "@@",
    "@a",
    ":=",
    "=",
    "(",
    ")",
    ",",
    ";",
    "'",
    "\"",
    "`",
    "\\",
    "/*",
    "*/",
    "/*!",
    "/*M!",
    "--",
    "-- ",
    "#",
    "\n",
    " ",
    "INTO",
    "LOCK",
    "IN",
    "SHARE",
    "MODE",
    "GLOBAL",
    "SESSION",
    "autocommit",
    "1",
    "0",
    "NEXT",
    "VALUE",
    "EXPLAIN",
    "ROUTE",
    "ANALYZE",
    "STATEMENT",
    "CREATE",
    "TEMPORARY",
    "TABLE",
    "BEGIN",
    "START",
    "TRANSACTION",
    "READ",
    "ONLY",
    "causeway:",
    "route=",
    "FORCE_MASTER",
    "LAST_INSERT_ID",
    "é",
];

#[test]
fn random_fragments() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..rng.below(24) {
            s.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
            if rng.below(3) == 0 {
                s.push(' ');
            }
        }
        let _ = classify(&s);
        let _ = mentions_table(&s, "a");
    }
}

#[test]
fn random_ascii_and_bytes() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let ascii: String = (0..len)
            .map(|_| (rng.below(95) as u8 + 32) as char)
            .collect();
        let _ = classify(&ascii);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = classify(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn hostile_shapes() {
    let deep = [
        "(".repeat(100_000),
        format!("{}SELECT 1", "(".repeat(50_000)),
        format!("{}SELECT 1", "EXPLAIN ANALYZE ".repeat(10_000)),
        format!("{}SELECT 1", "SET STATEMENT a=1 FOR ".repeat(10_000)),
        format!("{}SELECT 1", "ANALYZE ".repeat(10_000)),
        format!("WITH {}", "a AS (SELECT 1), ".repeat(10_000)),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(20_000)),
        format!("WITH a AS (SELECT 1) {}", "(".repeat(20_000)),
        format!("(VALUES {}", "ROW(1),".repeat(5_000)),
        "SELECT 1;".repeat(50_000),
        "/*".repeat(50_000),
        "/*!".repeat(50_000),
        "'".repeat(50_001),
        "\\".repeat(50_001),
        "@".repeat(50_000),
        format!("SET {}", "@a=1,".repeat(20_000)),
    ];
    for sql in &deep {
        let _ = classify(sql);
        let _ = mentions_table(sql, "t");
    }
    // depth-limited wrappers are unknown, not wrong
    let nested = format!("{}SELECT 1", "EXPLAIN ANALYZE ".repeat(100));
    assert_eq!(classify(&nested).kind, Kind::Unknown);
}
