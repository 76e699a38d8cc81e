//! The facts the session takes from statements: temporary-table names,
//! `SET NAMES .. COLLATE`, `SET TRANSACTION`, replayable user-variable
//! sets, prepare and `HANDLER` names. Names are the client's bytes.

use super::super::{
    handler, names_collation, names_session_tracking, prepared_name, replayable_user_var_set,
    replayable_user_var_sets, set_session_var_names, set_transaction, temp_table_changes,
    HandlerOp, SetTransaction, TempTableChange,
};

fn created(name: &[u8]) -> TempTableChange {
    TempTableChange {
        create: true,
        name: name.to_vec(),
    }
}

fn dropped(name: &[u8]) -> TempTableChange {
    TempTableChange {
        create: false,
        name: name.to_vec(),
    }
}

#[test]
fn temporary_table_names() {
    #[rustfmt::skip]
    let cases: &[(&[u8], Vec<TempTableChange>)] = &[
        (b"CREATE TEMPORARY TABLE t1 (a INT)", vec![created(b"t1")]),
        // The comment names no table (the name was taken from it once).
        (b"/* mytable */ CREATE TEMPORARY TABLE t (a INT)", vec![created(b"t")]),
        (b"CREATE /* table x */ TEMPORARY -- table y\n TABLE t(a INT)", vec![created(b"t")]),
        (b"create temporary table if not exists `My`.`Tmp`(a int)", vec![created(b"Tmp")]),
        (b"CREATE OR REPLACE TEMPORARY TABLE `we``ird` LIKE x", vec![created(b"we`ird")]),
        (b"CREATE TEMPORARY TABLE \"ansi\" (a INT)", vec![created(b"ansi")]),
        (b"CREATE TEMPORARY SEQUENCE s", vec![created(b"s")]),
        ("CREATE TEMPORARY TABLE ééééééé (a INT)".as_bytes(), vec![created("ééééééé".as_bytes())]),
        // ujis and sjis names: bytes that are not UTF-8.
        (b"CREATE TEMPORARY TABLE \xc9\xbd (a INT)", vec![created(b"\xc9\xbd")]),
        (b"CREATE TEMPORARY TABLE `\x95\x5c` (a INT)", vec![created(b"\x95\x5c")]),
        (b"DROP TEMPORARY TABLE IF EXISTS x", vec![dropped(b"x")]),
        (b"DROP TEMPORARY TABLE a, db.b, `c`", vec![dropped(b"a"), dropped(b"b"), dropped(b"c")]),
        (b"CREATE TEMPORARY TABLE a (x INT); INSERT INTO a VALUES (1); DROP TEMPORARY TABLE b",
         vec![created(b"a"), dropped(b"b")]),
        (b"/*!40101 CREATE TEMPORARY TABLE e (a INT) */", vec![created(b"e")]),
        (b"CREATE TABLE t (a INT)", vec![]),
        (b"DROP TABLE t", vec![]),
        (b"SELECT 'CREATE TEMPORARY TABLE t'", vec![]),
        (b"CREATE TEMPORARY", vec![]),
        (b"CREATE TEMPORARY TABLE", vec![]),
        // A stored program's body is not run now.
        (b"CREATE PROCEDURE p() BEGIN SELECT 1; DROP TEMPORARY TABLE t; END", vec![]),
        (b"BEGIN NOT ATOMIC SELECT 1; DROP TEMPORARY TABLE t; END", vec![]),
    ];
    for (sql, want) in cases {
        assert_eq!(
            &temp_table_changes(sql),
            want,
            "{}",
            String::from_utf8_lossy(sql)
        );
    }
}

#[test]
fn set_names_collation() {
    assert_eq!(
        names_collation("SET NAMES utf8mb4 COLLATE utf8mb4_bin").as_deref(),
        Some("utf8mb4_bin")
    );
    assert_eq!(
        names_collation("set names 'latin1' collate 'LATIN1_BIN';").as_deref(),
        Some("latin1_bin")
    );
    assert_eq!(
        names_collation("/* c */ SET @a = 1, NAMES latin1 COLLATE latin1_bin, @b = 2").as_deref(),
        Some("latin1_bin")
    );
    assert_eq!(names_collation("SET NAMES utf8mb4"), None);
    assert_eq!(names_collation("SELECT 'SET NAMES x COLLATE y'"), None);
    assert_eq!(names_collation("SET @names = 1"), None);
}

