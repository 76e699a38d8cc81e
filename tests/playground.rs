//! The playground against real MariaDB: replication works, replicas are
//! read-only for the app account, servers survive kill/start, and nothing
//! is left behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use causeway::playground::{Cluster, ClusterOptions, Server};

const CATCH_UP: Duration = Duration::from_secs(20);

/// PIDs of live `mariadbd` processes whose command line mentions `dir`.
fn mariadbd_pids_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains("mariadbd") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Runs the `mariadb` CLI as `user` with the password on the command line,
/// the way a person would; returns (success, stdout, stderr).
fn cli(
    cluster: &Cluster,
    server: &Server,
    user: &str,
    password: &str,
    sql: &str,
) -> (bool, String, String) {
    let out = Command::new(cluster.mariadb_cli())
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("-h127.0.0.1")
        .arg(format!("-P{}", server.addr.port()))
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        .args(["-N", "-B", "-e", sql])
        .output()
        .expect("run mariadb CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

async fn value_on(cluster: &Cluster, server: &Server, sql: &str) -> String {
    cluster
        .root_sql(server, sql)
        .await
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn cluster_replicates_rejects_replica_writes_survives_kill_and_cleans_up() {
    let began = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions::default()).await.unwrap();
    eprintln!("cluster with 2 replicas ready in {:?}", began.elapsed());
    let dir = cluster.dir().to_path_buf();
    assert!(dir.exists());
    assert_eq!(cluster.replicas.len(), 2);
    assert_eq!(cluster.primary.server_id, 1);
    assert_eq!(cluster.replicas[0].server_id, 2);
    assert_eq!(cluster.replicas[1].server_id, 3);
    assert_eq!(mariadbd_pids_under(&dir).len(), 3);

    // Roles as configured.
    assert_eq!(
        value_on(&cluster, &cluster.primary, "SELECT @@read_only").await,
        "0"
    );
    for replica in &cluster.replicas {
        assert_eq!(value_on(&cluster, replica, "SELECT @@read_only").await, "1");
        assert_eq!(
            value_on(&cluster, replica, "SELECT @@server_id").await,
            replica.server_id.to_string()
        );
        assert_eq!(replica.addr.ip().to_string(), "127.0.0.1");
    }

    // A row written on the primary reaches both replicas.
    cluster
        .root_sql(
            &cluster.primary,
            "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.t VALUES (1, 'hello');",
        )
        .await
        .unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();
    for replica in &cluster.replicas {
        assert_eq!(
            value_on(&cluster, replica, "SELECT v FROM app.t WHERE id = 1").await,
            "hello"
        );
    }

    // The accounts exist everywhere; the app account may write on the
    // primary but a replica refuses it with 1290 (read-only).
    let (ok, _, err) = cli(
        &cluster,
        &cluster.primary,
        "app",
        "app-secret",
        "INSERT INTO app.t VALUES (2, 'primary')",
    );
    assert!(ok, "app write on primary failed: {err}");
    let replica = &cluster.replicas[0];
    let (ok, _, err) = cli(
        &cluster,
        replica,
        "app",
        "app-secret",
        "INSERT INTO app.t VALUES (3, 'replica')",
    );
    assert!(!ok, "a write by app on a replica succeeded");
    assert!(
        err.contains("1290") && err.contains("read-only"),
        "unexpected error: {err}"
    );
    let (ok, out, err) = cli(
        &cluster,
        replica,
        "causeway_monitor",
        "monitor-secret",
        "SHOW SLAVE STATUS",
    );
    assert!(ok, "monitor cannot read slave status: {err}");
    assert!(
        out.contains("Yes\tYes"),
        "replication threads not running: {out}"
    );
    let (ok, out, err) = cli(
        &cluster,
        replica,
        "causeway_monitor",
        "monitor-secret",
        "SELECT COUNT(*) FROM mysql.user WHERE user = 'app'",
    );
    assert!(
        ok && out == "1",
        "monitor cannot read mysql.user on a replica: {out} {err}"
    );

    // A replica that does not apply makes the wait fail, saying why.
    cluster
        .root_sql(&cluster.replicas[0], "STOP SLAVE SQL_THREAD")
        .await
        .unwrap();
    cluster
        .root_sql(&cluster.primary, "INSERT INTO app.t VALUES (6, 'lagging')")
        .await
        .unwrap();
    let err = cluster
        .wait_replicas_caught_up(Duration::from_millis(300))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("replica1") && text.contains("Slave_SQL_Running: No"),
        "{text}"
    );
    cluster
        .root_sql(&cluster.replicas[0], "START SLAVE SQL_THREAD")
        .await
        .unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();

    // kill() then start() of a replica: replication resumes, still read-only.
    let old_addr = cluster.replicas[1].addr;
    cluster.replicas[1].kill();
    assert!(!cluster.replicas[1].is_running());
    assert!(cluster
        .root_sql(&cluster.replicas[1], "SELECT 1")
        .await
        .is_err());
    cluster
        .root_sql(
            &cluster.primary,
            "INSERT INTO app.t VALUES (4, 'while-down')",
        )
        .await
        .unwrap();
    cluster.replicas[1].start().await.unwrap();
    assert!(cluster.replicas[1].is_running());
    assert_eq!(cluster.replicas[1].addr, old_addr);
    cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();
    let restarted = &cluster.replicas[1];
    assert_eq!(
        value_on(&cluster, restarted, "SELECT v FROM app.t WHERE id = 4").await,
        "while-down"
    );
    assert_eq!(
        value_on(&cluster, restarted, "SELECT @@read_only").await,
        "1"
    );

    // Graceful stop() and start() of the primary: replicas reconnect.
    cluster.primary.stop().await.unwrap();
    assert!(!cluster.primary.is_running());
    cluster.primary.start().await.unwrap();
    cluster
        .root_sql(
            &cluster.primary,
            "INSERT INTO app.t VALUES (5, 'after-restart')",
        )
        .await
        .unwrap();
    cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();
    for replica in &cluster.replicas {
        assert_eq!(
            value_on(&cluster, replica, "SELECT COUNT(*) FROM app.t").await,
            "5"
        );
    }

    drop(cluster);
    assert!(
        mariadbd_pids_under(&dir).is_empty(),
        "mariadbd left behind after drop"
    );
    assert!(
        !dir.exists(),
        "temporary cluster dir left behind: {}",
        dir.display()
    );
}

#[tokio::test]
async fn two_clusters_start_concurrently_on_distinct_ports() {
    let opts = || ClusterOptions {
        dir: None,
        replicas: 1,
    };
    let (a, b) = tokio::join!(Cluster::start(opts()), Cluster::start(opts()));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut ports: Vec<u16> = a
        .servers()
        .chain(b.servers())
        .map(|s| s.addr.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4, "ports collide");
    assert_ne!(a.dir(), b.dir());

    for (cluster, tag) in [(&a, "from-a"), (&b, "from-b")] {
        let sql =
            format!("CREATE TABLE app.who (v VARCHAR(10)); INSERT INTO app.who VALUES ('{tag}')");
        cluster.root_sql(&cluster.primary, &sql).await.unwrap();
    }
    for (cluster, tag) in [(&a, "from-a"), (&b, "from-b")] {
        cluster.wait_replicas_caught_up(CATCH_UP).await.unwrap();
        assert_eq!(
            value_on(
                cluster,
                &cluster.replicas[0],
                "SELECT GROUP_CONCAT(v) FROM app.who"
            )
            .await,
            tag
        );
    }

    // One ends gracefully, the other by drop: both leave nothing behind.
    let (dir_a, dir_b) = (a.dir().to_path_buf(), b.dir().to_path_buf());
    a.shutdown().await.unwrap();
    assert!(mariadbd_pids_under(&dir_a).is_empty());
    assert!(!dir_a.exists());
    assert_eq!(
        mariadbd_pids_under(&dir_b).len(),
        2,
        "shutting down a touched b"
    );
    drop(b);
    assert!(mariadbd_pids_under(&dir_b).is_empty());
    assert!(!dir_b.exists());
}

#[tokio::test]
async fn a_given_dir_is_created_and_kept() {
    let parent = tempfile::Builder::new()
        .prefix("causeway-pgtest-")
        .tempdir()
        .unwrap();
    let dir = parent.path().join("nested/cluster");
    let cluster = Cluster::start(ClusterOptions {
        dir: Some(dir.clone()),
        replicas: 0,
    })
    .await
    .unwrap();
    assert!(cluster.replicas.is_empty());
    assert!(cluster
        .primary
        .dir()
        .starts_with(dir.canonicalize().unwrap()));
    assert_eq!(
        value_on(
            &cluster,
            &cluster.primary,
            "SELECT COUNT(*) FROM mysql.user WHERE user IN ('app', 'causeway_monitor', 'repl')"
        )
        .await,
        "3"
    );
    let log = cluster.primary.error_log().to_path_buf();
    cluster.shutdown().await.unwrap();
    assert!(mariadbd_pids_under(&dir).is_empty());
    assert!(
        dir.join("primary/data").is_dir(),
        "a given dir must be kept"
    );
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("Shutdown complete"),
        "not a graceful shutdown: {log}"
    );

    // The same dir again: the old server dir is replaced by a fresh one.
    let again = Cluster::start(ClusterOptions {
        dir: Some(dir.clone()),
        replicas: 1,
    })
    .await
    .unwrap();
    assert_eq!(
        value_on(&again, &again.primary, "SELECT @@gtid_binlog_pos").await,
        value_on(&again, &again.replicas[0], "SELECT @@gtid_slave_pos").await
    );
    assert_eq!(mariadbd_pids_under(&dir).len(), 2);
    // While it runs, nobody else may take the dir.
    let err = Cluster::start(ClusterOptions {
        dir: Some(dir.clone()),
        replicas: 0,
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("still runs there"), "{err}");
    assert_eq!(
        mariadbd_pids_under(&dir).len(),
        2,
        "the refused start touched the running cluster"
    );
    drop(again);
    assert!(mariadbd_pids_under(&dir).is_empty());

    // A non-empty dir the playground did not make is refused, not wiped.
    let foreign = parent.path().join("foreign");
    std::fs::create_dir_all(foreign.join("primary")).unwrap();
    std::fs::write(foreign.join("primary/precious"), b"data").unwrap();
    let err = Cluster::start(ClusterOptions {
        dir: Some(foreign.clone()),
        replicas: 0,
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    assert!(foreign.join("primary/precious").exists());
}
