//! Random bytes and random Unicode SQL, built from every statement shape
//! the session takes facts from, through every function the session
//! calls: nothing panics, and the answers stay sane (names are spans of
//! the input, rewrites keep every byte outside the calls).

use proptest::prelude::*;

use super::super::{
    classify, explain_route_target, handler, hide_socket, in_read_only, lock_calls, mentions_table,
    names_collation, names_session_tracking, own_statement, prepared_name, reads_a_table,
    reads_last_insert_id, replayable_user_var_set, set_transaction, substitute_connection_id,
    substitute_row_count, temp_table_changes, user_var_names, Kind,
};

/// The shapes the session matches on, and the pieces that confuse lexers.
const SHAPES: &[&str] = &[
    "CREATE TEMPORARY TABLE ",
    "CREATE OR REPLACE TEMPORARY TABLE ",
    "DROP TEMPORARY TABLE ",
    "IF NOT EXISTS ",
    "IF EXISTS ",
    "SET NAMES utf8mb4 COLLATE ",
    "SET SESSION TRANSACTION ",
    "SET TRANSACTION ISOLATION LEVEL ",
    "READ COMMITTED",
    "KILL ",
    "KILL QUERY ",
    "/* causeway: route=replica after=",
    "/*FORCE_MASTER*/",
    "SET @v = ",
    "@v := ",
    "ROW_COUNT()",
    "CONNECTION_ID()",
    "CONNECTION_ID ( )",
    "LAST_INSERT_ID()",
    "GET_LOCK('a', 1)",
    "RELEASE_LOCK(",
    "PREPARE s FROM '",
    "DEALLOCATE PREPARE ",
    "HANDLER t OPEN AS ",
    "SELECT ",
    " FROM ",
    "db.",
    "`",
    "``",
    "'",
    "\"",
    "\\",
    "(",
    ")",
    ",",
    ";",
    ".",
    "-- ",
    "#",
    "/*",
    "*/",
    "/*!",
    "/*M!50700 ",
    "\n",
    " ",
    "é",
    "ééééééé",
    "\u{fffd}",
    "表",
    "t",
    "T",
    "@@socket",
    "EXPLAIN ROUTE ",
    "SET CAUSEWAY CONSISTENCY = ",
    "SHOW CAUSEWAY PROCESSLIST",
];

fn sql_from(parts: Vec<(usize, bool)>) -> String {
    let mut s = String::new();
    for (i, space) in parts {
        s.push_str(SHAPES[i % SHAPES.len()]);
        if space {
            s.push(' ');
        }
    }
    s
}

/// Every function the session calls on statement text.
fn all(sql: &[u8]) {
    let class = classify(&String::from_utf8_lossy(sql));
    // The facts the session takes from the class instead of lexing again.
    if std::str::from_utf8(sql).is_ok() {
        assert_eq!(class.reads_table, Some(reads_a_table(sql)), "{sql:?}");
    }
    if handler(sql).is_some() {
        assert_ne!(class.kind, Kind::Read, "{sql:?}");
    }
    for c in temp_table_changes(sql) {
        assert!(!c.name.is_empty());
        let _ = mentions_table(sql, &c.name);
    }
    let _ = names_collation(sql);
    let _ = set_transaction(sql);
    let _ = replayable_user_var_set(sql);
    let _ = names_session_tracking(sql);
    let _ = crate::classify::set_session_var_names(sql);
    let _ = prepared_name(sql);
    let _ = handler(sql);
    let _ = lock_calls(sql);
    let _ = user_var_names(sql);
    let _ = reads_last_insert_id(sql);
    let _ = reads_a_table(sql);
    let _ = in_read_only(sql);
    let _ = own_statement(sql);
    let _ = hide_socket(sql);
    let _ = explain_route_target(&String::from_utf8_lossy(sql));
    if let Some(out) = substitute_row_count(sql, -1) {
        assert!(out.len() > sql.len() - 11);
    }
    if let Some(out) = substitute_connection_id(sql, u32::MAX) {
        const LIT: &[u8] = b"CAST(4294967295 AS UNSIGNED)";
        assert!(out.windows(LIT.len()).any(|w| w == LIT));
        assert!(out.len() > sql.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        all(&bytes);
    }

    #[test]
    fn random_unicode(s in "\\PC{0,120}") {
        all(s.as_bytes());
    }

    #[test]
    fn random_statement_shapes(parts in proptest::collection::vec((0usize..100, any::<bool>()), 0..20)) {
        all(sql_from(parts).as_bytes());
    }

    #[test]
    fn shapes_in_a_non_utf8_character_set(
        parts in proptest::collection::vec((0usize..100, any::<bool>()), 0..12),
        high in proptest::collection::vec(0x80u8..=0xff, 1..6),
    ) {
        // A name in ujis/sjis/latin1 bytes after each shape.
        let mut sql = Vec::new();
        for (i, space) in parts {
            sql.extend_from_slice(SHAPES[i % SHAPES.len()].as_bytes());
            sql.extend_from_slice(&high);
            if space {
                sql.push(b' ');
            }
        }
        all(&sql);
    }
}

#[test]
fn temporary_table_names_are_spans_of_the_statement() {
    for name in ["t", "ééééééé", "表", "a b"] {
        for q in ["", "`"] {
            if name.contains(' ') && q.is_empty() {
                continue;
            }
            let sql = format!(
                "/* table x */ CREATE TEMPORARY TABLE IF NOT EXISTS db.{q}{name}{q} (a INT)"
            );
            let got = temp_table_changes(&sql);
            assert_eq!(got.len(), 1, "{sql}");
            assert_eq!(got[0].name, name.as_bytes(), "{sql}");
            assert!(mentions_table(
                format!("SELECT * FROM {q}{name}{q}"),
                name.as_bytes()
            ));
        }
    }
}
