//! Hints from the leading comments, and only from there.

use super::super::{classify, Hints, Kind, RouteHint};

fn h(route: Option<RouteHint>, consistency: Option<&str>, after: Option<&str>) -> Hints {
    Hints {
        route,
        consistency: consistency.map(str::to_owned),
        after: after.map(str::to_owned),
    }
}

fn primary() -> Option<RouteHint> {
    Some(RouteHint::Primary)
}

fn replica() -> Option<RouteHint> {
    Some(RouteHint::Replica)
}

fn backend(name: &str) -> Option<RouteHint> {
    Some(RouteHint::Backend(name.to_owned()))
}

#[rustfmt::skip]
fn cases() -> Vec<(&'static str, Kind, Hints)> {
    vec![
        // PolarDB-style
        ("/*FORCE_MASTER*/ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/* FORCE_MASTER */ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/*force_master*/SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/*FORCE_SLAVE*/ UPDATE t SET a = 1", Kind::Write, h(replica(), None, None)),
        ("/*  Force_Slave  */ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("  \n /*FORCE_SLAVE*/\nSELECT 1", Kind::Read, h(replica(), None, None)),
        ("/*FORCE_MASTER*/", Kind::Unknown, h(primary(), None, None)),
        // Causeway's own
        ("/* causeway: route=primary */ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/* causeway: route=replica */ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("/* causeway: route=PRIMARY */ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/* causeway: route=db3 */ SELECT 1", Kind::Read, h(backend("db3"), None, None)),
        ("/* causeway: route=Replica2 */ SELECT 1", Kind::Read, h(backend("Replica2"), None, None)),
        ("/* causeway: route='replica' */ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("/*causeway:route=primary*/SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/* CAUSEWAY : route = replica */ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("/* causeway: consistency=eventual */ SELECT 1", Kind::Read, h(None, Some("eventual"), None)),
        ("/* causeway: consistency=Session */ SELECT 1", Kind::Read, h(None, Some("session"), None)),
        ("/* causeway: consistency=bounded:200ms */ SELECT 1", Kind::Read, h(None, Some("bounded:200ms"), None)),
        ("/* causeway: route=replica consistency=global */ SELECT 1", Kind::Read, h(replica(), Some("global"), None)),
        ("/* causeway: route=replica, consistency=session, after=0-1-100 */ SELECT 1", Kind::Read, h(replica(), Some("session"), Some("0-1-100"))),
        ("/* causeway: consistency=bounded:200ms,route=primary */ SELECT 1", Kind::Read, h(primary(), Some("bounded:200ms"), None)),
        ("/* causeway: after=3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5 */ SELECT 1", Kind::Read, h(None, None, Some("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5"))),
        ("/* causeway: foo=bar route=replica */ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("/* causeway: route=r1 route=r2 */ SELECT 1", Kind::Read, h(backend("r2"), None, None)),
        ("/* causeway: after=abc,def */ SELECT 1", Kind::Read, h(None, None, Some("abc"))),
        // malformed: ignored, never a panic
        ("/* causeway: route= */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causeway: = */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causeway: route */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causeway: */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causeway */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causewayx: route=primary */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causeway: ==== ,,, route==primary */ SELECT 1", Kind::Read, h(None, None, None)),
        ("/* causeway: é=ü route=replica */ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("/*FORCE_MASTER SELECT 1", Kind::Unknown, h(None, None, None)),
        ("/* FORCE_MASTER please */ SELECT 1", Kind::Read, h(None, None, None)),
        // several leading comments: all count, the last one wins
        ("/* hello */ /*FORCE_MASTER*/ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("-- hi\n/*FORCE_MASTER*/ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("# hi\n/*FORCE_SLAVE*/ SELECT 1", Kind::Read, h(replica(), None, None)),
        ("/*FORCE_SLAVE*/ /* causeway: route=primary */ SELECT 1", Kind::Read, h(primary(), None, None)),
        ("/* FORCE_MASTER */ /* causeway: consistency=global */ SELECT 1", Kind::Read, h(primary(), Some("global"), None)),
        ("/*FORCE_MASTER*/ SELECT 1; SELECT 2", Kind::Read, h(primary(), None, None)),
        ("/* causeway: route=replica */ /*! SELECT 1 */", Kind::Read, h(replica(), None, None)),
        // not leading: not a hint
        ("SELECT 1 /*FORCE_MASTER*/", Kind::Read, h(None, None, None)),
        ("SELECT '/*FORCE_MASTER*/'", Kind::Read, h(None, None, None)),
        ("SELECT /* causeway: route=primary */ 1", Kind::Read, h(None, None, None)),
        ("SELECT 1; /*FORCE_MASTER*/ SELECT 2", Kind::Read, h(None, None, None)),
        ("/*!40101 SET NAMES utf8 */ /*FORCE_MASTER*/", Kind::SetSession, h(None, None, None)),
        ("/*+ FORCE_MASTER */ SELECT 1", Kind::Read, h(None, None, None)),
        ("-- /*FORCE_MASTER*/\nSELECT 1", Kind::Read, h(None, None, None)),
    ]
}

#[test]
fn hints_from_leading_comments() {
    let mut failures = Vec::new();
    for (sql, kind, hints) in cases() {
        let got = classify(sql);
        if got.kind != kind || got.hints != hints {
            failures.push(format!(
                "{sql:?}\n    want {kind:?} {hints:?}\n    got  {:?} {:?}",
                got.kind, got.hints
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
