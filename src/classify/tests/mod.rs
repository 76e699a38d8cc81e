//! Table-driven tests of the classifier: one line per statement.
//!
//! `cases_*` hold `(sql, kind, flags)` rows whose flags must match
//! exactly; `hints` and `tables` test hint extraction and
//! `mentions_table`; `robust` feeds every prefix of every statement and
//! random input to make sure nothing panics.

mod cases_connect;
mod cases_sql;
mod cases_tricky;
mod fuzz;
mod hints;
mod replay;
mod robust;
mod session_sql;
mod tables;

use super::{classify, Flags, Kind};

pub(super) type Case = (&'static str, Kind, Flags);

// Kinds, short so that each case fits on one line.
pub(super) const R: Kind = Kind::Read;
pub(super) const W: Kind = Kind::Write;
pub(super) const LR: Kind = Kind::LockingRead;
pub(super) const B: Kind = Kind::Begin {
    read_only: false,
    consistent_snapshot: false,
};
pub(super) const B_RO: Kind = Kind::Begin {
    read_only: true,
    consistent_snapshot: false,
};
pub(super) const B_CS: Kind = Kind::Begin {
    read_only: false,
    consistent_snapshot: true,
};
pub(super) const B_RO_CS: Kind = Kind::Begin {
    read_only: true,
    consistent_snapshot: true,
};
pub(super) const C: Kind = Kind::Commit;
pub(super) const RB: Kind = Kind::Rollback;
pub(super) const SP: Kind = Kind::Savepoint;
pub(super) const XA: Kind = Kind::Xa;
pub(super) const ST: Kind = Kind::SetTransaction;
pub(super) const AC1: Kind = Kind::SetAutocommit(true);
pub(super) const AC0: Kind = Kind::SetAutocommit(false);
pub(super) const SS: Kind = Kind::SetSession;
pub(super) const SU: Kind = Kind::SetUserVar;
pub(super) const TC: Kind = Kind::TempTable { create: true };
pub(super) const TD: Kind = Kind::TempTable { create: false };
pub(super) const LT: Kind = Kind::LockTables;
pub(super) const UT: Kind = Kind::UnlockTables;
pub(super) const PR: Kind = Kind::Prepare;
pub(super) const EX: Kind = Kind::Execute;
pub(super) const DE: Kind = Kind::Deallocate;
pub(super) const CA: Kind = Kind::Call;
pub(super) const SH: Kind = Kind::Show;
pub(super) const US: Kind = Kind::Use;
pub(super) const KI: Kind = Kind::Kill;
pub(super) const AD: Kind = Kind::Admin;
pub(super) const UN: Kind = Kind::Unknown;

// Flags.
pub(super) const N: Flags = Flags(0);
pub(super) const MS: Flags = Flags::MULTI_STATEMENT;
pub(super) const SE: Flags = Flags::SIDE_EFFECT_FN;
/// A lock function: `LOCK_FN` always comes with `SIDE_EFFECT_FN`.
pub(super) const LF: Flags = Flags(Flags::SIDE_EFFECT_FN.0 | Flags::LOCK_FN.0);
pub(super) const SI: Flags = Flags::SELECT_INTO;
pub(super) const UA: Flags = Flags::USER_VAR_ASSIGN;
pub(super) const UR: Flags = Flags::USER_VAR_READ;
pub(super) const LK: Flags = Flags::LOCKING;
pub(super) const EC: Flags = Flags::EXECUTABLE_COMMENT;
pub(super) const CF: Flags = Flags::CALC_FOUND_ROWS;
pub(super) const GL: Flags = Flags::GLOBAL;
pub(super) const PA: Flags = Flags::PARSED;

/// Every case of every table (the robustness test reuses them).
pub(super) fn all_cases() -> Vec<Case> {
    let mut all = cases_sql::cases();
    all.extend(cases_connect::cases());
    all.extend(cases_tricky::cases());
    all
}

/// Checks a table, reporting every mismatch at once.
pub(super) fn check(cases: &[Case]) {
    let mut failures = Vec::new();
    for (sql, kind, flags) in cases {
        let got = classify(sql);
        if got.kind != *kind || got.flags != *flags {
            failures.push(format!(
                "{sql:?}\n    want {kind:?} [{flags}]\n    got  {:?} [{}]",
                got.kind, got.flags
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The session takes "reads a table" from the class (one lexer pass); it
/// must say what `reads_a_table` says of every listed statement.
#[test]
fn class_knows_whether_a_table_is_read() {
    for (sql, _, _) in all_cases() {
        let class = classify(sql);
        assert_eq!(
            class.reads_table,
            Some(super::reads_a_table(sql)),
            "{sql:?}"
        );
    }
    for (sql, reads) in [
        ("SELECT c FROM t WHERE id = 1", true),
        ("SELECT 1 FROM DUAL", false),
        ("SELECT 1", false),
        ("SELECT 'FROM t'", false),
        ("SELECT 1 /* FROM t */", false),
        ("SELECT 1 FROM", true),
        ("SELECT 1 FROM dual; SELECT c FROM t", false),
    ] {
        assert_eq!(classify(sql).reads_table, Some(reads), "{sql:?}");
    }
}

#[test]
fn at_least_300_statements() {
    let n = all_cases().len();
    assert!(n >= 300, "only {n} cases");
}

#[test]
fn no_statement_is_listed_twice() {
    let mut seen = std::collections::HashSet::new();
    for (sql, _, _) in all_cases() {
        assert!(seen.insert(sql), "listed twice: {sql:?}");
    }
}

#[test]
fn statement_keywords_are_sorted_and_short() {
    let keys: Vec<&[u8]> = super::head::LEADS.iter().map(|(k, _)| *k).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "LEADS must be sorted and unique"
    );
    assert!(keys
        .iter()
        .all(|k| k.len() <= 10 && k.iter().all(u8::is_ascii_uppercase)));
}

#[test]
fn flags_api() {
    let mut f = Flags::default();
    assert!(f.is_empty());
    assert_eq!(f.to_string(), "-");
    f.insert(LK);
    f |= SE;
    assert!(f.contains(LK) && f.contains(SE) && f.contains(LK | SE));
    assert!(!f.contains(LK | UA) && f.intersects(LK | UA));
    assert_eq!(f.to_string(), "SIDE_EFFECT_FN|LOCKING");
    assert_eq!(f.names().count(), 2);
    assert!(Flags::PRIMARY_ONLY.contains(SE | SI | UA | LK));
}

#[test]
fn kind_names_are_distinct() {
    let kinds = [
        R, W, LR, B, C, RB, SP, XA, ST, AC1, SS, SU, TC, LT, UT, PR, EX, DE, CA, SH, US, KI, AD, UN,
    ];
    let names: std::collections::HashSet<&str> = kinds.iter().map(Kind::as_str).collect();
    assert_eq!(names.len(), kinds.len());
}

/// Only one plain read may run a second time after its connection broke.
#[test]
fn only_plain_reads_may_run_twice() {
    let cases: &[(&str, bool)] = &[
        ("SELECT * FROM t WHERE id = 1", true),
        ("SELECT @@server_id", true),
        ("WITH a AS (SELECT 1) SELECT * FROM a", true),
        ("INSERT INTO t VALUES (1)", false),
        ("UPDATE t SET a = 1", false),
        ("SELECT * FROM t FOR UPDATE", false),
        ("SELECT SLEEP(1)", false),
        ("SELECT GET_LOCK('a', 0)", false),
        ("SELECT NEXTVAL(s)", false),
        ("SELECT @a := 1", false),
        ("SELECT 1 INTO @a", false),
        ("SELECT 1; SELECT 2", false),
        ("SELECT /*! SLEEP(1) */ 1", false),
        ("BEGIN", false),
        ("COMMIT", false),
        ("SET @a = 1", false),
        ("CALL p()", false),
    ];
    for (sql, want) in cases {
        assert_eq!(classify(sql).may_run_twice(), *want, "{sql}");
    }
}
