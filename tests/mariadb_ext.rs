//! MariaDB's extended capabilities with a real MariaDB connector
//! (Connector/Python, over Connector/C), through Causeway and directly:
//! `executemany` uses bulk execution (COM_STMT_BULK_EXECUTE) and stores
//! what it stores directly, a JSON column reaches the client with the JSON
//! type code (extended type information), and Causeway's own result sets
//! are readable by a client that negotiated extended type information.

mod common;

use common::Env;

/// Runs the connector script against `port`; returns what it printed.
async fn python(port: u16, env: &Env, table: &str) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys, time, mariadb
port, user, password, table = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
# The extended capabilities are offered once every backend greeted the
# monitor: poll for them (a direct server offers them at once).
deadline = time.time() + 20
while True:
    c = mariadb.connect(host="127.0.0.1", port=port, user=user, password=password, database="app")
    ext = c.extended_server_capabilities
    if ext & 0x0C == 0x0C or time.time() > deadline:
        break
    c.close()
    time.sleep(0.1)
cur = c.cursor()
cur.execute(f"CREATE OR REPLACE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20), j JSON)")
rows = [(i, "v%d" % i, '{"a": %d}' % i) for i in range(200)]
cur.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", rows)
inserted = cur.rowcount
c.commit()
# Bulk again with the same statement: parameter types already known.
cur.executemany(f"UPDATE {table} SET v = ? WHERE id = ?", [("u%d" % i, i) for i in range(0, 200, 7)])
updated = cur.rowcount
c.commit()
cur.execute(f"SELECT id, v, j FROM {table} ORDER BY id")
types = [d[1] for d in cur.description]
data = [list(r) for r in cur.fetchall()]
out = {"ext": ext, "inserted": inserted, "updated": updated, "types": types, "data": data}
if port != int(sys.argv[5]):
    cur.execute("EXPLAIN ROUTE SELECT 1")
    out["explain"] = [list(r) for r in cur.fetchall()]
print(json.dumps(out))
"#;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(&env.cluster.app_user)
        .arg(&env.cluster.app_password)
        .arg(table)
        .arg(env.cluster.primary.addr.port().to_string())
        .output()
        .await
        .expect("python3 runs (scripts/install-deps installs the connector)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_connector_uses_bulk_execution_and_extended_types_as_directly() {
    let env = Env::start(1).await;
    let direct = python(env.cluster.primary.addr.port(), &env, "ext_direct").await;
    let via = python(env.proxy.port(), &env, "ext_proxied").await;
    // Causeway offers bulk operations and extended type info, as the server.
    assert_eq!(via["ext"].as_u64().unwrap() & 0x0C, 0x0C, "{via}");
    for k in ["inserted", "updated", "types", "data"] {
        assert_eq!(via[k], direct[k], "{k}");
    }
    // MYSQL_TYPE_JSON (245), not BLOB, for the JSON column.
    assert_eq!(via["types"][2], 245);
    assert_eq!(via["data"].as_array().unwrap().len(), 200);
    // Causeway's own result set, read by a client with extended type info.
    assert!(
        via["explain"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r[0] == "target")),
        "{via}"
    );
    // The rows went in by bulk execution, not a round trip per row.
    let metrics = common::http_get(env.admin, "/metrics").await;
    let count = |cmd: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("causeway_commands_total{{command=\"{cmd}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("stmt_bulk_execute") >= 2.0, "{metrics}");
    assert!(count("stmt_execute") < 10.0, "{metrics}");
    env.stop().await;
}
