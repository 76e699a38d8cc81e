//! Shared integration-test harness: a real MariaDB playground cluster with
//! an in-process Causeway in front of it, listening on a free port.
#![allow(dead_code)]

pub mod raw;
pub mod roles;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use causeway::config::Config;
use causeway::playground::{Cluster, ClusterOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct Env {
    pub cluster: Cluster,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Env {
    /// A cluster with `replicas` replicas and Causeway in front of it.
    pub async fn start(replicas: usize) -> Env {
        Self::start_with(replicas, |_| {}).await
    }

    /// Like `start`, letting the test change the configuration text.
    /// Like `start`, with a policy (TOML text) for the deployment.
    pub async fn start_with_policy(replicas: usize, policy: &str) -> Env {
        let policy = policy.to_string();
        Self::start_full(replicas, Some(policy), |_| {}).await
    }

    pub async fn start_with(replicas: usize, edit: impl FnOnce(&mut String)) -> Env {
        Self::start_full(replicas, None, edit).await
    }

    async fn start_full(
        replicas: usize,
        policy: Option<String>,
        edit: impl FnOnce(&mut String),
    ) -> Env {
        let cluster = Cluster::start(ClusterOptions {
            dir: None,
            replicas,
        })
        .await
        .expect("playground cluster starts");
        let listener = causeway::app::bind_listener("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let mut text = causeway::app::playground_config(
            &cluster,
            &proxy.to_string(),
            &admin_addr.to_string(),
            None,
        );
        edit(&mut text);
        if let Some(p) = policy {
            std::fs::write(cluster.dir().join("policy.toml"), p).unwrap();
            text.insert_str(0, "policy = \"policy.toml\"\n");
        }
        let path = cluster.dir().join("causeway.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Arc::new(Config::load(&path).expect("test config loads"));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(causeway::app::run(config, listener, Some(admin), rx));
        Env {
            cluster,
            proxy,
            admin: admin_addr,
            shutdown: tx,
            task: Some(task),
        }
    }

    /// `prefer_socket=false`: by default mysql_async asks the server for
    /// `@@socket` after connecting to 127.0.0.1 and reconnects through that
    /// Unix socket — straight to the primary, bypassing Causeway.
    pub fn url(&self, db: &str) -> String {
        format!(
            "mysql://{}:{}@{}/{}?prefer_socket=false",
            self.cluster.app_user, self.cluster.app_password, self.proxy, db
        )
    }

    /// A mysql_async connection to Causeway as the application account.
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url("app"))
            .await
            .expect("connect through causeway")
    }

    pub fn opts(&self) -> mysql_async::OptsBuilder {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.proxy.ip().to_string())
            .tcp_port(self.proxy.port())
            .user(Some(self.cluster.app_user.clone()))
            .pass(Some(self.cluster.app_password.clone()))
            .db_name(Some("app"))
            .prefer_socket(false)
    }

    /// Runs the `mariadb` CLI against Causeway (batch mode, no headers).
    pub async fn cli(&self, user: &str, password: &str, db: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(self.cluster.mariadb_cli());
        cmd.arg("--no-defaults")
            .arg("-h")
            .arg(self.proxy.ip().to_string())
            .arg("-P")
            .arg(self.proxy.port().to_string())
            .arg(format!("-u{user}"))
            .arg("-N")
            .arg("-B");
        if !password.is_empty() {
            cmd.arg(format!("-p{password}"));
        }
        cmd.args(args);
        if let Some(db) = db {
            cmd.arg(db);
        }
        tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("mariadb CLI finishes")
            .expect("mariadb CLI runs")
    }

    /// A connection straight to the primary as the application account
    /// (what a client without Causeway would see).
    pub async fn direct_primary(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.cluster.primary.addr.ip().to_string())
            .tcp_port(self.cluster.primary.addr.port())
            .user(Some(self.cluster.app_user.clone()))
            .pass(Some(self.cluster.app_password.clone()))
            .db_name(Some("app"))
            .prefer_socket(false);
        mysql_async::Conn::new(opts)
            .await
            .expect("direct connection to the primary")
    }

    /// SQL as root directly on the primary, bypassing Causeway.
    pub async fn primary_sql(&self, sql: &str) -> String {
        self.cluster
            .root_sql(&self.cluster.primary, sql)
            .await
            .expect("root SQL on the primary")
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    }
}

/// Text of the Prometheus endpoint.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A policy that keeps ordinary reads off the primary, at eventual
/// consistency: these tests are about where statements run.
pub const SPLIT: &str = "name = \"test\"\n[consistency]\nlevel = \"eventual\"\n[routing]\nprimary_accepts_reads = false\n";

/// The first column of the first row, as a server id.
pub async fn server_id(c: &mut mysql_async::Conn, sql: &str) -> u32 {
    use mysql_async::prelude::Queryable;
    c.query_first::<u32, _>(sql).await.unwrap().unwrap()
}

/// Waits until a plain read lands on a replica (the monitor has seen them).
pub async fn routable(env: &Env) {
    let mut c = env.conn().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server_id(&mut c, "SELECT @@server_id").await == 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "replicas never took reads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Env {
    /// Like `start_with_policy`, also letting the test change the
    /// configuration text (e.g. append per-user overrides).
    pub async fn start_with_policy_and(
        replicas: usize,
        policy: &str,
        edit: impl FnOnce(&mut String),
    ) -> Env {
        Self::start_full(replicas, Some(policy.to_string()), edit).await
    }
}

/// A process stopped with SIGSTOP, continued when dropped (also when the
/// test fails), so no server stays stopped. Targets the PID the test
/// started (never a name pattern).
pub struct Stopped(u32);

impl Stopped {
    pub fn pid(pid: u32) -> Stopped {
        signal("-STOP", pid);
        Stopped(pid)
    }

    pub fn server(server: &causeway::playground::Server) -> Stopped {
        Stopped::pid(server.pid().expect("the server runs"))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

/// Sends `sig` (e.g. `-STOP`) to `pid` with kill(1).
pub fn signal(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}
