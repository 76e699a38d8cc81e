//! MySQL GTID sets: `uuid:1-5:7-9,uuid2:3`.
//!
//! A GTID set is, per source uuid, a set of transaction numbers (GNOs),
//! stored as sorted, non-overlapping, non-adjacent closed intervals. Pure:
//! parse, display, merge (union) and the partial order "covers" (superset).
//!
//! Not handled: MySQL 8.3+ tagged GTIDs (`uuid:tag:1-5`) are rejected as
//! malformed. Not yet tested against a real MySQL server.

use std::collections::BTreeMap;
use std::fmt;

/// The largest GNO MySQL accepts (GNOs are signed 64-bit, from 1).
pub const MAX_GNO: u64 = i64::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MySQL GTID set: '{0}'")]
pub struct ParseError(pub String);

/// A MySQL GTID set. Canonical by construction: uuids are lowercase, no uuid
/// has an empty interval list, and each list is sorted and coalesced, so
/// structural equality is set equality.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    /// uuid (lowercase, hyphenated) -> sorted, disjoint, non-adjacent
    /// closed intervals `(first, last)` with `1 <= first <= last <= MAX_GNO`.
    sids: BTreeMap<String, Vec<(u64, u64)>>,
}

/// Validates a hyphenated uuid (`8-4-4-4-12` hex digits) and lowercases it.
fn normalise_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let ok = b.iter().enumerate().all(|(i, c)| {
        if matches!(i, 8 | 13 | 18 | 23) {
            *c == b'-'
        } else {
            c.is_ascii_hexdigit()
        }
    });
    ok.then(|| s.to_ascii_lowercase())
}

fn parse_gno(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    (1..=MAX_GNO).contains(&n).then_some(n)
}

fn parse_interval(s: &str) -> Option<(u64, u64)> {
    match s.split_once('-') {
        None => parse_gno(s).map(|n| (n, n)),
        Some((a, b)) => {
            let (a, b) = (parse_gno(a)?, parse_gno(b)?);
            (a <= b).then_some((a, b))
        }
    }
}

/// Inserts `[a, b]` into a sorted, disjoint, non-adjacent interval list,
/// coalescing with every interval it overlaps or touches.
fn insert_interval(ivs: &mut Vec<(u64, u64)>, a: u64, b: u64) {
    // First interval that overlaps/touches [a, b] or lies after it.
    let start = ivs.partition_point(|&(_, hi)| hi.saturating_add(1) < a);
    // One past the last interval that overlaps/touches [a, b].
    let end = ivs.partition_point(|&(lo, _)| lo <= b.saturating_add(1));
    let (mut lo, mut hi) = (a, b);
    if start < end {
        lo = lo.min(ivs[start].0);
        hi = hi.max(ivs[end - 1].1);
    }
    ivs.splice(start..end, [(lo, hi)]);
}

/// Whether `[a, b]` lies inside one interval of `ivs`.
fn interval_covered(ivs: &[(u64, u64)], a: u64, b: u64) -> bool {
    let i = ivs.partition_point(|&(_, hi)| hi < a);
    ivs.get(i).is_some_and(|&(lo, hi)| lo <= a && b <= hi)
}

impl std::str::FromStr for GtidSet {
    type Err = ParseError;

    /// Parses `uuid:1-5:7-9,uuid2:3`. Tolerates whitespace and newlines
    /// around separators (as `@@gtid_executed` prints them), uppercase uuids,
    /// repeated uuids, and unordered or overlapping intervals. The empty
    /// string is the empty set.
    fn from_str(s: &str) -> Result<GtidSet, ParseError> {
        let bad = || ParseError(s.to_string());
        let mut set = GtidSet::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut pieces = part.split(':');
            let uuid = normalise_uuid(pieces.next().unwrap_or("").trim()).ok_or_else(bad)?;
            let mut intervals = Vec::new();
            for piece in pieces {
                intervals.push(parse_interval(piece).ok_or_else(bad)?);
            }
            if intervals.is_empty() {
                return Err(bad());
            }
            let ivs = set.sids.entry(uuid).or_default();
            for (a, b) in intervals {
                insert_interval(ivs, a, b);
            }
        }
        Ok(set)
    }
}

