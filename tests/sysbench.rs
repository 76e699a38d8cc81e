//! sysbench `oltp_read_write` through Causeway, with server-side prepared
//! statements (`--db-ps-mode=auto`) and without (`disable`): zero errors.

mod common;

use common::Env;

async fn sysbench(env: &Env, port: u16, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("sysbench")
        .arg("oltp_read_write")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--mysql-user={}", env.cluster.app_user))
        .arg(format!("--mysql-password={}", env.cluster.app_password))
        .arg("--mysql-db=sbtest")
        .arg("--tables=4")
        .arg("--table-size=50000")
        .args(args)
        .output()
        .await
        .expect("sysbench is installed (scripts/install-deps installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The figure after `label:` on sysbench's summary line, e.g.
/// `ignored errors:                      0      (0.00 per sec.)`.
fn figure(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oltp_read_write_through_causeway_has_zero_errors() {
    let env = Env::start(1).await;
    // Large tables keep InnoDB deadlocks between the workload's own
    // transactions (which sysbench counts as errors) out of the picture.
    // Bulk loading goes straight to the primary; the runs go through Causeway.
    let (ok, text) = sysbench(&env, env.cluster.primary.addr.port(), &["prepare"]).await;
    assert!(ok, "sysbench prepare failed:\n{text}");
    for mode in ["auto", "disable"] {
        let ps = format!("--db-ps-mode={mode}");
        let (ok, text) = sysbench(
            &env,
            env.proxy.port(),
            &["--threads=8", "--time=10", &ps, "run"],
        )
        .await;
        assert!(ok, "sysbench run ({mode}) failed:\n{text}");
        assert!(
            !text.contains("FATAL"),
            "sysbench ({mode}) reported a fatal error:\n{text}"
        );
        assert_eq!(figure(&text, "ignored errors"), Some(0), "({mode})\n{text}");
        let tx = figure(&text, "transactions").unwrap_or(0);
        assert!(tx > 0, "({mode}) no transaction completed:\n{text}");
        let writes = figure(&text, "write").unwrap_or(0);
        assert!(writes > 0, "({mode}) no writes:\n{text}");
    }
    // Reads outside transactions go to the replica, with zero errors.
    let (ok, text) = tokio::process::Command::new("sysbench")
        .arg("oltp_read_only")
        .arg("--mysql-host=127.0.0.1")
        .arg(format!("--mysql-port={}", env.proxy.port()))
        .arg(format!("--mysql-user={}", env.cluster.app_user))
        .arg(format!("--mysql-password={}", env.cluster.app_password))
        .args([
            "--mysql-db=sbtest",
            "--tables=4",
            "--table-size=50000",
            "--threads=8",
            "--time=5",
            "--skip_trx=on",
            "--db-ps-mode=disable",
            "run",
        ])
        .output()
        .await
        .map(|o| {
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        })
        .unwrap();
    assert!(ok, "{text}");
    assert_eq!(figure(&text, "ignored errors"), Some(0), "{text}");
    let metrics = common::http_get(env.admin, "/metrics").await;
    let on_replica: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("causeway_route_decisions_total") && l.contains("target=\"replica\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        on_replica > 1000.0,
        "reads on the replica: {on_replica}\n{metrics}"
    );
    env.stop().await;
}
