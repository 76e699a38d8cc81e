//! The `causeway` binary as a user runs it: `check`, `--config`, and
//! `playground --json` (which must leave no process behind).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_causeway");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_accepts_good_and_names_the_problem_in_bad_configs() {
    let out = tokio::process::Command::new(BIN)
        .args(["check", "--config", "config/example.toml"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[cluster]\nprimary = { name = \"p\", address = \"nohost\" }\n[monitor]\nuser = \"m\"\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("cluster.primary.address"), "{err}");
    assert!(err.contains("host:port"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_a_config_and_greets_with_the_primarys_version() {
    let env = common::Env::start(0).await;
    // A second Causeway, the binary this time, from a config file.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text =
        causeway::app::playground_config(&env.cluster, &format!("127.0.0.1:{port}"), "", None);
    let cfg = env.cluster.dir().join("bin.toml");
    std::fs::write(&cfg, text).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = tokio::process::Command::new(env.cluster.mariadb_cli())
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                &format!("-P{port}"),
                "-uapp",
                "-papp-secret",
                "-N",
                "-B",
                "-e",
                "SELECT 40 + 2",
                "app",
            ])
            .output()
            .await
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "42",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The greeting carries the primary's own version string.
    let via = common::raw::Raw::login(addr, "app", "app-secret", None, 0).await;
    let direct =
        common::raw::Raw::login(env.cluster.primary.addr, "app", "app-secret", None, 0).await;
    assert_eq!(via.greeting.server_version, direct.greeting.server_version);
    // SIGTERM drains and exits cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    drop(via);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_prints_json_serves_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pg = dir.path().join("pg");
    let (mut child, v, line) = playground(&["--dir", &pg.display().to_string()]).await;
    for k in ["proxy", "admin", "primary", "user", "password"] {
        assert!(v[k].is_string(), "{k} in {line}");
    }
    assert_eq!(v["replicas"].as_array().map(Vec::len), Some(1));
    let proxy = v["proxy"].as_str().unwrap();
    let (host, port) = proxy.rsplit_once(':').unwrap();
    let out = tokio::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            host,
            "-P",
            port,
            "-u",
            v["user"].as_str().unwrap(),
        ])
        .arg(format!("-p{}", v["password"].as_str().unwrap()))
        .args(["-N", "-B", "-e", "SELECT @@server_id", "app"])
        .output()
        .await
        .unwrap();
    // The default policy reads from a replica (or the primary until the
    // monitor has seen the replicas' positions): any of the three servers.
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        ["1", "2", "3"].contains(&id.as_str()),
        "server id {id:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = common::http_get(v["admin"].as_str().unwrap().parse().unwrap(), "/metrics").await;
    assert!(
        metrics.contains("causeway_client_connections_total"),
        "{metrics}"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // No mariadbd of this playground survives it.
    let marker = pg.display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("mariadbd") && c.contains(&marker))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

/// Starts `causeway playground --json` with one replica and `extra`
/// arguments; returns the child, its JSON line parsed, and the line.
async fn playground(extra: &[&str]) -> (tokio::process::Child, serde_json::Value, String) {
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "playground",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--replicas",
            "1",
            "--json",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("JSON line within a minute")
        .unwrap()
        .expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    (child, v, line)
}

/// `causeway playground --policy FILE` runs with each shipped consistency
/// policy, and sessions get that policy's level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_runs_with_every_shipped_consistency_policy() {
    for (file, level) in [
        ("policies/eventual.toml", "eventual"),
        ("policies/session.toml", "session"),
        ("policies/global.toml", "global"),
        ("policies/bounded.toml", "bounded:500ms"),
    ] {
        let (mut child, v, _) = playground(&["--policy", file]).await;
        let proxy = v["proxy"].as_str().unwrap();
        let (host, port) = proxy.rsplit_once(':').unwrap();
        let out = tokio::process::Command::new("mariadb")
            .args(["--no-defaults", "-h", host, "-P", port, "-u"])
            .arg(v["user"].as_str().unwrap())
            .arg(format!("-p{}", v["password"].as_str().unwrap()))
            .args([
                "-N",
                "-B",
                "-e",
                "SHOW CAUSEWAY CONSISTENCY; SELECT 1",
                "app",
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{level}\n1"),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{file}: {status:?}");
    }
}

/// `causeway playground list|kill|start|switchover --dir DIR` act on a
/// running playground: a killed replica is stopped and comes back, and a
/// switchover through the playground's Causeway moves writes to the
/// target; the playground still stops every server it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playground_servers_can_be_killed_restarted_and_switched_over() {
    let dir = tempfile::tempdir().unwrap();
    let pg = dir.path().join("pg");
    let pg_dir = pg.display().to_string();
    let (mut child, v, _) = playground(&["--dir", &pg_dir]).await;
    assert_eq!(v["dir"].as_str(), Some(pg_dir.as_str()));
    let verb = |args: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("playground").args(args).args(["--dir", &pg_dir]);
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let state = |list: &str, name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.contains(" running "))
    };
    let (ok, list, err) = verb(&["list"]);
    assert!(ok, "{err}");
    assert_eq!(state(&list, "replica1"), Some(true), "{list}");
    let (ok, out, err) = verb(&["kill", "replica1"]);
    assert!(ok && out.contains("killed"), "{out} {err}");
    let (_, list, _) = verb(&["list"]);
    assert_eq!(state(&list, "replica1"), Some(false), "{list}");
    let (ok, out, err) = verb(&["kill", "nosuch"]);
    assert!(
        !ok && out.contains("no server named 'nosuch'"),
        "{out} {err}"
    );
    let (ok, out, err) = verb(&["start", "replica1"]);
    assert!(ok && out.contains("started"), "{out} {err}");
    let (_, list, _) = verb(&["list"]);
    assert_eq!(state(&list, "replica1"), Some(true), "{list}");

    // The restarted replica catches up and is seen up; then it can take
    // over (a switchover refused while the monitor still sees it down is
    // retried).
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let (ok, out, err) = verb(&["switchover", "--to", "replica1"]);
        if ok {
            break out;
        }
        assert!(Instant::now() < deadline, "switchover: {out} {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sw: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    assert_eq!(sw["result"], "done", "{answer}");
    assert_eq!(sw["to"], "replica1", "{answer}");
    let proxy = v["proxy"].as_str().unwrap();
    let (host, port) = proxy.rsplit_once(':').unwrap();
    let out = tokio::process::Command::new("mariadb")
        .args(["--no-defaults", "-c", "-h", host, "-P", port, "-u"])
        .arg(v["user"].as_str().unwrap())
        .arg(format!("-p{}", v["password"].as_str().unwrap()))
        .args([
            "-N",
            "-B",
            "-e",
            "/*FORCE_MASTER*/ SELECT @@server_id",
            "app",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "writes go to replica1: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("mariadbd") && c.contains(&pg_dir))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}
