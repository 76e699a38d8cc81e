//! Keywords in strings and comments, quoting and escapes, executable
//! comments, mixed case, multi-statements, `NO_BACKSLASH_ESCAPES`
//! ambiguity.

use super::*;

#[rustfmt::skip]
pub(super) fn cases() -> Vec<Case> {
    vec![
        // keywords inside strings, identifiers and comments
        ("SELECT 'FOR UPDATE'", R, N),
        ("SELECT \"INSERT\"", R, N),
        ("SELECT 1 -- FOR UPDATE", R, N),
        ("SELECT 1 # FOR UPDATE", R, N),
        ("SELECT 1 /* FOR UPDATE */", R, N),
        ("SELECT 'a''b FOR UPDATE'", R, N),
        ("SELECT \"a\"\"b FOR UPDATE\"", R, N),
        ("SELECT `for update` FROM t", R, N),
        ("SELECT `select`, `update` FROM `insert`", R, N),
        ("SELECT `a``b` FROM t FOR UPDATE", LR, LK),
        ("SELECT 'LAST_INSERT_ID()'", R, N),
        ("SELECT '@a := 1', \"@b\"", R, N),
        ("SELECT 'x' FROM t WHERE a = '; DELETE FROM t'", R, N),
        ("SELECT 1 --1", R, N),
        ("SELECT 1--1", R, N),
        ("SELECT 1 -- \nFROM dual FOR UPDATE", LR, LK),
        ("SELECT 1 --\tx\nFOR UPDATE", LR, LK),
        ("SELECT '--' FROM t FOR UPDATE", LR, LK),
        ("SELECT '/*' FROM t FOR UPDATE", LR, LK),
        ("SELECT \"/*\" FROM t WHERE a='*/' FOR UPDATE", LR, LK),
        ("SELECT '#' FROM t FOR UPDATE", LR, LK),
        ("SELECT * FROM t /* ; DELETE FROM t */", R, N),
        ("SELECT ';'", R, N),
        ("INSERT INTO t VALUES ('; DROP TABLE t; --')", W, N),
        ("SELECT 'a\\\\' FROM t FOR UPDATE", LR, LK),
        ("SELECT \"a\\\"b\"", R, N),
        ("SELECT 'it\\'s'", R, N),
        ("SELECT x'414243', b'101', 0x41, N'abc', _utf8mb4'x' COLLATE utf8mb4_bin", R, N),
        ("SELECT 1e10, 1.5, .5, 3e-5, $1", R, N),
        ("SELECT é FROM ü", R, N),
        ("SELECT * FROM `db`.`t` WHERE `c` = '✓'", R, N),
        ("SELECT '日本語' FOR UPDATE", LR, LK),
        ("SELECT 1 /* unterminated", R, N),
        ("SELECT 'unterminated", R, N),
        ("SELECT `unterminated", R, N),
        ("SELECT \"unterminated FOR UPDATE", R, N),
        ("SELECT 1 /* FOR UPDATE", R, N),
        // NO_BACKSLASH_ESCAPES would end the string early: the kind holds
        // only if both readings agree; the flags of both count
        ("SELECT 'it\\' FOR UPDATE'", UN, LK),
        ("SELECT 'a\\'; DELETE FROM t; -- '", UN, MS),
        ("SELECT 'a\\' , LAST_INSERT_ID() -- '", R, SE),
        // leading whitespace and comments, mixed case
        ("  \n\tSELECT 1", R, N),
        ("/* leading */ SELECT 1", R, N),
        ("-- comment\nSELECT 1", R, N),
        ("# comment\nSELECT 1", R, N),
        ("/* a */ /* b */ -- c\n UPDATE t SET a=1", W, N),
        ("/*+ MAX_EXECUTION_TIME(1000) */ SELECT * FROM t", R, N),
        ("SELECT /*+ BKA(t1) */ * FROM t1 FOR UPDATE", LR, LK),
        ("sElEcT * FrOm T fOr UpDaTe", LR, LK),
        ("Select Last_Insert_Id()", R, SE),
        ("uPdAtE t SeT a = 1", W, N),
        ("\u{feff}SELECT 1", UN, N),
        // executable comments
        ("SELECT /*!40001 SQL_NO_CACHE */ 1", R, EC),
        ("SELECT 1 /*! FOR UPDATE */", LR, LK | EC),
        ("/*!40101 SELECT 1 */", R, EC),
        ("/*!SELECT 1*/", R, EC),
        ("/*M!100500 SELECT 1 */", UN, EC),
        ("/*!50001 SELECT 1 */", R, EC),
        ("/*!123 SELECT 1 */", UN, EC),
        // version-gated executable comments: every reading must agree
        ("/*!99999 SELECT 1 FROM (*/ UPDATE t SET a = 1", UN, EC),
        ("SELECT 1 /*!80000 , SLEEP(1) */", R, SE | EC),
        ("SELECT * FROM t /*!80000 FOR UPDATE */", UN, LK | EC),
        ("CREATE DATABASE d /*!80016 DEFAULT ENCRYPTION='N' */", W, EC),
        ("SELECT 'x\\' /*!99999 , 1 */ FOR UPDATE'", UN, LK | EC),
        ("SELECT 1 /*!50000 , LAST_INSERT_ID() */", R, SE | EC),
        ("/*!40101 SET @a = 1 */", SU, UA | EC),
        ("/*!", UN, EC),
        ("/*!40101", UN, EC),
        // multi-statements
        ("SELECT 1; SELECT 2", R, MS),
        ("SELECT 1;SELECT 2;", R, MS),
        ("SELECT 1;\nSELECT 2;\nSELECT 3;\n", R, MS),
        ("SELECT 'a;b'; SELECT 2", R, MS),
        ("SELECT 1; UPDATE t SET a = 1", UN, MS),
        ("UPDATE t SET a = 1; SELECT 1", UN, MS),
        ("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)", W, MS),
        ("INSERT INTO t VALUES (1); UPDATE t SET a = 2; DELETE FROM t", W, MS),
        ("SELECT 1; SELECT LAST_INSERT_ID()", UN, MS | SE),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1; SELECT FOUND_ROWS()", UN, MS | CF | SE),
        ("SELECT 1; SELECT * FROM t FOR UPDATE", UN, MS | LK),
        ("SELECT @a := 1; SELECT @a", UN, MS | UA | UR),
        ("SELECT @a; SELECT @b", R, MS | UR),
        ("BEGIN; UPDATE t SET a = 1; COMMIT", UN, MS),
        ("SET NAMES utf8; SET autocommit=0", UN, MS),
        ("USE db; SELECT 1", UN, MS),
        ("SELECT 1; EXPLAIN ROUTE SELECT 2; SELECT 3", UN, MS),
        ("SELECT 1; -- trailing comment", R, N),
        ("SELECT 1; /* c */ ;", R, N),
        ("SELECT 1 ;;", R, N),
        (";SELECT 1", R, N),
        ("SELECT 1; SELECT 2 /*! ; UPDATE t SET a = 1 */", UN, MS | EC),
    ]
}

#[test]
fn strings_comments_multi_statements() {
    check(&cases());
}
