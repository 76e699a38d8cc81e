//! The backends, what the monitor knows about them, and client accounts.
//!
//! The monitor polls every backend and publishes one immutable [`Topology`]
//! through `ArcSwap`; readers take one `Arc` per statement and never hold a
//! guard across `.await`. Accounts are a separate snapshot: they change on
//! their own schedule and never together with the topology.
//!
//! The snapshot's data types live in [`crate::topology`] (so the router
//! can read them without importing this module) and are re-exported here.
//!
//! May import `pool`, `topology`, `config`, `consistency`, `error`,
//! `protocol`, `metrics`; never `admin`, `session` or `app`.

pub mod accounts;
mod kill;
mod monitor;
mod roles;
mod switchover;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::config::{AuthSource, Config};
use crate::consistency::Positions;
use crate::error::Error;
use crate::pool::conn::{BackendConn, ConnectParams};
use crate::protocol::auth::{Credential, StoredHash};

pub use accounts::{Account, Accounts, Privileges};
pub use kill::BackendKill;
pub use monitor::spawn_monitor;
pub use roles::WriteHold;
pub use switchover::{Failure, SwitchoverError, SwitchoverOutcome};

pub use crate::topology::{BackendState, Observed, Role, Source, Topology};
pub use roles::PrimaryUse;

/// Shared handle to everything the monitor publishes.
pub struct Cluster {
    config: Arc<Config>,
    topology: ArcSwap<Topology>,
    accounts: ArcSwap<Accounts>,
    last_account_load: Mutex<Option<Instant>>,
    /// Statements in flight per backend (topology index), for load balancing.
    loads: Vec<AtomicU64>,
    /// One tick per routing decision (round robin, tie-breaking).
    tick: AtomicU64,
    /// Every backend's replication position, as polled and learned.
    positions: Arc<Positions>,
    /// Serialises [`Cluster::update_topology`]: each backend's check
    /// publishes on its own, and no change may overwrite another's.
    topology_update: std::sync::Mutex<()>,
    /// Statements waiting for a primary.
    gate: roles::WriteGate,
    /// The topology's `role_epoch`, for a cheap look.
    role_epoch: AtomicU64,
    /// One switchover at a time.
    switchover_lock: Mutex<()>,
    /// Wakes every backend's check at once (a switchover waiting for the
    /// monitor to see the new primary).
    probe_now: tokio::sync::Notify,
}

