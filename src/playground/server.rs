//! One `mariadbd` process: its directory, config file, and lifecycle.
//!
//! Layout of a server directory (`<cluster dir>/<name>/`):
//! `my.cnf`, `data/`, `error.log`, `stdout.log`, `mariadbd.pid`, `sock`.
//! The child is a `std::process::Child` (not tokio's) so that `kill()` and
//! `Drop` can reap it synchronously, even outside a runtime.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::{io_err, PlaygroundError};
use super::install::{tail, Binaries};
use super::sql;

/// How long a server may take to accept connections after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
/// sun_path is 108 bytes including the NUL.
const MAX_SOCKET_PATH: usize = 100;

/// One MariaDB server of a playground cluster.
#[derive(Debug)]
pub struct Server {
    /// "primary", "replica1", "replica2", ...
    pub name: String,
    /// 127.0.0.1:port
    pub addr: SocketAddr,
    pub server_id: u32,
    dir: PathBuf,
    cnf: PathBuf,
    log: PathBuf,
    /// Length of the error log when the current process was spawned, so a
    /// failure shows only this run's lines.
    log_offset: u64,
    read_only: bool,
    as_root: bool,
    bins: Arc<Binaries>,
    child: Option<Child>,
}

impl Server {
    /// Creates the directory and config file; does not copy data or start.
    pub(crate) fn new(
        name: &str,
        dir: PathBuf,
        port: u16,
        server_id: u32,
        read_only: bool,
        bins: Arc<Binaries>,
        as_root: bool,
    ) -> Result<Server, PlaygroundError> {
        prepare_dir(&dir)?;
        let server = Server {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            server_id,
            cnf: dir.join("my.cnf"),
            log: dir.join("error.log"),
            dir,
            log_offset: 0,
            read_only,
            as_root,
            bins,
            child: None,
        };
        server.write_cnf()?;
        Ok(server)
    }

