//! Which statements of a transaction may run again in its replay.

use super::classify;

fn may_replay(sql: &str) -> bool {
    classify(sql).may_replay(sql.as_bytes())
}

#[test]
fn reads_data_changes_begin_and_savepoints_may_run_again() {
    for sql in [
        "BEGIN",
        "START TRANSACTION",
        "SELECT c FROM sbtest1 WHERE id = 5",
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        "INSERT INTO t VALUES (1, 'a')",
        "UPDATE t SET v = v + 1 WHERE id = 2",
        "DELETE FROM t WHERE id = 3",
        "REPLACE INTO t VALUES (4, 'b')",
        "SAVEPOINT a",
        "ROLLBACK TO SAVEPOINT a",
    ] {
        assert!(may_replay(sql), "{sql}");
    }
}

#[test]
fn what_changes_session_state_commits_or_is_connection_bound_may_not() {
    for sql in [
        "COMMIT",
        "ROLLBACK",
        "START TRANSACTION READ ONLY",
        "SET @a = 1",
        "SET SESSION sql_mode = ''",
        "SELECT v INTO @x FROM t WHERE id = 1",
        "SELECT @y := v FROM t",
        "SELECT LAST_INSERT_ID()",
        "SELECT GET_LOCK('x', 1)",
        "SELECT NEXTVAL(s)",
        "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
        "INSERT /*!99999 IGNORE */ INTO t VALUES (1)",
        "LOAD DATA LOCAL INFILE 'f' INTO TABLE t",
        "CREATE TABLE x (a INT)",
        "ALTER TABLE t ADD COLUMN b INT",
        "TRUNCATE TABLE t",
        "CREATE TEMPORARY TABLE tt (a INT)",
        "LOCK TABLES t WRITE",
        "CALL p()",
        "USE app",
    ] {
        assert!(!may_replay(sql), "{sql}");
    }
}