#[test]
fn set_transaction_scope_and_level() {
    let st = |session, isolation| SetTransaction { session, isolation };
    assert_eq!(
        set_transaction("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"),
        st(true, Some("READ-COMMITTED"))
    );
    assert_eq!(
        set_transaction("set local transaction isolation level serializable;"),
        st(true, Some("SERIALIZABLE"))
    );
    assert_eq!(
        set_transaction("/* x */ SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
        st(false, Some("REPEATABLE-READ"))
    );
    assert_eq!(
        set_transaction("SET SESSION TRANSACTION READ ONLY"),
        st(true, None)
    );
    // `SESSION` in a comment or a string is not the scope.
    assert_eq!(
        set_transaction("SET /* SESSION */ TRANSACTION READ WRITE"),
        st(false, None)
    );
    assert_eq!(
        set_transaction("SELECT 'SET SESSION TRANSACTION'"),
        st(false, None)
    );
}

#[test]
fn replayable_user_variable_sets_in_multi_statements() {
    let sets = |sql: &str| {
        replayable_user_var_sets(sql).map(|v| {
            v.into_iter()
                .map(|r| sql[r].to_string())
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        sets("SET @u = 5; SET time_zone = '+01:00'; SELECT @u"),
        Some(vec!["SET @u = 5".to_string()])
    );
    assert_eq!(
        sets("SET @a = 1;SET @b = 'x' ; SELECT 1;"),
        Some(vec!["SET @a = 1".to_string(), "SET @b = 'x'".to_string()])
    );
    assert_eq!(sets("SELECT 1; SELECT 2"), Some(vec![]));
    for sql in [
        "SET @u = 5; SET @v = NOW()",
        "SET @u = 5; SELECT @w := 1",
        "SELECT 1 INTO @x; SET @u = 5",
        "CREATE PROCEDURE p() BEGIN SET @a = 1; END; SET @b = 2",
    ] {
        assert_eq!(sets(sql), None, "{sql}");
    }
}

#[test]
fn replayable_user_variable_sets() {
    for sql in [
        "SET @a = 1, @b = 'x'",
        "SET @a := -1.5e3, @b = X'FF', @c = _latin1'\u{e9}', @d = NULL, @e = .5",
        "set @`a b` = \"q\";",
        "SET @a = 0x1F, @b = b'01', @c = _utf8mb4 'x', @d = TRUE",
    ] {
        assert!(replayable_user_var_set(sql), "{sql}");
    }
    assert!(replayable_user_var_set(b"SET @v = '\xe9\xff'"));
    for sql in [
        "SET @a = (SELECT MAX(id) FROM t)",
        "SET @a = NOW()",
        "SET @a = CURRENT_TIMESTAMP",
        "SET @a = @b",
        "SET @a = @@server_id",
        "SET @a = 1 + 1",
        "SET @a = 'x' COLLATE latin1_bin",
        "SET @a = 1, sql_mode = ''",
        "SET @a = 1; SELECT 2",
        "SET @a = ",
        "SELECT 1",
    ] {
        assert!(!replayable_user_var_set(sql), "{sql}");
    }
}

#[test]
fn prepare_and_handler_names() {
    assert_eq!(
        prepared_name("PREPARE s1 FROM 'SELECT 1'").as_deref(),
        Some("s1")
    );
    assert_eq!(
        prepared_name("/* x */ DEALLOCATE PREPARE `S1`;").as_deref(),
        Some("s1")
    );
    assert_eq!(prepared_name("DROP PREPARE s1").as_deref(), Some("s1"));
    assert_eq!(prepared_name("DROP TABLE s1"), None);
    assert_eq!(handler("HANDLER t OPEN"), Some(HandlerOp::Open("t".into())));
    assert_eq!(
        handler("handler db.T open as A"),
        Some(HandlerOp::Open("a".into()))
    );
    assert_eq!(
        handler("HANDLER t OPEN x"),
        Some(HandlerOp::Open("x".into()))
    );
    assert_eq!(
        handler("HANDLER a CLOSE"),
        Some(HandlerOp::Close("a".into()))
    );
    assert_eq!(handler("HANDLER a READ FIRST"), None);
    assert_eq!(handler("/* HANDLER a OPEN */ SELECT 1"), None);
}

#[test]
fn statements_naming_session_tracking_are_found() {
    for sql in [
        "SET session_track_system_variables = 'autocommit'",
        "set autocommit=1, session_track_schema=1",
        "SET @@session.session_track_system_variables = ''",
        "SET SESSION `session_track_state_change` = OFF",
        "SET @@SESSION_TRACK_SYSTEM_VARIABLES = CONCAT(@@global.session_track_system_variables, ',x')",
    ] {
        assert!(names_session_tracking(sql), "{sql}");
    }
    for sql in [
        "SET sql_mode = 'session_track_system_variables'",
        "SET autocommit = 1",
        "SELECT 1 /* session_track_schema */",
        "SET @session_track = 1",
    ] {
        assert!(!names_session_tracking(sql), "{sql}");
    }
}

#[test]
fn set_statements_name_their_session_variables() {
    let cases: &[(&str, &[&str])] = &[
        (
            "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES'), session_track_schema=1",
            &["autocommit", "sql_mode", "session_track_schema"],
        ),
        ("SET SESSION time_zone = '+00:00', @a = 1", &["time_zone"]),
        ("SET @@session.SQL_MODE = 'ANSI', @@x = IF(1, 2, 3)", &["sql_mode", "x"]),
        ("SET GLOBAL max_connections = 10", &[]),
        ("SET @@global.x = 1, LOCAL y = 2", &["y"]),
        ("SET NAMES utf8mb4", &[]),
        ("SET TRANSACTION READ ONLY", &[]),
        ("SELECT 1", &[]),
    ];
    for (sql, want) in cases {
        assert_eq!(set_session_var_names(sql), *want, "{sql}");
    }
}