    pub(crate) fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Moves the server to another port (only while stopped; used when the
    /// port picked was taken by someone else before mariadbd bound it).
    pub(crate) fn set_port(&mut self, port: u16) -> Result<(), PlaygroundError> {
        self.addr.set_port(port);
        self.write_cnf()
    }

    fn socket_path(&self) -> PathBuf {
        let inside = self.dir.join("sock");
        if inside.as_os_str().len() <= MAX_SOCKET_PATH {
            inside
        } else {
            // A deep cluster dir: fall back to a short, port-unique path.
            std::env::temp_dir().join(format!("causeway-{}.sock", self.addr.port()))
        }
    }

    fn write_cnf(&self) -> Result<(), PlaygroundError> {
        let d = &self.dir;
        let mut cnf = format!(
            "[mariadbd]\n\
             datadir={datadir}\n\
             port={port}\n\
             bind-address=127.0.0.1\n\
             socket={socket}\n\
             pid-file={pid}\n\
             log-error={log}\n\
             server-id={id}\n\
             log-bin=binlog\n\
             relay-log=relay-bin\n\
             binlog_format=ROW\n\
             log_slave_updates=ON\n\
             gtid_strict_mode=ON\n\
             skip-name-resolve\n\
             local_infile=ON\n\
             max_allowed_packet=256M\n\
             max_connections=2000\n\
             performance_schema=OFF\n\
             innodb_buffer_pool_size=64M\n\
             innodb_log_file_size=48M\n\
             innodb_flush_log_at_trx_commit=2\n\
             sync_binlog=0\n\
             report-host=127.0.0.1\n\
             report-port={port}\n",
            datadir = d.join("data").display(),
            port = self.addr.port(),
            socket = self.socket_path().display(),
            pid = d.join("mariadbd.pid").display(),
            log = self.log.display(),
            id = self.server_id,
        );
        if self.as_root {
            cnf.push_str("user=root\n");
        }
        if self.read_only {
            // In the file too, so a replica restarted by a test stays read-only.
            cnf.push_str("read_only=ON\n");
        }
        fs::write(&self.cnf, cnf).map_err(io_err(format!("writing {}", self.cnf.display())))
    }

    /// True while the mariadbd process of this server is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Spawns mariadbd without waiting for it (cluster start spawns all
    /// servers first, then waits for each).
    pub(crate) fn spawn(&mut self) -> Result<(), PlaygroundError> {
        if self.is_running() {
            return Ok(());
        }
        self.log_offset = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let stdout_path = self.dir.join("stdout.log");
        let stdout = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .map_err(io_err(format!("opening {}", stdout_path.display())))?;
        let stderr = stdout
            .try_clone()
            .map_err(io_err("duplicating a file handle"))?;
        // Own process group: a terminal's Ctrl-C goes to the caller, which
        // then shuts the cluster down in order.
        use std::os::unix::process::CommandExt;
        let child = Command::new(&self.bins.mariadbd)
            .arg(format!("--defaults-file={}", self.cnf.display()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("spawning {}", self.bins.mariadbd.display())))?;
        tracing::debug!(server = %self.name, pid = child.id(), addr = %self.addr, "spawned mariadbd");
        self.child = Some(child);
        Ok(())
    }

    /// Polls until the server accepts a TCP connection and answers
    /// `SELECT 1`; fails early if the process exits.
    pub(crate) async fn wait_ready(&mut self) -> Result<(), PlaygroundError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(self.start_failed(format!("mariadbd exited ({status})")));
                }
            } else {
                return Err(self.start_failed("mariadbd is not running".into()));
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok()
                && sql::run(&self.bins.mariadb, self, "root", "", "SELECT 1")
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(
                    self.start_failed(format!("not accepting connections after {START_TIMEOUT:?}"))
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn start_failed(&self, reason: String) -> PlaygroundError {
        PlaygroundError::StartFailed {
            server: self.name.clone(),
            port: self.addr.port(),
            reason,
            log: self.log.clone(),
            log_tail: self.log_tail(30),
        }
    }

    /// The last lines this run wrote to the error log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        let start = usize::try_from(self.log_offset)
            .unwrap_or(0)
            .min(bytes.len());
        tail(&String::from_utf8_lossy(&bytes[start..]), lines)
    }

    /// Starts the server again (same port and data dir) and waits until it
    /// accepts connections. A no-op if it is running.
    pub async fn start(&mut self) -> Result<(), PlaygroundError> {
        self.spawn()?;
        self.wait_ready().await
    }

    /// Sends SIGTERM without waiting.
    pub(crate) fn terminate(&mut self) {
        if let Some(child) = self.child.as_ref() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }

    /// Waits (polling) for the process to exit, SIGKILL after `timeout`.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                tracing::warn!(server = %self.name, "mariadbd ignored SIGTERM for {timeout:?}: killing it");
                self.kill();
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Graceful stop: SIGTERM, wait for exit (SIGKILL after 30 s).
    pub async fn stop(&mut self) -> Result<(), PlaygroundError> {
        self.terminate();
        self.wait_exit(STOP_TIMEOUT).await;
        Ok(())
    }

    /// SIGKILL now, and reap the process (for tests of a dying backend).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            tracing::debug!(server = %self.name, "killed mariadbd");
        }
    }

    /// The process id of the running mariadbd (e.g. to SIGSTOP it in a
    /// test of a hung backend).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// This server's directory (config, data dir, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This server's error log (`log-error`).
    pub fn error_log(&self) -> &Path {
        &self.log
    }
}

/// Creates a server directory, or wipes one a previous playground run left
/// in a kept cluster dir (a reused data dir would carry stale binlogs and
/// replication settings). Refuses a directory the playground did not make,
/// and one a live mariadbd still uses.
fn prepare_dir(dir: &Path) -> Result<(), PlaygroundError> {
    let unusable = |reason: String| PlaygroundError::DirUnusable {
        dir: dir.to_path_buf(),
        reason,
    };
    let is_empty = match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(PlaygroundError::io(format!("reading {}", dir.display()), e)),
    };
    if !is_empty {
        let cnf = dir.join("my.cnf");
        let ours = fs::read_to_string(&cnf).is_ok_and(|c| c.starts_with("[mariadbd]\ndatadir="));
        if !ours {
            return Err(unusable(
                "it is not empty and holds no playground my.cnf; remove it or pick another dir"
                    .into(),
            ));
        }
        let needle = format!("--defaults-file={}", cnf.display());
        let pid = fs::read_to_string(dir.join("mariadbd.pid")).unwrap_or_default();
        let cmdline = fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
        if !pid.trim().is_empty() && String::from_utf8_lossy(&cmdline).contains(&needle) {
            return Err(unusable(format!(
                "mariadbd (pid {}) still runs there",
                pid.trim()
            )));
        }
        fs::remove_dir_all(dir).map_err(io_err(format!("removing the old {}", dir.display())))?;
    }
    fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let socket = self.socket_path();
        if !socket.starts_with(&self.dir) {
            // The short fallback socket lives outside the cluster dir.
            let _ = fs::remove_file(socket);
        }
    }
}
