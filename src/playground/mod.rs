//! A local MariaDB replication cluster (one primary, N GTID replicas) for
//! `causeway playground` and for every integration test.
//!
//! Owns: finding the MariaDB programs, the cached data-dir template, the
//! `mariadbd` processes and their directories, the accounts the proxy and
//! the tests use. Imports nothing from the rest of the crate (the proxy is
//! what it helps to test, so it must not share the proxy's bugs).
//!
//! Guarantees: `Cluster::start` returns only when every server answers and
//! every replica has applied everything the primary has; no `mariadbd`
//! outlives its `Cluster` (graceful `shutdown`, SIGKILL in `Drop`, and a
//! watchdog for when our process dies without running destructors).

pub mod control;
mod error;
mod install;
mod server;
mod sql;
mod watchdog;

pub use error::{PlaygroundError, INSTALL_HINT};
pub use server::Server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use error::io_err;
use sql::quote;
use watchdog::Watchdog;

/// The application account: enough for sysbench and any app, but neither
/// SUPER nor READ_ONLY ADMIN, so a write that reaches a replica fails.
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-secret";
/// The account Causeway's monitor uses.
pub const MONITOR_USER: &str = "causeway_monitor";
pub const MONITOR_PASSWORD: &str = "monitor-secret";
/// The account replicas replicate with (also what a switchover writes
/// into `CHANGE MASTER TO`).
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl-secret";

/// How long `Cluster::start` waits for replicas to apply the setup.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per server when a picked port is taken before mariadbd binds it.
const PORT_ATTEMPTS: usize = 3;
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where the servers live. `None`: a fresh temporary directory removed
    /// when the cluster ends. `Some`: created if missing, never removed.
    pub dir: Option<PathBuf>,
    /// Number of replicas (0 is allowed: a lone primary).
    pub replicas: usize,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            dir: None,
            replicas: 2,
        }
    }
}

#[derive(Debug)]
enum ClusterDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl ClusterDir {
    fn path(&self) -> &Path {
        match self {
            ClusterDir::Temp(t) => t.path(),
            ClusterDir::Kept(p) => p,
        }
    }
}

/// A running primary + replicas. Dropping it kills every server.
#[derive(Debug)]
pub struct Cluster {
    pub primary: Server,
    pub replicas: Vec<Server>,
    pub app_user: String,
    pub app_password: String,
    pub monitor_user: String,
    pub monitor_password: String,
    mariadb: PathBuf,
    watchdog: Option<Watchdog>,
    // Last field: dropped (removed) after the servers are dead.
    dir: Option<ClusterDir>,
}

impl Cluster {
    /// Starts the servers in parallel, creates the accounts and databases
    /// on the primary, points the replicas at it and waits until they have
    /// caught up. On error everything started so far is killed.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, PlaygroundError> {
        let began = Instant::now();
        let prepared = install::prepare().await?;
        let dir = make_dir(opts.dir)?;
        let base = dir.path().to_path_buf();
        let watchdog = Watchdog::spawn(&base, matches!(dir, ClusterDir::Temp(_)))?;
        let ports = free_ports(opts.replicas + 1)?;
        let mut servers = Vec::with_capacity(ports.len());
        for (i, port) in ports.into_iter().enumerate() {
            let name = if i == 0 {
                "primary".to_string()
            } else {
                format!("replica{i}")
            };
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            servers.push(Server::new(
                &name,
                base.join(&name),
                port,
                id,
                i > 0,
                prepared.bins.clone(),
                prepared.as_root,
            )?);
        }
        copy_datadirs(&prepared.template_data, &servers).await?;
        let mut servers = servers.into_iter();
        let primary = servers.next().ok_or_else(|| {
            PlaygroundError::io("cluster layout", std::io::Error::other("no primary"))
        })?;
        // From here on, Drop cleans up whatever fails.
        let mut cluster = Cluster {
            primary,
            replicas: servers.collect(),
            app_user: APP_USER.into(),
            app_password: APP_PASSWORD.into(),
            monitor_user: MONITOR_USER.into(),
            monitor_password: MONITOR_PASSWORD.into(),
            mariadb: prepared.bins.mariadb.clone(),
            watchdog: Some(watchdog),
            dir: Some(dir),
        };
        cluster.primary.spawn()?;
        for replica in &mut cluster.replicas {
            replica.spawn()?;
        }
        ready_with_port_retry(&mut cluster.primary).await?;
        cluster.root_sql(&cluster.primary, &setup_sql()).await?;
        for i in 0..cluster.replicas.len() {
            ready_with_port_retry(&mut cluster.replicas[i]).await?;
            let sql = replica_sql(cluster.primary.addr.port());
            cluster.root_sql(&cluster.replicas[i], &sql).await?;
        }
        cluster.wait_replicas_caught_up(CATCH_UP_TIMEOUT).await?;
        tracing::info!(
            dir = %base.display(),
            primary = %cluster.primary.addr,
            replicas = cluster.replicas.len(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "playground cluster ready"
        );
        Ok(cluster)
    }