/// Unknown users trigger at most one reload per this interval.
const ACCOUNT_RELOAD_MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Cluster {
    pub fn new(config: Arc<Config>) -> Arc<Cluster> {
        let accounts = match config.auth.source {
            AuthSource::Config => config_accounts(&config),
            AuthSource::Primary => Accounts::default(),
        };
        let topology = Topology::from_config(&config);
        let backends = topology.backends.len();
        Arc::new(Cluster {
            loads: (0..topology.backends.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            tick: AtomicU64::new(0),
            positions: Positions::new(topology.backends.len()),
            topology: ArcSwap::from_pointee(topology),
            accounts: ArcSwap::from_pointee(accounts),
            config,
            last_account_load: Mutex::new(None),
            topology_update: std::sync::Mutex::new(()),
            gate: roles::WriteGate::new(backends),
            role_epoch: AtomicU64::new(0),
            switchover_lock: Mutex::new(()),
            probe_now: tokio::sync::Notify::new(),
        })
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn positions(&self) -> &Arc<Positions> {
        &self.positions
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    pub(crate) fn publish(&self, t: Topology) {
        self.topology.store(Arc::new(t));
    }

    /// Changes part of the topology and publishes the result, one change
    /// at a time (the lock is never held across an `.await`).
    pub(crate) fn update_topology(&self, change: impl FnOnce(&mut Topology)) {
        let _one_at_a_time = self
            .topology_update
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut t = (*self.topology()).clone();
        change(&mut t);
        self.publish(t);
    }

    /// Whether backend `index` is alive: a new connection gets its greeting
    /// and the monitor account's login through within `timeouts.probe_ms`
    /// (a refused login counts: the server answered). A stopped server
    /// (SIGSTOP, a hung process) accepts the TCP connection in its kernel
    /// and never greets; a dead one refuses it. The check logs in rather
    /// than hang up after the greeting: servers count a connection dropped
    /// in its handshake as a connect error of the host, and block a host
    /// with `max_connect_errors` of them.
    pub async fn answers(&self, index: usize) -> bool {
        let probe = self.config.timeouts.probe();
        match self.monitor_connect_within(index, probe).await {
            Ok(mut conn) => {
                // Said goodbye, so the server counts no aborted client.
                let quit = conn.send_command(&[crate::protocol::consts::com::QUIT]);
                let _ = tokio::time::timeout(probe, quit).await;
                true
            }
            Err(Error::Server(_)) => true,
            Err(_) => false,
        }
    }

    /// A snapshot of the statements in flight per backend, and a fresh tick.
    pub fn loads(&self, out: &mut Vec<u64>) -> u64 {
        out.clear();
        out.extend(self.loads.iter().map(|l| l.load(Ordering::Relaxed)));
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// Like [`Cluster::loads`], for a second look within the same decision:
    /// the current tick, not a fresh one (a fresh one would skew round
    /// robin).
    pub fn loads_now(&self, out: &mut Vec<u64>) -> u64 {
        out.clear();
        out.extend(self.loads.iter().map(|l| l.load(Ordering::Relaxed)));
        self.tick.load(Ordering::Relaxed).wrapping_sub(1)
    }

    /// Counts a statement in flight on backend `i` until the guard drops.
    pub fn in_flight(&self, i: usize) -> InFlight<'_> {
        if let Some(l) = self.loads.get(i) {
            l.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            cluster: self,
            index: i,
        }
    }

    pub fn accounts(&self) -> Arc<Accounts> {
        self.accounts.load_full()
    }

    /// Finds the account for a login. An unknown user triggers a reload
    /// from the primary that started after the login arrived (shared with
    /// concurrent logins; at most one load per second), so an account
    /// created a moment ago is found.
    /// The largest command a client may send: the configured value, else
    /// the primary's `max_allowed_packet` as last read, else 1 GiB.
    pub fn max_allowed_packet(&self) -> usize {
        self.config
            .proxy
            .max_allowed_packet
            .or_else(|| self.accounts().max_allowed_packet())
            .unwrap_or(1 << 30)
    }

    /// The server's `@@global.max_user_connections` at the last account
    /// load (0: no limit, or accounts from the config).
    pub fn global_max_user_connections(&self) -> u32 {
        self.accounts().max_user_connections()
    }

    pub async fn find_account(&self, user: &str, ip: IpAddr) -> Option<Account> {
        if let Some(a) = self.accounts().find(user, ip) {
            return Some(a.clone());
        }
        if self.config.auth.source != AuthSource::Primary {
            return None;
        }
        let arrived = Instant::now();
        if let Err(e) = self.load_accounts_after(arrived).await {
            tracing::warn!(error = %e, "could not reload accounts for an unknown user");
        }
        self.accounts().find(user, ip).cloned()
    }

    /// Reloads accounts now (the monitor's periodic load).
    pub async fn reload_accounts(&self) -> Result<usize, Error> {
        let mut last = self.last_account_load.lock().await;
        self.load_accounts(&mut last).await
    }

    /// Makes sure a load that started after `arrived` has completed.
    async fn load_accounts_after(&self, arrived: Instant) -> Result<usize, Error> {
        let mut last = self.last_account_load.lock().await;
        if let Some(t) = *last {
            if t >= arrived {
                return Ok(self.accounts().len());
            }
            let wait = ACCOUNT_RELOAD_MIN_INTERVAL.saturating_sub(t.elapsed());
            tokio::time::sleep(wait).await;
        }
        self.load_accounts(&mut last).await
    }

    async fn load_accounts(&self, last: &mut Option<Instant>) -> Result<usize, Error> {
        *last = Some(Instant::now());
        // Bounded: logins of unknown users wait for this load, and a
        // primary that hangs must not hold them (or the monitor) forever.
        let limit = self.config.timeouts.connect();
        // From the primary: accounts are created there. Without one, the
        // last load stands (logins go on with it).
        let topo = self.topology();
        // (Not yet checked counts: the first load runs at start.)
        let known_down = |p: usize| !topo.backends[p].up && topo.backends[p].checked_at.is_some();
        let Some(primary) = topo.primary.filter(|&p| !known_down(p)) else {
            return Err(Error::NoPrimary {
                waited_ms: 0,
                reason: "accounts are loaded from the primary".into(),
            });
        };
        let mut conn = self.monitor_connect(primary).await?;
        // MariaDB 10.4+ keeps global privileges in `mysql.global_priv`; a
        // server without it (or a monitor account that may not read it)
        // still gives the accounts, with no privileges.
        let rows = match bounded(
            limit,
            &conn.backend.clone(),
            conn.query_rows(ACCOUNTS_WITH_PRIVILEGES),
        )
        .await
        {
            Ok(rows) => rows,
            Err(Error::Server(e)) => {
                tracing::warn!(error = %e, "could not read privileges; accounts get none");
                bounded(limit, &conn.backend.clone(), conn.query_rows(ACCOUNTS)).await?
            }
            Err(e) => return Err(e),
        };
        let list: Vec<Account> = rows.into_iter().map(account_of_row).collect();
        let n = list.len();
        // The server's limits that Causeway applies to clients itself.
        let row = bounded(
            limit,
            &conn.backend.clone(),
            conn.query_rows("SELECT @@global.max_user_connections, @@global.max_allowed_packet"),
        )
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .unwrap_or_default();
        let value = |i: usize| row.get(i).cloned().flatten();
        let global = value(0).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        let packet = value(1).and_then(|v| v.parse::<usize>().ok());
        self.accounts.store(Arc::new(
            Accounts::new(list)
                .with_global_limit(global)
                .with_max_allowed_packet(packet),
        ));
        metrics::counter!(crate::metrics::ACCOUNT_RELOADS).increment(1);
        Ok(n)
    }

    /// Opens a connection to backend `index` with the monitor account.
    pub async fn monitor_connect(&self, index: usize) -> Result<BackendConn, Error> {
        self.monitor_connect_within(index, self.config.timeouts.connect())
            .await
    }

    /// [`Cluster::monitor_connect`], bounded by `timeout`.
    async fn monitor_connect_within(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<BackendConn, Error> {
        let topo = self.topology();
        let b = topo
            .backends
            .get(index)
            .ok_or_else(|| Error::BackendUnavailable {
                backend: format!("#{index}"),
                address: String::new(),
                reason: "no such backend".into(),
            })?;
        BackendConn::connect(&ConnectParams {
            backend: b.name.clone(),
            address: b.address.clone(),
            user: self.config.monitor.user.clone(),
            credential: Credential::from_password(self.config.monitor.password.as_bytes()),
            database: None,
            client_capabilities: 0,
            client_ext_capabilities: 0,
            charset: 45,
            attributes: vec![("program_name".into(), "causeway-monitor".into())],
            timeout,
        })
        .await
    }
}

const ACCOUNTS: &str =
    "SELECT User, Host, plugin, authentication_string, NULL, max_user_connections FROM mysql.user";

const ACCOUNTS_WITH_PRIVILEGES: &str = "SELECT u.User, u.Host, u.plugin, \
     u.authentication_string, CAST(JSON_VALUE(g.Priv, '$.access') AS UNSIGNED), \
     u.max_user_connections \
     FROM mysql.user u LEFT JOIN mysql.global_priv g ON g.User = u.User AND g.Host = u.Host";

/// One row of [`ACCOUNTS`] or [`ACCOUNTS_WITH_PRIVILEGES`].
fn account_of_row(r: Vec<Option<String>>) -> Account {
    let col = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let plugin = col(2);
    let auth = col(3);
    let hash = match plugin.as_str() {
        "" | "mysql_native_password" => StoredHash::parse(&auth),
        _ => None,
    };
    let access = col(4).parse::<u64>().unwrap_or(0);
    Account {
        user: col(0),
        host: col(1),
        plugin,
        hash,
        privileges: Privileges::from_access(access),
        max_user_connections: col(5).parse::<u32>().ok().filter(|n| *n > 0),
    }
}

/// A statement in flight on one backend; see [`Cluster::in_flight`].
pub struct InFlight<'a> {
    cluster: &'a Cluster,
    index: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.cluster.loads.get(self.index) {
            l.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn config_accounts(cfg: &Config) -> Accounts {
    Accounts::new(
        cfg.auth
            .users
            .iter()
            .map(|u| Account {
                user: u.name.clone(),
                host: u.host.clone(),
                plugin: "mysql_native_password".into(),
                hash: u.stored_hash(),
                privileges: Privileges::from_names(&u.privileges).unwrap_or_default(),
                max_user_connections: None,
            })
            .collect(),
    )
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `query`, or an error once it has taken longer than `limit`: the
/// account query runs on the primary, which may hang.
async fn bounded<T>(
    limit: std::time::Duration,
    backend: &str,
    query: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, query).await {
        Ok(r) => r,
        Err(_) => Err(Error::BackendLost {
            backend: backend.to_string(),
            reason: format!("the account query took longer than {limit:?}"),
        }),
    }
}
