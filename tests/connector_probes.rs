//! What popular connectors run at connect time (taken from their sources
//! and general logs: MariaDB Connector/J and /Node, MySQL Connector/J,
//! Go's driver, PyMySQL and mysqlclient, SQLAlchemy's MySQL dialect,
//! mysqlnd) returns through Causeway what it returns on a direct
//! connection: every value, column name and column type, and every error.
//! Run with a replica, so the reads among them take the read split; only
//! values that name the server itself (its port, socket, id, paths) are
//! left out of the comparison.

mod common;

use common::Env;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Row, Value};

/// Connect-time statements, in the order one connector or another sends
/// them on a fresh connection.
const PROBES: &[&str] = &[
    // MySQL Connector/J 8
    "/* mysql-connector-java-8.0.33 */SELECT @@session.auto_increment_increment AS auto_increment_increment, \
     @@character_set_client AS character_set_client, @@character_set_connection AS character_set_connection, \
     @@character_set_results AS character_set_results, @@character_set_server AS character_set_server, \
     @@collation_server AS collation_server, @@collation_connection AS collation_connection, \
     @@init_connect AS init_connect, @@interactive_timeout AS interactive_timeout, @@license AS license, \
     @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS max_allowed_packet, \
     @@net_write_timeout AS net_write_timeout, @@performance_schema AS performance_schema, \
     @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, @@time_zone AS time_zone, \
     @@transaction_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout",
    "SET NAMES utf8mb4",
    "SET character_set_results = NULL",
    "SET autocommit=1",
    "SELECT @@session.transaction_read_only",
    "SELECT @@session.transaction_isolation",
    // MariaDB Connector/J 3 and Connector/Node
    "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES'), session_track_schema=1, \
     session_track_system_variables = CONCAT(@@global.session_track_system_variables,',auto_increment_increment,system_time_zone')",
    "SELECT @@max_allowed_packet, @@system_time_zone, @@time_zone, @@auto_increment_increment",
    "SELECT @@max_allowed_packet as a, @@wait_timeout as b",
    "SELECT @@version_comment, @@version_compile_os, @@version_malloc_library LIMIT 1",
    // Go's driver, PyMySQL, mysqlclient
    "SELECT @@max_allowed_packet",
    "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
    "SET AUTOCOMMIT = 0",
    "SELECT VERSION()",
    "COMMIT",
    "SET AUTOCOMMIT = 1",
    // SQLAlchemy's MySQL/MariaDB dialect
    "SELECT DATABASE()",
    "SHOW VARIABLES LIKE 'sql_mode'",
    "SHOW VARIABLES LIKE 'lower_case_table_names'",
    "SELECT CAST('test plain returns' AS CHAR(60)) AS anon_1",
    "SELECT CAST('test unicode returns' AS CHAR(60)) AS anon_1",
    "SELECT @@tx_isolation",
    "SHOW VARIABLES LIKE 'character_set%'",
    "SHOW COLLATION WHERE Charset = 'utf8mb4' AND Collation LIKE '%general%'",
    "SELECT @@session.sql_mode",
    // mysqlnd, the `mariadb` CLI and ORMs' checks
    "SELECT @@version_comment LIMIT 1",
    "SELECT @@socket IS NOT NULL, @@port > 0",
    "SHOW SESSION VARIABLES LIKE 'time_zone'",
    "SELECT @@session.autocommit, @@in_transaction",
    "SELECT CONNECTION_ID() > 0, USER(), CURRENT_USER()",
    "SHOW WARNINGS",
    "SELECT @@session.sql_auto_is_null",
    "SELECT @@no_such_variable",
];

/// Values that name the server answering, not the session.
const PER_SERVER: &[&str] = &[
    "@@socket",
    "@@port",
    "@@server_id",
    "@@hostname",
    "@@pid_file",
];

type Outcome = Result<(Vec<(String, ColumnType)>, Vec<Vec<Value>>), String>;

async fn run(c: &mut Conn, sql: &str) -> Outcome {
    let mut r = c.query_iter(sql).await.map_err(|e| e.to_string())?;
    let cols = r
        .columns()
        .map(|cs| {
            cs.iter()
                .map(|c| (c.name_str().into_owned(), c.column_type()))
                .collect()
        })
        .unwrap_or_default();
    let rows: Vec<Row> = r.collect().await.map_err(|e| e.to_string())?;
    Ok((cols, rows.into_iter().map(|r| r.unwrap()).collect()))
}

fn direct(env: &Env) -> OptsBuilder {
    let p = env.cluster.primary.addr;
    OptsBuilder::default()
        .ip_or_hostname(p.ip().to_string())
        .tcp_port(p.port())
        .user(Some(env.cluster.app_user.clone()))
        .pass(Some(env.cluster.app_password.clone()))
        .db_name(Some("app"))
        .prefer_socket(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_time_probes_answer_as_directly() {
    let env = Env::start(1).await;
    let mut p = Conn::new(env.opts()).await.unwrap();
    let mut d = Conn::new(direct(&env)).await.unwrap();
    let mut differ = Vec::new();
    for sql in PROBES {
        if PER_SERVER.iter().any(|v| sql.contains(v)) {
            // Only its shape: the answer names a server.
            let (a, b) = (run(&mut p, sql).await, run(&mut d, sql).await);
            let shape = |o: &Outcome| o.as_ref().map(|(c, r)| (c.clone(), r.len())).ok();
            if shape(&a) != shape(&b) {
                differ.push(format!("{sql}\n  causeway: {a:?}\n  direct:   {b:?}"));
            }
            continue;
        }
        let (a, b) = (run(&mut p, sql).await, run(&mut d, sql).await);
        if a != b {
            differ.push(format!("{sql}\n  causeway: {a:?}\n  direct:   {b:?}"));
        }
    }
    // What the session set above must hold wherever its next read runs,
    // even after a connector narrowed the server's variable tracking.
    for sql in [
        "SET sql_mode = 'NO_ZERO_DATE', session_track_system_variables = 'autocommit'",
        "SELECT @@sql_mode",
        "SET SESSION sql_mode = 'ANSI_QUOTES'",
        "SET SESSION time_zone = '+05:30'",
        "SELECT @@sql_mode, @@time_zone, NOW() = NOW()",
        "SELECT @@session.session_track_system_variables IS NOT NULL",
    ] {
        let (a, b) = (run(&mut p, sql).await, run(&mut d, sql).await);
        if a != b {
            differ.push(format!("{sql}\n  causeway: {a:?}\n  direct:   {b:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} probes answer differently through Causeway:\n{}",
        differ.len(),
        differ.join("\n\n")
    );
    drop(p);
    drop(d);
    env.stop().await;
}