    /// Runs SQL as root (empty password, over TCP) on one server with the
    /// `mariadb` CLI in batch mode (-N -B); returns stdout, or Err with
    /// stderr. Several statements separated by `;` are fine.
    pub async fn root_sql(&self, server: &Server, sql: &str) -> Result<String, PlaygroundError> {
        sql::run(&self.mariadb, server, "root", "", sql).await
    }

    /// Like [`Cluster::root_sql`], as any account (e.g. `app` / `app-secret`).
    pub async fn sql_as(
        &self,
        server: &Server,
        user: &str,
        password: &str,
        sql: &str,
    ) -> Result<String, PlaygroundError> {
        sql::run(&self.mariadb, server, user, password, sql).await
    }

    /// Path of the `mariadb` CLI the playground found.
    pub fn mariadb_cli(&self) -> &Path {
        &self.mariadb
    }

    /// Waits (polling, bounded by `timeout`) until every replica's
    /// `@@gtid_slave_pos` covers the primary's `@@gtid_binlog_pos`.
    pub async fn wait_replicas_caught_up(&self, timeout: Duration) -> Result<(), PlaygroundError> {
        let deadline = Instant::now() + timeout;
        let target = self
            .root_sql(&self.primary, "SELECT @@gtid_binlog_pos")
            .await?
            .trim()
            .to_string();
        for replica in &self.replicas {
            loop {
                let last = match self.root_sql(replica, "SELECT @@gtid_slave_pos").await {
                    Ok(pos) if sql::covers(pos.trim(), &target) => break,
                    Ok(pos) => format!("at {}", pos.trim()),
                    Err(e) => e.to_string(),
                };
                if Instant::now() >= deadline {
                    let status = self.replication_status(replica).await;
                    return Err(PlaygroundError::ReplicationTimeout {
                        replica: replica.name.clone(),
                        target,
                        timeout,
                        detail: format!("{last}; {status}"),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// The error-relevant lines of SHOW SLAVE STATUS, for error messages.
    async fn replication_status(&self, replica: &Server) -> String {
        let sql = "SHOW SLAVE STATUS\\G";
        match sql::run_with(&self.mariadb, replica, "root", "", sql, true).await {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    l.starts_with("Slave_IO_Running")
                        || l.starts_with("Slave_SQL_Running:")
                        || l.starts_with("Last_IO_Error")
                        || l.starts_with("Last_SQL_Error")
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => e.to_string(),
        }
    }

    /// The directory holding every server's directory.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(ClusterDir::path)
            .unwrap_or(Path::new(""))
    }

    /// Every server, primary first.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    fn servers_mut(&mut self) -> impl Iterator<Item = &mut Server> {
        std::iter::once(&mut self.primary).chain(self.replicas.iter_mut())
    }

    /// Graceful stop of every server (in parallel), then removes the
    /// directory if it is temporary.
    pub async fn shutdown(mut self) -> Result<(), PlaygroundError> {
        for server in self.servers_mut() {
            server.terminate();
        }
        for server in self.servers_mut() {
            server.wait_exit(Duration::from_secs(30)).await;
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        if let Some(ClusterDir::Temp(tmp)) = self.dir.take() {
            let path = tmp.path().to_path_buf();
            tmp.close()
                .map_err(io_err(format!("removing {}", path.display())))?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in self.servers_mut() {
            server.kill();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        // `dir` (a TempDir) is removed when the fields drop, after this.
    }
}

fn make_dir(dir: Option<PathBuf>) -> Result<ClusterDir, PlaygroundError> {
    match dir {
        None => tempfile::Builder::new()
            .prefix("causeway-pg-")
            .tempdir()
            .map(ClusterDir::Temp)
            .map_err(io_err("creating a temporary cluster dir")),
        Some(path) => {
            std::fs::create_dir_all(&path)
                .map_err(io_err(format!("creating {}", path.display())))?;
            // Absolute, so config files and the watchdog's match are exact.
            let path = path
                .canonicalize()
                .map_err(io_err(format!("resolving {}", path.display())))?;
            Ok(ClusterDir::Kept(path))
        }
    }
}

/// Distinct free ports: all listeners are held until every port is picked.
fn free_ports(n: usize) -> Result<Vec<u16>, PlaygroundError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("binding 127.0.0.1:0 to pick a free port"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("reading a picked port"))
}

/// Copies the template data dir for every server, in parallel.
async fn copy_datadirs(template: &Path, servers: &[Server]) -> Result<(), PlaygroundError> {
    let mut tasks = tokio::task::JoinSet::new();
    for server in servers {
        let (src, dst) = (template.to_path_buf(), server.datadir());
        tasks.spawn_blocking(move || {
            install::copy_tree(&src, &dst).map_err(io_err(format!(
                "copying {} to {}",
                src.display(),
                dst.display()
            )))
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| PlaygroundError::io("copying a data dir", std::io::Error::other(e)))??;
    }
    Ok(())
}

/// Waits for a spawned server; if its port was taken meanwhile (another
/// process got the same ephemeral port), moves it to a new port.
async fn ready_with_port_retry(server: &mut Server) -> Result<(), PlaygroundError> {
    let mut attempt = 1;
    loop {
        match server.wait_ready().await {
            Err(PlaygroundError::StartFailed { log_tail, .. })
                if attempt < PORT_ATTEMPTS && port_in_use(&log_tail) =>
            {
                attempt += 1;
                let port = free_ports(1)?.first().copied().unwrap_or(0);
                tracing::info!(server = %server.name, port, "port was taken, retrying on another");
                server.kill();
                server.set_port(port)?;
                server.spawn()?;
            }
            other => return other,
        }
    }
}

fn port_in_use(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Bind on TCP/IP port")
}

fn setup_sql() -> String {
    format!(
        "CREATE DATABASE app;\n\
         CREATE DATABASE sbtest;\n\
         CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY {repl_pw};\n\
         GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%';\n\
         CREATE USER '{APP_USER}'@'%' IDENTIFIED BY {app_pw};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, \
         CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, \
         CREATE ROUTINE, ALTER ROUTINE, TRIGGER, REFERENCES, EVENT, PROCESS \
         ON *.* TO '{APP_USER}'@'%';\n\
         CREATE USER '{MONITOR_USER}'@'%' IDENTIFIED BY {mon_pw};\n\
         GRANT SELECT ON mysql.* TO '{MONITOR_USER}'@'%';\n\
         GRANT REPLICATION CLIENT, SLAVE MONITOR, CONNECTION ADMIN ON *.* TO '{MONITOR_USER}'@'%';\n\
         GRANT READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, PROCESS \
         ON *.* TO '{MONITOR_USER}'@'%';\n",
        repl_pw = quote(REPL_PASSWORD),
        app_pw = quote(APP_PASSWORD),
        mon_pw = quote(MONITOR_PASSWORD),
    )
}

/// Replicas start from the same template as the primary and read its
/// binlog from the start, so they receive the accounts by replication.
/// MASTER_CONNECT_RETRY=1: a primary restarted by a test is picked up in
/// about a second, not the default 60.
fn replica_sql(primary_port: u16) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary_port}, \
         MASTER_USER='{REPL_USER}', MASTER_PASSWORD={pw}, MASTER_USE_GTID=slave_pos, \
         MASTER_CONNECT_RETRY=1;\n\
         SET GLOBAL read_only=1;\n\
         START SLAVE;\n",
        pw = quote(REPL_PASSWORD),
    )
}
