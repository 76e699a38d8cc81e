//! Replication positions. MariaDB GTID positions: one `domain-server-seq`
//! per replication domain, e.g. `0-1-42,1-2-7`; MySQL GTID sets
//! (`uuid:1-5:7-9,...`) in [`mysql`]; and the flavour-neutral [`Position`].
//!
//! Pure: parse, display, merge, and the partial order "covers". Imports
//! nothing from the crate.

use std::collections::BTreeMap;
use std::fmt;

pub mod mysql;

/// One MariaDB GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// A MariaDB GTID position: the last GTID applied per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariaPosition {
    /// domain -> (server, seq)
    domains: BTreeMap<u32, (u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MariaDB GTID position: '{0}'")]
pub struct ParseError(pub String);

impl std::str::FromStr for Gtid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Gtid, ParseError> {
        let bad = || ParseError(s.to_string());
        let mut it = s.trim().splitn(3, '-');
        let domain = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let server = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let seq = it.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        Ok(Gtid {
            domain,
            server,
            seq,
        })
    }
}

impl std::str::FromStr for MariaPosition {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<MariaPosition, ParseError> {
        let mut p = MariaPosition::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: Gtid = part.parse().map_err(|_| ParseError(s.to_string()))?;
            p.add(g);
        }
        Ok(p)
    }
}

impl fmt::Display for MariaPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (d, (s, q)) in &self.domains {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{d}-{s}-{q}")?;
        }
        Ok(())
    }
}

impl MariaPosition {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Records a GTID, keeping the highest sequence number per domain. Two
    /// GTIDs with the same domain and sequence number but different servers
    /// (diverged histories) keep the higher server id, so that `merge` does
    /// not depend on the order of its arguments.
    pub fn add(&mut self, g: Gtid) {
        let e = self.domains.entry(g.domain).or_insert((g.server, g.seq));
        if (g.seq, g.server) >= (e.1, e.0) {
            *e = (g.server, g.seq);
        }
    }

    /// Whether every transaction in `other` is in `self`: for each domain of
    /// `other`, `self` has reached at least the same sequence number.
    pub fn covers(&self, other: &MariaPosition) -> bool {
        other
            .domains
            .iter()
            .all(|(d, (_, q))| self.domains.get(d).is_some_and(|(_, mine)| mine >= q))
    }

    /// How many transactions of `other` `self` lacks, by sequence numbers
    /// per domain (saturating).
    pub fn missing(&self, other: &MariaPosition) -> u64 {
        other.domains.iter().fold(0u64, |n, (d, (_, q))| {
            let have = self.domains.get(d).map_or(0, |(_, mine)| *mine);
            n.saturating_add(q.saturating_sub(have))
        })
    }

    /// The least position covering both.
    pub fn merge(&mut self, other: &MariaPosition) {
        for (d, (s, q)) in &other.domains {
            self.add(Gtid {
                domain: *d,
                server: *s,
                seq: *q,
            });
        }
    }
}

/// A replication position of either server flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Maria(MariaPosition),
    Mysql(mysql::GtidSet),
}

impl From<MariaPosition> for Position {
    fn from(p: MariaPosition) -> Position {
        Position::Maria(p)
    }
}

impl From<mysql::GtidSet> for Position {
    fn from(p: mysql::GtidSet) -> Position {
        Position::Mysql(p)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Maria(p) => p.fmt(f),
            Position::Mysql(p) => p.fmt(f),
        }
    }
}

impl Position {
    /// Parses a MariaDB GTID position (`0-1-42,1-2-7`).
    pub fn parse_maria(s: &str) -> Result<Position, ParseError> {
        s.parse().map(Position::Maria)
    }