impl fmt::Display for GtidSet {
    /// Canonical form: uuids sorted, intervals sorted and coalesced, each
    /// written `a-b` or `a`; `,` between uuids, no whitespace.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (uuid, ivs)) in self.sids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(uuid)?;
            for &(a, b) in ivs {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

impl GtidSet {
    pub fn is_empty(&self) -> bool {
        self.sids.is_empty()
    }

    /// Adds the transactions `uuid:first-last`.
    pub fn add_interval(&mut self, uuid: &str, first: u64, last: u64) -> Result<(), ParseError> {
        let bad = || ParseError(format!("{uuid}:{first}-{last}"));
        let uuid = normalise_uuid(uuid.trim()).ok_or_else(bad)?;
        if first == 0 || first > last || last > MAX_GNO {
            return Err(bad());
        }
        insert_interval(self.sids.entry(uuid).or_default(), first, last);
        Ok(())
    }

    /// Adds one transaction `uuid:gno`.
    pub fn add(&mut self, uuid: &str, gno: u64) -> Result<(), ParseError> {
        self.add_interval(uuid, gno, gno)
    }

    /// Whether transaction `uuid:gno` is in the set (uuid case-insensitive).
    pub fn contains(&self, uuid: &str, gno: u64) -> bool {
        let uuid = uuid.trim().to_ascii_lowercase();
        self.sids
            .get(&uuid)
            .is_some_and(|ivs| interval_covered(ivs, gno, gno))
    }

    /// The intervals recorded for `uuid` (case-insensitive), sorted.
    pub fn intervals(&self, uuid: &str) -> &[(u64, u64)] {
        self.sids
            .get(&uuid.trim().to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Whether every transaction in `other` is in `self` (other ⊆ self).
    pub fn covers(&self, other: &GtidSet) -> bool {
        other.sids.iter().all(|(uuid, theirs)| {
            self.sids
                .get(uuid)
                .is_some_and(|mine| theirs.iter().all(|&(a, b)| interval_covered(mine, a, b)))
        })
    }

    /// How many transactions of `other` are not in `self` (saturating).
    pub fn missing(&self, other: &GtidSet) -> u64 {
        let mut n: u64 = 0;
        for (uuid, theirs) in &other.sids {
            let mine = self.sids.get(uuid).map_or(&[][..], Vec::as_slice);
            for &(a, b) in theirs {
                let mut count = b - a + 1;
                for &(x, y) in mine {
                    let lo = x.max(a);
                    let hi = y.min(b);
                    if lo <= hi {
                        count -= hi - lo + 1;
                    }
                }
                n = n.saturating_add(count);
            }
        }
        n
    }

    /// The union: the least set covering both.
    pub fn merge(&mut self, other: &GtidSet) {
        for (uuid, theirs) in &other.sids {
            let mine = self.sids.entry(uuid.clone()).or_default();
            for &(a, b) in theirs {
                insert_interval(mine, a, b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const B: &str = "8a94f357-aab4-11df-86ab-c80aa9429562";
    const C: &str = "f0000000-0000-0000-0000-000000000001";

    fn g(s: &str) -> GtidSet {
        s.parse().unwrap()
    }

    #[test]
    fn parse_display_canonical() {
        assert_eq!(g("").to_string(), "");
        assert_eq!(g("  \n ").to_string(), "");
        assert!(g("").is_empty());
        assert_eq!(
            g(&format!("{A}:1-5:7-9")).to_string(),
            format!("{A}:1-5:7-9")
        );
        assert_eq!(g(&format!("{A}:5")).to_string(), format!("{A}:5"));
        assert_eq!(g(&format!("{A}:5-5")).to_string(), format!("{A}:5"));
        // uuids sorted, intervals sorted and coalesced (overlap and adjacency)
        assert_eq!(
            g(&format!("{B}:3,{A}:7-9:1-5:6")).to_string(),
            format!("{A}:1-9,{B}:3")
        );
        assert_eq!(
            g(&format!("{A}:1-3:2-8:10:9")).to_string(),
            format!("{A}:1-10")
        );
        assert_eq!(
            g(&format!("{A}:4,{A}:1-2")).to_string(),
            format!("{A}:1-2:4")
        );
        // an interval swallowing several
        assert_eq!(
            g(&format!("{A}:1:3:5:7:20,{A}:2-8")).to_string(),
            format!("{A}:1-8:20")
        );
    }

    #[test]
    fn parse_tolerates_gtid_executed_layout_and_case() {
        let upper = A.to_ascii_uppercase();
        let s = format!("{upper}:1-5,\n{B}:1-3:11 ,\n  {C} : 4 - 6 \n");
        assert_eq!(g(&s).to_string(), format!("{A}:1-5,{B}:1-3:11,{C}:4-6"));
        assert!(g(&s).contains(A, 3));
        assert!(g(&s).contains(&upper, 3));
        assert_eq!(g(&s).intervals(&upper), &[(1, 5)]);
    }

    #[test]
    fn parse_rejects_malformed() {
        for s in [
            "x",
            A,
            &format!("{A}:"),
            &format!("{A}::5"),
            &format!("{A}:0"),
            &format!("{A}:0-3"),
            &format!("{A}:5-3"),
            &format!("{A}:1-2-3"),
            &format!("{A}:-3"),
            &format!("{A}:3-"),
            &format!("{A}:+3"),
            &format!("{A}:a"),
            &format!("{A}:1 2"),
            &format!("{A}:9223372036854775808"),
            &format!("{A}:1-99999999999999999999"),
            &format!("{A}:tag:1-5"),
            "3e11fa47-71ca-11e1-9e33-c80aa942956:1",
            "3e11fa47x71ca-11e1-9e33-c80aa9429562:1",
            "3e11fa47-71ca-11e1-9e33-c80aa942956g:1",
            "3e11fa4771ca11e19e33c80aa9429562:1",
            ":1-5",
        ] {
            let err = s.parse::<GtidSet>().unwrap_err();
            assert_eq!(err, ParseError(s.to_string()), "{s}");
            assert!(err.to_string().contains(s));
        }
        // the largest GNO is fine
        assert_eq!(
            g(&format!("{A}:9223372036854775806-9223372036854775807")).to_string(),
            format!("{A}:9223372036854775806-9223372036854775807")
        );
    }

    #[test]
    fn contains_and_covers() {
        let s = g(&format!("{A}:1-5:7-9,{B}:3"));
        assert!(s.contains(A, 1) && s.contains(A, 5) && s.contains(A, 7) && s.contains(A, 9));
        assert!(!s.contains(A, 6) && !s.contains(A, 10) && !s.contains(A, 0));
        assert!(s.contains(B, 3) && !s.contains(B, 2) && !s.contains(C, 1));

        assert!(s.covers(&s));
        assert!(s.covers(&g("")));
        assert!(g("").covers(&g("")));
        assert!(!g("").covers(&s));
        assert!(s.covers(&g(&format!("{A}:2-4:8,{B}:3"))));
        assert!(!s.covers(&g(&format!("{A}:5-7"))), "spans the gap");
        assert!(!s.covers(&g(&format!("{A}:6"))));
        assert!(!s.covers(&g(&format!("{C}:1"))));
        assert!(!s.covers(&g(&format!("{A}:1,{C}:1"))));
        assert!(!g(&format!("{A}:1-5")).covers(&g(&format!("{A}:1-5,{B}:1"))));
    }

    #[test]
    fn merge_is_union() {
        let mut a = g(&format!("{A}:1-5,{B}:3"));
        a.merge(&g(&format!("{A}:6-9:20,{C}:1")));
        assert_eq!(a.to_string(), format!("{A}:1-9:20,{B}:3,{C}:1"));
        let mut e = GtidSet::default();
        e.merge(&a);
        assert_eq!(e, a);
        a.merge(&GtidSet::default());
        assert_eq!(e, a);
    }

    #[test]
    fn add_validates() {
        let mut s = GtidSet::default();
        s.add(&A.to_ascii_uppercase(), 4).unwrap();
        s.add_interval(A, 1, 3).unwrap();
        assert_eq!(s.to_string(), format!("{A}:1-4"));
        assert!(s.add(A, 0).is_err());
        assert!(s.add_interval(A, 3, 2).is_err());
        assert!(s.add(A, MAX_GNO + 1).is_err());
        assert!(s.add("nope", 1).is_err());
        assert_eq!(s.to_string(), format!("{A}:1-4"));
    }

    // ---- property tests -------------------------------------------------

    const UUIDS: [&str; 3] = [A, B, C];

    /// Points (uuid index, gno) in a small universe, so that random sets are
    /// often related by inclusion.
    fn points() -> impl Strategy<Value = Vec<(usize, u64)>> {
        prop::collection::vec((0..UUIDS.len(), 1u64..16), 0..24)
    }

    fn from_points(ps: &[(usize, u64)]) -> GtidSet {
        let mut s = GtidSet::default();
        for &(u, n) in ps {
            s.add(UUIDS[u], n).unwrap();
        }
        s
    }

    fn model(ps: &[(usize, u64)]) -> BTreeSet<(usize, u64)> {
        ps.iter().copied().collect()
    }

    /// Sets built from arbitrary (possibly overlapping) intervals, including
    /// GNOs near the top of the range.
    fn set() -> impl Strategy<Value = GtidSet> {
        let gno = prop_oneof![1u64..40, (MAX_GNO - 40)..=MAX_GNO];
        prop::collection::vec((0..UUIDS.len(), gno, 0u64..6), 0..10).prop_map(|ivs| {
            let mut s = GtidSet::default();
            for (u, a, len) in ivs {
                s.add_interval(UUIDS[u], a, a.saturating_add(len).min(MAX_GNO))
                    .unwrap();
            }
            s
        })
    }

    fn merged(a: &GtidSet, b: &GtidSet) -> GtidSet {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    fn well_formed(s: &GtidSet) -> bool {
        s.sids.iter().all(|(u, ivs)| {
            normalise_uuid(u).as_deref() == Some(u.as_str())
                && !ivs.is_empty()
                && ivs.iter().all(|&(a, b)| 1 <= a && a <= b && b <= MAX_GNO)
                && ivs.windows(2).all(|w| w[0].1 + 1 < w[1].0)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matches_set_model(xs in points(), ys in points(), probe in (0..UUIDS.len(), 0u64..18)) {
            let (a, b) = (from_points(&xs), from_points(&ys));
            let (ma, mb) = (model(&xs), model(&ys));
            prop_assert!(well_formed(&a));
            prop_assert_eq!(a.covers(&b), mb.is_subset(&ma));
            prop_assert_eq!(a.contains(UUIDS[probe.0], probe.1), ma.contains(&probe));
            let m = merged(&a, &b);
            prop_assert!(well_formed(&m));
            let mu: Vec<_> = ma.union(&mb).copied().collect();
            prop_assert_eq!(m, from_points(&mu));
        }

        #[test]
        fn covers_is_reflexive(a in set()) {
            prop_assert!(a.covers(&a));
            prop_assert!(a.covers(&GtidSet::default()));
        }

        #[test]
        fn covers_is_transitive(xs in points(), ys in points(), zs in points()) {
            let (a, b, c) = (from_points(&xs), from_points(&ys), from_points(&zs));
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c));
            }
            // and on chains built to satisfy the premise
            let b2 = merged(&c, &b);
            let a2 = merged(&b2, &a);
            prop_assert!(a2.covers(&b2) && b2.covers(&c) && a2.covers(&c));
        }

        #[test]
        fn covers_is_antisymmetric(xs in points(), ys in points()) {
            let (a, b) = (from_points(&xs), from_points(&ys));
            if a.covers(&b) && b.covers(&a) {
                prop_assert_eq!(a.to_string(), b.to_string());
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn merge_is_least_upper_bound(xs in points(), ys in points(), zs in points()) {
            let (a, b, c) = (from_points(&xs), from_points(&ys), from_points(&zs));
            let m = merged(&a, &b);
            prop_assert!(m.covers(&a) && m.covers(&b));
            if c.covers(&a) && c.covers(&b) {
                prop_assert!(c.covers(&m));
            }
            let c2 = merged(&c, &m); // an upper bound of a and b by construction
            prop_assert!(c2.covers(&m));
        }

        #[test]
        fn merge_upper_bound_on_wide_sets(a in set(), b in set()) {
            let m = merged(&a, &b);
            prop_assert!(well_formed(&m));
            prop_assert!(m.covers(&a) && m.covers(&b));
            prop_assert_eq!(&m, &merged(&b, &a));
            prop_assert_eq!(&merged(&m, &a), &m);
        }

        #[test]
        fn merge_is_commutative_and_idempotent(a in set(), b in set()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&a, &b).to_string(), merged(&b, &a).to_string());
            prop_assert_eq!(merged(&a, &a), a);
        }

        #[test]
        fn display_parse_round_trip(a in set()) {
            let s = a.to_string();
            let back: GtidSet = s.parse().unwrap();
            prop_assert_eq!(&back, &a);
            prop_assert_eq!(back.to_string(), s);
        }

        #[test]
        fn parse_of_messy_layout_is_canonical(a in set(), upper in any::<bool>()) {
            // Render as @@gtid_executed does (",\n"), optionally uppercased,
            // with each interval as its own uuid entry in reverse order.
            let mut parts = Vec::new();
            for (u, ivs) in &a.sids {
                let u = if upper { u.to_ascii_uppercase() } else { u.clone() };
                for &(x, y) in ivs.iter().rev() {
                    parts.push(format!(" {u} : {x}-{y} "));
                }
            }
            parts.reverse();
            let messy = parts.join(",\n");
            let back: GtidSet = messy.parse().unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
