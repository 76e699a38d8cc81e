//! Replication positions. MariaDB GTID positions: one `domain-server-seq`
//! per replication domain, e.g. `0-1-42,1-2-7`.
//!
//! Pure: parse, display, merge, and the partial order "covers". Imports
//! nothing from the crate.

use std::collections::BTreeMap;
use std::fmt;

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

    /// Records a GTID, keeping the highest sequence number per domain.
    pub fn add(&mut self, g: Gtid) {
        let e = self.domains.entry(g.domain).or_insert((g.server, g.seq));
        if g.seq >= e.1 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