    /// Parses a MySQL GTID set (`uuid:1-5:7-9,uuid2:3`).
    pub fn parse_mysql(s: &str) -> Result<Position, mysql::ParseError> {
        s.parse().map(Position::Mysql)
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Position::Maria(p) => p.is_empty(),
            Position::Mysql(p) => p.is_empty(),
        }
    }

    /// Whether every transaction in `other` is in `self`. Positions of
    /// different flavours never cover each other, except that an empty
    /// position (of either flavour) is covered by anything.
    pub fn covers(&self, other: &Position) -> bool {
        match (self, other) {
            (Position::Maria(a), Position::Maria(b)) => a.covers(b),
            (Position::Mysql(a), Position::Mysql(b)) => a.covers(b),
            _ => other.is_empty(),
        }
    }

    /// Same flavour: the least position covering both. Different flavours:
    /// keeps `self`, unless `self` is empty, in which case it becomes
    /// `other` (still an upper bound of both).
    pub fn merge(&mut self, other: &Position) {
        match (&mut *self, other) {
            (Position::Maria(a), Position::Maria(b)) => a.merge(b),
            (Position::Mysql(a), Position::Mysql(b)) => a.merge(b),
            _ => {
                if self.is_empty() {
                    *self = other.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> MariaPosition {
        s.parse().unwrap()
    }

    #[test]
    fn parse_display_round_trip() {
        assert_eq!(p("0-1-42,1-2-7").to_string(), "0-1-42,1-2-7");
        assert_eq!(p("").to_string(), "");
        assert_eq!(p(" 1-2-7 , 0-1-42 ").to_string(), "0-1-42,1-2-7");
        assert!("0-1".parse::<MariaPosition>().is_err());
        assert!("a-b-c".parse::<MariaPosition>().is_err());
        assert!("0-1-2-3".parse::<MariaPosition>().is_err());
    }

    #[test]
    fn covers_is_per_domain() {
        assert!(p("0-1-42").covers(&p("0-1-41")));
        assert!(p("0-1-42").covers(&p("0-1-42")));
        assert!(!p("0-1-41").covers(&p("0-1-42")));
        assert!(!p("0-1-42").covers(&p("0-1-1,1-1-1")));
        assert!(p("0-1-42,1-1-1").covers(&p("0-1-42")));
        assert!(p("0-1-1").covers(&p("")));
    }

    #[test]
    fn merge_is_upper_bound() {
        let mut a = p("0-1-5,1-1-9");
        a.merge(&p("0-2-7,2-1-1"));
        assert_eq!(a.to_string(), "0-2-7,1-1-9,2-1-1");
        assert!(a.covers(&p("0-1-5,1-1-9")) && a.covers(&p("0-2-7,2-1-1")));
    }

    #[test]
    fn maria_edge_cases() {
        // repeated domain keeps the highest seq; newlines as servers print them
        assert_eq!(p("0-1-5,\n0-2-3").to_string(), "0-1-5");
        assert_eq!(p("0-2-3,0-1-5").to_string(), "0-1-5");
        // equal seq, different server: deterministic (higher server)
        assert_eq!(p("0-1-5,0-2-5").to_string(), "0-2-5");
        assert_eq!(p("0-2-5,0-1-5").to_string(), "0-2-5");
        // covers ignores the server id
        assert!(p("0-1-5").covers(&p("0-2-5")) && p("0-2-5").covers(&p("0-1-5")));
        assert_eq!(p("0-1-0").to_string(), "0-1-0");
        assert_eq!(p(",, 0-1-1 ,").to_string(), "0-1-1");
        assert_eq!(
            p("4294967295-4294967295-18446744073709551615").to_string(),
            "4294967295-4294967295-18446744073709551615"
        );
        for bad in [
            "4294967296-1-1",
            "0-1-18446744073709551616",
            "-1-1-1",
            "0--1",
            "x",
        ] {
            let e = bad.parse::<MariaPosition>().unwrap_err();
            assert_eq!(e, ParseError(bad.to_string()));
        }
        let mut e = MariaPosition::default();
        e.merge(&p("0-1-1"));
        assert_eq!(e, p("0-1-1"));
        assert!(p("").covers(&p("")) && !p("").covers(&p("0-1-1")));
    }

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn m(s: &str) -> Position {
        Position::parse_mysql(s).unwrap()
    }

    fn ma(s: &str) -> Position {
        Position::parse_maria(s).unwrap()
    }

    #[test]
    fn position_flavours() {
        let my = m(&format!("{U}:1-5"));
        let mdb = ma("0-1-5");
        assert_eq!(my.to_string(), format!("{U}:1-5"));
        assert_eq!(mdb.to_string(), "0-1-5");
        assert!(Position::parse_maria(&format!("{U}:1-5")).is_err());
        assert!(Position::parse_mysql("0-1-5").is_err());

        assert!(my.covers(&m(&format!("{U}:2"))) && !my.covers(&m(&format!("{U}:6"))));
        assert!(mdb.covers(&ma("0-1-4")) && !mdb.covers(&ma("0-1-6")));
        // different flavours never cover each other...
        assert!(!my.covers(&mdb) && !mdb.covers(&my));
        // ...except that empty is covered by anything
        assert!(my.covers(&ma("")) && mdb.covers(&m("")));
        assert!(ma("").covers(&m("")) && m("").covers(&ma("")));
        assert!(!ma("").covers(&my) && !m("").covers(&mdb));

        let mut x = my.clone();
        x.merge(&m(&format!("{U}:6-7")));
        assert_eq!(x.to_string(), format!("{U}:1-7"));
        let mut y = mdb.clone();
        y.merge(&ma("1-1-1"));
        assert_eq!(y.to_string(), "0-1-5,1-1-1");
        // different flavours: keep self
        let mut z = my.clone();
        z.merge(&mdb);
        assert_eq!(z, my);
        let mut z = mdb.clone();
        z.merge(&my);
        assert_eq!(z, mdb);
        // unless self is empty
        let mut z = ma("");
        z.merge(&my);
        assert_eq!(z, my);
        let mut z = my.clone();
        z.merge(&ma(""));
        assert_eq!(z, my);
        assert_eq!(Position::from(p("0-1-5")), mdb);
    }

    // ---- property tests -------------------------------------------------

    fn gtids(servers: u32) -> impl Strategy<Value = Vec<Gtid>> {
        prop::collection::vec((0u32..3, 1..=servers, 0u64..5), 0..6).prop_map(|v| {
            v.into_iter()
                .map(|(domain, server, seq)| Gtid {
                    domain,
                    server,
                    seq,
                })
                .collect()
        })
    }

    fn build(gs: &[Gtid]) -> MariaPosition {
        let mut p = MariaPosition::default();
        for g in gs {
            p.add(*g);
        }
        p
    }

    /// Positions with arbitrary server ids (diverged histories allowed).
    fn any_pos() -> impl Strategy<Value = MariaPosition> {
        gtids(3).prop_map(|gs| build(&gs))
    }

    /// Positions from one consistent history: a (domain, seq) pair names one
    /// transaction, so its server id is a function of them.
    fn history_pos() -> impl Strategy<Value = MariaPosition> {
        gtids(1).prop_map(|gs| {
            let gs: Vec<Gtid> = gs
                .into_iter()
                .map(|g| Gtid {
                    server: 1 + (g.domain + g.seq as u32) % 3,
                    ..g
                })
                .collect();
            build(&gs)
        })
    }

    fn merged(a: &MariaPosition, b: &MariaPosition) -> MariaPosition {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    /// domain -> seq, i.e. the position up to server ids.
    fn seqs(p: &MariaPosition) -> Vec<(u32, u64)> {
        p.domains.iter().map(|(d, (_, q))| (*d, *q)).collect()
    }

    /// Same-flavour positions of either flavour, or empty of either flavour.
    fn same_flavour() -> impl Strategy<Value = (Position, Position, Position)> {
        let gtid_set = || {
            prop::collection::vec((0usize..2, 1u64..8), 0..6).prop_map(|v| {
                let mut s = mysql::GtidSet::default();
                for (u, n) in v {
                    let uuid = [
                        "3e11fa47-71ca-11e1-9e33-c80aa9429562",
                        "8a94f357-aab4-11df-86ab-c80aa9429562",
                    ][u];
                    s.add(uuid, n).unwrap();
                }
                Position::Mysql(s)
            })
        };
        let maria = || history_pos().prop_map(Position::Maria);
        prop_oneof![
            (maria(), maria(), maria()),
            (gtid_set(), gtid_set(), gtid_set()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn maria_covers_is_reflexive(a in any_pos()) {
            prop_assert!(a.covers(&a));
            prop_assert!(a.covers(&MariaPosition::default()));
        }

        #[test]
        fn maria_covers_is_transitive(a in any_pos(), b in any_pos(), c in any_pos()) {
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c));
            }
            let b2 = merged(&c, &b);
            let a2 = merged(&b2, &a);
            prop_assert!(a2.covers(&b2) && b2.covers(&c) && a2.covers(&c));
        }

        #[test]
        fn maria_covers_is_antisymmetric(a in history_pos(), b in history_pos(), x in any_pos(), y in any_pos()) {
            // Within one history: equal canonical forms.
            if a.covers(&b) && b.covers(&a) {
                prop_assert_eq!(a.to_string(), b.to_string());
                prop_assert_eq!(&a, &b);
            }
            // Across diverged histories covers ignores server ids, so only the
            // per-domain sequence numbers must agree.
            if x.covers(&y) && y.covers(&x) {
                prop_assert_eq!(seqs(&x), seqs(&y));
            }
        }

        #[test]
        fn maria_merge_is_least_upper_bound(a in any_pos(), b in any_pos(), c in any_pos()) {
            let m = merged(&a, &b);
            prop_assert!(m.covers(&a) && m.covers(&b));
            if c.covers(&a) && c.covers(&b) {
                prop_assert!(c.covers(&m));
            }
            prop_assert!(merged(&c, &m).covers(&m));
        }

        #[test]
        fn maria_merge_is_commutative_and_idempotent(a in any_pos(), b in any_pos()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&a, &b).to_string(), merged(&b, &a).to_string());
            prop_assert_eq!(&merged(&a, &a), &a);
            prop_assert_eq!(&merged(&merged(&a, &b), &b), &merged(&a, &b));
        }

        #[test]
        fn maria_display_parse_round_trip(a in any_pos()) {
            let s = a.to_string();
            let back: MariaPosition = s.parse().unwrap();
            prop_assert_eq!(&back, &a);
            prop_assert_eq!(back.to_string(), s);
        }

        #[test]
        fn position_order_laws((a, b, c) in same_flavour()) {
            prop_assert!(a.covers(&a));
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c));
            }
            if a.covers(&b) && b.covers(&a) {
                prop_assert_eq!(a.to_string(), b.to_string());
            }
            let mut m = a.clone();
            m.merge(&b);
            prop_assert!(m.covers(&a) && m.covers(&b));
            if c.covers(&a) && c.covers(&b) {
                prop_assert!(c.covers(&m));
            }
            let mut m2 = b.clone();
            m2.merge(&a);
            prop_assert_eq!(&m, &m2);
            let back = match &a {
                Position::Maria(_) => Position::parse_maria(&a.to_string()).unwrap(),
                Position::Mysql(_) => Position::parse_mysql(&a.to_string()).unwrap(),
            };
            prop_assert_eq!(back, a);
        }

        #[test]
        fn position_cross_flavour(a in any_pos(), n in 0u64..4) {
            let mut s = mysql::GtidSet::default();
            if n > 0 {
                s.add_interval("3e11fa47-71ca-11e1-9e33-c80aa9429562", 1, n).unwrap();
            }
            let (pa, ps) = (Position::Maria(a), Position::Mysql(s));
            prop_assert_eq!(pa.covers(&ps), ps.is_empty());
            prop_assert_eq!(ps.covers(&pa), pa.is_empty());
            // merge stays an upper bound whenever one side is empty
            let mut m = pa.clone();
            m.merge(&ps);
            if pa.is_empty() || ps.is_empty() {
                prop_assert!(m.covers(&pa) && m.covers(&ps));
            } else {
                prop_assert_eq!(&m, &pa);
            }
        }
    }
}
