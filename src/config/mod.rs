//! Configuration: the TOML schema, defaults, validation, and policy files.
//!
//! `Config::from_str` is pure; `Config::load` reads the file and the policy
//! it names (relative paths are resolved against the config file's folder).
//! Unknown keys are errors. Every error names the file, the field and why.
//! Imports `consistency` (levels in policy files) and `protocol::auth`
//! (password hashes); nothing above it.

mod policy;
mod replay;
mod secrets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::protocol::auth::StoredHash;
pub use replay::ReplayConfig;

pub use policy::{Consistency, LoadBalance, OnTimeout, Policy, Routing, Rule, RuleOn};

use std::collections::BTreeMap;
use std::sync::Arc;

/// A configuration error: which file, which field, why.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(file: &str, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// Turns a TOML deserialisation error into one naming the field (the
    /// text the parser pointed at, with its line).
    fn from_toml(file: &str, text: &str, e: toml::de::Error) -> ConfigError {
        let field = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let at = text.get(span.clone()).unwrap_or("").trim();
                let at: String = at.lines().next().unwrap_or("").chars().take(60).collect();
                format!("line {line} `{at}`")
            }
            None => "(document)".to_string(),
        };
        ConfigError::new(file, &field, e.message().trim().to_string())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub proxy: ProxyConfig,
    pub cluster: ClusterConfig,
    pub monitor: MonitorConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub pool: PoolConfig,
    /// Planned switchovers performed by Causeway (`POST /switchover`,
    /// `causeway switchover`, `CAUSEWAY SWITCHOVER TO 'name'`).
    #[serde(default)]
    pub switchover: SwitchoverConfig,
    /// Replay of transactions interrupted by the primary's loss.
    #[serde(default)]
    pub transaction_replay: ReplayConfig,
    /// Path of the routing/consistency policy (TOML). Relative to the
    /// config file. Without it, the built-in default policy applies.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Per-user overrides, by user name.
    #[serde(default)]
    pub users: BTreeMap<String, Override>,
    /// Per-database overrides, by the session's current database.
    #[serde(default)]
    pub databases: BTreeMap<String, Override>,
    /// The loaded policies (not TOML keys).
    #[serde(skip)]
    pub loaded_policy: Arc<Policy>,
    #[serde(skip)]
    user_policies: BTreeMap<String, Arc<Policy>>,
    #[serde(skip)]
    database_policies: BTreeMap<String, Arc<Policy>>,
    /// What loading found worth telling the operator (not TOML keys):
    /// secrets in files others can read.
    #[serde(skip)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    secrets_in_text: bool,
}

/// Settings that apply to one user or one database instead of the
/// deployment's.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Policy file, relative to the configuration file.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Consistency level instead of the policy's (users only).
    #[serde(default)]
    pub consistency: Option<crate::consistency::Level>,
    /// Session-level pool on or off for this user, instead of
    /// `pool.session_pool` (users only).
    #[serde(default)]
    pub session_pool: Option<bool>,
    /// Transaction-level pool on or off for this user, instead of
    /// `pool.transaction_pool` (users only).
    #[serde(default)]
    pub transaction_pool: Option<bool>,
    /// Most sessions of this user at once in this instance (users only);
    /// more get ERROR 1203, as the server's `max_user_connections` gives.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address clients connect to.
    pub listen: String,
    /// Address of the HTTP admin endpoint (/metrics, /status); empty disables it.
    pub admin_listen: String,
    /// Most client sessions at once (logged in); more get ERROR 1040.
    pub max_connections: usize,
    /// Most client connections still logging in at once, counted apart
    /// from `max_connections`; beyond it, the one logging in the longest
    /// is dropped.
    pub max_handshakes: usize,
    /// Most admin HTTP connections at once; more get `503`.
    pub admin_max_connections: usize,
    /// Largest command a client may send, in bytes; by default the
    /// primary's `@@global.max_allowed_packet` (read with the accounts;
    /// 1 GiB until known), so a larger one gets the server's ERROR 1153
    /// from Causeway instead of a connection the server cut mid-packet.
    pub max_allowed_packet: Option<usize>,
    /// Worker threads of the runtime; 0 = one per CPU core.
    pub worker_threads: usize,
    /// This instance's number (0-127), carried in the high bits of every
    /// connection id so instances in front of one cluster hand out
    /// disjoint ids.
    pub instance: u32,
    /// Bearer token the admin endpoint requires for requests that change
    /// the cluster (`POST /switchover`); none: they are accepted from
    /// whoever can reach `admin_listen`.
    pub admin_token: Option<String>,
    /// The token from this environment variable instead.
    pub admin_token_env: Option<String>,
    /// The token from this file instead (relative to the config file).
    pub admin_token_file: Option<PathBuf>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:3366".into(),
            admin_listen: "127.0.0.1:9366".into(),
            max_connections: 10_000,
            max_handshakes: 1_000,
            admin_max_connections: 64,
            max_allowed_packet: None,
            worker_threads: 0,
            instance: 0,
            admin_token: None,
            admin_token_env: None,
            admin_token_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// A name used in logs, metrics, hints and EXPLAIN ROUTE.
    pub name: String,
    /// `host:port`.
    pub address: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The server expected to be the primary: a first guess only, used
    /// until the monitor has seen what the servers say about their roles.
    #[serde(default)]
    pub primary: Option<BackendConfig>,
    /// Servers expected to be replicas (a first guess, as `primary`).
    #[serde(default)]
    pub replicas: Vec<BackendConfig>,
    /// The cluster's servers, whatever their roles: the monitor decides
    /// which one is the primary. Listed after `primary` and `replicas`.
    #[serde(default)]
    pub servers: Vec<BackendConfig>,
}

impl ClusterConfig {
    /// Every backend in topology order (its index): `primary`, then
    /// `replicas`, then `servers`, each with the field that names it.
    pub fn backends(&self) -> Vec<(String, &BackendConfig)> {
        self.primary
            .iter()
            .map(|p| ("cluster.primary".to_string(), p))
            .chain(
                self.replicas
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("cluster.replicas[{i}]"), r)),
            )
            .chain(
                self.servers
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("cluster.servers[{i}]"), r)),
            )
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// The password from this environment variable instead.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The password from this file instead (relative to the config file;
    /// a trailing newline is not part of it).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How often each backend is checked, in milliseconds.
    #[serde(default = "default_monitor_interval")]
    pub interval_ms: u64,
    /// How often each backend's replication position is read, in
    /// milliseconds (the primary's also on demand for global reads).
    #[serde(default = "default_position_interval")]
    pub position_interval_ms: u64,
    /// Under load, a fresh primary position asked for by global reads is
    /// read as soon as 10 reads wait for it, else this many microseconds
    /// after the previous one started while reads have paid for a smaller
    /// batch (a tenth of a poll each), and 4 times this at the latest;
    /// every read that arrives before a poll starts shares it. 0: back to
    /// back.
    #[serde(default = "default_position_request_spacing")]
    pub position_request_spacing_us: u64,
    /// How often accounts are reloaded from the primary, in seconds.
    #[serde(default = "default_accounts_refresh")]
    pub accounts_refresh_s: u64,
    /// Flap damping: a backend's observed state (up or down, writable or
    /// read-only, what it replicates from) changes only after this many
    /// consecutive checks agree, so a backend that failed passes this
    /// many checks before it gets traffic again, and the primary changes
    /// only on agreeing evidence.
    #[serde(default = "default_role_probes")]
    pub role_probes: u32,
}

fn default_role_probes() -> u32 {
    2
}

fn default_monitor_interval() -> u64 {
    500
}

fn default_position_interval() -> u64 {
    20
}

fn default_position_request_spacing() -> u64 {
    2000
}

fn default_accounts_refresh() -> u64 {
    60
}

/// A planned switchover performed by Causeway: the account the servers
/// replicate with once re-pointed, and the bounds of each step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwitchoverConfig {
    /// The replication account written into `CHANGE MASTER TO` on every
    /// re-pointed server (it must exist on the target with `REPLICATION
    /// SLAVE`). Empty: switchovers are refused.
    pub replication_user: String,
    pub replication_password: String,
    /// The password from this environment variable instead.
    pub replication_password_env: Option<String>,
    /// The password from this file instead (relative to the config file).
    pub replication_password_file: Option<PathBuf>,
    /// Before holding writes, the target must reach the primary's current
    /// position within this many milliseconds, else the switchover is
    /// refused as too far behind.
    pub max_lag_ms: u64,
    /// Once writes are held, transactions open on the old primary must end
    /// within this many milliseconds, else the switchover is aborted.
    pub drain_ms: u64,
    /// Once the old primary is read-only, the target must apply its last
    /// position within this many milliseconds, else the switchover is
    /// aborted (the old primary is made writable again).
    pub catch_up_ms: u64,
    /// After the promotion, how long to wait for the monitor to see the
    /// target as the primary before releasing the held writes anyway.
    pub publish_ms: u64,
}

impl Default for SwitchoverConfig {
    fn default() -> Self {
        SwitchoverConfig {
            replication_user: String::new(),
            replication_password: String::new(),
            replication_password_env: None,
            replication_password_file: None,
            max_lag_ms: 1_000,
            drain_ms: 2_000,
            catch_up_ms: 2_000,
            publish_ms: 3_000,
        }
    }
}

/// Where client accounts come from.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum AuthSource {
    /// `mysql.user` on the primary, read by the monitor account.
    #[default]
    Primary,
    /// Only `[[auth.users]]` from this file.
    Config,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub source: AuthSource,
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Host pattern as in `user@host` (default `%`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Cleartext password (hashed at load), or ...
    #[serde(default)]
    pub password: Option<String>,
    /// ... the `*`-prefixed hash `PASSWORD()` gives, or the cleartext
    /// password from an environment variable or a file (read at load).
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Global privileges Causeway's own statements check, as named in
    /// `GRANT`: `PROCESS`, `CONNECTION ADMIN`, `SUPER` (or `ALL`).
    /// Default: none.
    #[serde(default)]
    pub privileges: Vec<String>,
}

fn default_host() -> String {
    "%".into()
}

impl UserConfig {
    pub fn stored_hash(&self) -> Option<StoredHash> {
        match (&self.password, &self.password_hash) {
            (Some(p), None) => Some(StoredHash::from_password(p.as_bytes())),
            (None, Some(h)) => StoredHash::parse(h),
            (None, None) => Some(StoredHash::Empty),
            (Some(_), Some(_)) => None,
        }
    }
}

/// Backend connection pools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Keep a disconnected client's clean backend connections for the next
    /// session of the same user (the session-level pool).
    pub session_pool: bool,
    /// How long a pooled connection is kept, in milliseconds.
    pub session_pool_idle_ms: u64,
    /// Most connections kept per (backend, user, database, charset).
    pub session_pool_max_idle: usize,
    /// Sessions hold no backend connection between transactions: each
    /// autocommit statement or transaction borrows one (the
    /// transaction-level pool).
    pub transaction_pool: bool,
    /// Most backend connections the transaction-level pool opens to one
    /// backend (all users together).
    pub transaction_pool_max_per_backend: usize,
    /// How long a statement waits for a free backend connection before it
    /// fails with ERROR 9001, in milliseconds.
    pub transaction_pool_queue_timeout_ms: u64,
    /// How long an unused backend connection of the transaction-level pool
    /// is kept open, in milliseconds.
    pub transaction_pool_idle_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            session_pool: false,
            session_pool_idle_ms: 30_000,
            session_pool_max_idle: 64,
            transaction_pool: false,
            transaction_pool_max_per_backend: 50,
            transaction_pool_queue_timeout_ms: 5_000,
            transaction_pool_idle_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Opening and logging in to a backend connection.
    pub connect_ms: u64,
    /// A client that has not finished its handshake by then is dropped.
    pub client_handshake_ms: u64,
    /// On shutdown, how long sessions may take to finish.
    pub shutdown_drain_ms: u64,
    /// An admin HTTP request must arrive whole, and its answer be taken,
    /// within this; slower connections are closed.
    pub admin_request_ms: u64,
    /// A logged-in client that sends no complete command for this long is
    /// disconnected, as the server's `wait_timeout` does: the default for
    /// sessions that have not set `wait_timeout` themselves. Set it to the
    /// server's `@@global.wait_timeout`.
    pub wait_timeout_s: u64,
    /// The same for clients that log in with CLIENT_INTERACTIVE (the
    /// `mariadb` CLI), as the server's `interactive_timeout`.
    pub interactive_timeout_s: u64,
    /// A statement whose backend has sent nothing for this long has that
    /// backend checked (see `probe_ms`): a live one is waited for again, a
    /// hung one is given up (an autocommit read is retried elsewhere). A
    /// slow statement on a live backend is never cut. `0`: wait forever.
    pub read_ms: u64,
    /// The check of a silent backend: a new connection that must bring the
    /// server's greeting and the monitor account's login within this (a
    /// stopped server accepts the TCP connection and never greets).
    pub probe_ms: u64,
    /// While the cluster has no primary (or during a switchover), a
    /// statement for the primary waits this long for one before failing.
    pub write_hold_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 3_000,
            client_handshake_ms: 10_000,
            shutdown_drain_ms: 10_000,
            admin_request_ms: 5_000,
            wait_timeout_s: 28_800,
            interactive_timeout_s: 28_800,
            read_ms: 1_500,
            probe_ms: 400,
            write_hold_ms: 8_000,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn write_hold(&self) -> Duration {
        Duration::from_millis(self.write_hold_ms)
    }
    pub fn client_handshake(&self) -> Duration {
        Duration::from_millis(self.client_handshake_ms)
    }
    pub fn admin_request(&self) -> Duration {
        Duration::from_millis(self.admin_request_ms)
    }
    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }
    /// How long a backend may stay silent before it is checked; `None`: never.
    pub fn read(&self) -> Option<Duration> {
        (self.read_ms > 0).then(|| Duration::from_millis(self.read_ms))
    }
    pub fn probe(&self) -> Duration {
        Duration::from_millis(self.probe_ms)
    }
}

impl Config {
    /// Parses and validates a configuration. `file` is only used in error
    /// messages. The policy is not loaded (see [`Config::load`]).
    pub fn from_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::from_str_at(text, file, Path::new("."))
    }

    /// [`Config::from_str`], with secret files relative to `base`.
    fn from_str_at(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, e))?;
        secrets::resolve(&mut cfg, file, base)?;
        cfg.validate(file)
    }

    /// Reads, parses and validates a configuration file and its policy.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&file, "(file)", format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut cfg = Config::from_str_at(&text, &file, &base)?;
        if secrets::in_text(&cfg) && secrets::others_can_read(path) {
            cfg.warnings.push(format!(
                "{file}: holds passwords and others can read it (chmod 600, or move them to \
                 password_file / password_env)"
            ));
        }
        let names: Vec<String> = cfg.backend_names().map(str::to_string).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let load = |p: &Path| -> Result<(PathBuf, Arc<Policy>), ConfigError> {
            let resolved = if p.is_relative() {
                base.join(p)
            } else {
                p.to_path_buf()
            };
            let policy = Policy::load(&resolved)?;
            policy.check_backends(&resolved.display().to_string(), &names)?;
            Ok((resolved, Arc::new(policy)))
        };
        if let Some(p) = cfg.policy.clone() {
            let (resolved, policy) = load(&p)?;
            cfg.loaded_policy = policy;
            cfg.policy = Some(resolved);
        } else {
            cfg.loaded_policy.check_backends(&file, &names)?;
        }
        for (user, o) in cfg.users.clone() {
            if let Some(p) = &o.policy {
                cfg.user_policies.insert(user, load(p)?.1);
            }
        }
        for (db, o) in cfg.databases.clone() {
            if let Some(p) = &o.policy {
                cfg.database_policies.insert(db, load(p)?.1);
            }
        }
        Ok(cfg)
    }

    /// Names of every backend, in topology order.
    pub fn backend_names(&self) -> impl Iterator<Item = &str> {
        self.cluster
            .primary
            .iter()
            .chain(&self.cluster.replicas)
            .chain(&self.cluster.servers)
            .map(|b| b.name.as_str())
    }

    /// The policy for a session: the user's override, else the current
    /// database's, else the deployment's.
    pub fn policy_for(&self, user: &str, database: Option<&str>) -> &Arc<Policy> {
        self.user_policies
            .get(user)
            .or_else(|| database.and_then(|d| self.database_policies.get(d)))
            .unwrap_or(&self.loaded_policy)
    }

    /// Whether the session-level pool serves `user`.
    pub fn session_pool_for(&self, user: &str) -> bool {
        self.users
            .get(user)
            .and_then(|o| o.session_pool)
            .unwrap_or(self.pool.session_pool)
    }

    /// Whether the transaction-level pool serves `user`.
    pub fn transaction_pool_for(&self, user: &str) -> bool {
        self.users
            .get(user)
            .and_then(|o| o.transaction_pool)
            .unwrap_or(self.pool.transaction_pool)
    }

    /// The user's consistency level override, if the config has one.
    pub fn consistency_for(&self, user: &str) -> Option<crate::consistency::Level> {
        self.users.get(user).and_then(|o| o.consistency)
    }

    fn validate(self, file: &str) -> Result<Config, ConfigError> {
        let addr = |field: &str, v: &str| -> Result<(), ConfigError> {
            v.parse::<SocketAddr>().map(|_| ()).map_err(|e| {
                ConfigError::new(file, field, format!("'{v}' is not an ip:port address: {e}"))
            })
        };
        addr("proxy.listen", &self.proxy.listen)?;
        if !self.proxy.admin_listen.is_empty() {
            addr("proxy.admin_listen", &self.proxy.admin_listen)?;
        }
        if self.proxy.max_connections == 0 {
            return Err(ConfigError::new(
                file,
                "proxy.max_connections",
                "must be at least 1",
            ));
        }
        if self.proxy.admin_max_connections == 0 {
            return Err(ConfigError::new(
                file,
                "proxy.admin_max_connections",
                "must be at least 1",
            ));
        }
        if self.proxy.max_handshakes == 0 {
            return Err(ConfigError::new(
                file,
                "proxy.max_handshakes",
                "must be at least 1",
            ));
        }
        if self.proxy.max_allowed_packet.is_some_and(|m| m < 1024) {
            return Err(ConfigError::new(
                file,
                "proxy.max_allowed_packet",
                "must be at least 1024 bytes",
            ));
        }
        if self.proxy.instance > MAX_INSTANCE {
            return Err(ConfigError::new(
                file,
                "proxy.instance",
                format!(
                    "{} is out of range: 0 to {}",
                    self.proxy.instance, MAX_INSTANCE
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let backends = self.cluster.backends();
        if backends.is_empty() {
            return Err(ConfigError::new(
                file,
                "cluster.servers",
                "the cluster needs at least one server (`servers`, or `primary` and `replicas`)",
            ));
        }
        for (field, b) in backends {
            if b.name.is_empty()
                || !b
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::new(
                    file,
                    &format!("{field}.name"),
                    format!(
                        "'{}' must be non-empty and use only letters, digits, '_' and '-'",
                        b.name
                    ),
                ));
            }
            if !names.insert(b.name.clone()) {
                return Err(ConfigError::new(
                    file,
                    &format!("{field}.name"),
                    format!("backend name '{}' is used twice", b.name),
                ));
            }
            validate_host_port(&b.address)
                .map_err(|r| ConfigError::new(file, &format!("{field}.address"), r))?;
        }
        if self.monitor.user.is_empty() {
            return Err(ConfigError::new(file, "monitor.user", "must not be empty"));
        }
        if self.monitor.interval_ms == 0 {
            return Err(ConfigError::new(
                file,
                "monitor.interval_ms",
                "must be at least 1",
            ));
        }
        if self.monitor.role_probes == 0 {
            return Err(ConfigError::new(
                file,
                "monitor.role_probes",
                "must be at least 1",
            ));
        }
        if self.monitor.position_interval_ms == 0 {
            return Err(ConfigError::new(
                file,
                "monitor.position_interval_ms",
                "must be at least 1",
            ));
        }
        if self.timeouts.probe_ms == 0 {
            return Err(ConfigError::new(
                file,
                "timeouts.probe_ms",
                "must be at least 1",
            ));
        }
        if let Some((db, _)) = self
            .databases
            .iter()
            .find(|(_, o)| o.transaction_pool.is_some())
        {
            return Err(ConfigError::new(
                file,
                &format!("databases.{db}.transaction_pool"),
                "the transaction pool can be set per user, not per database",
            ));
        }
        if self.pool.transaction_pool_max_per_backend == 0 {
            return Err(ConfigError::new(
                file,
                "pool.transaction_pool_max_per_backend",
                "must be at least 1",
            ));
        }
        if let Some((db, _)) = self
            .databases
            .iter()
            .find(|(_, o)| o.session_pool.is_some())
        {
            return Err(ConfigError::new(
                file,
                &format!("databases.{db}.session_pool"),
                "the session pool can be set per user, not per database",
            ));
        }
        if let Some((db, _)) = self.databases.iter().find(|(_, o)| o.consistency.is_some()) {
            return Err(ConfigError::new(
                file,
                &format!("databases.{db}.consistency"),
                "consistency can be set per user, not per database (use a policy)",
            ));
        }
        for (i, u) in self.auth.users.iter().enumerate() {
            if !u.privileges.iter().all(|p| privilege_name_known(p)) {
                return Err(ConfigError::new(
                    file,
                    &format!("auth.users[{i}].privileges"),
                    "known privileges: \"PROCESS\", \"CONNECTION ADMIN\", \"SUPER\", \"ALL\"",
                ));
            }
            if u.stored_hash().is_none() {
                return Err(ConfigError::new(
                    file,
                    &format!("auth.users[{i}]"),
                    "give either `password` or `password_hash` (`*` and 40 hex digits), not both",
                ));
            }
        }
        if self.auth.source == AuthSource::Config && self.auth.users.is_empty() {
            return Err(ConfigError::new(
                file,
                "auth.users",
                "auth.source = \"config\" needs at least one [[auth.users]]",
            ));
        }
        Ok(self)
    }
}

/// Largest `[proxy] instance`: ids keep the instance in the bits above
/// their 24 low bits and stay below 2^31.
pub const MAX_INSTANCE: u32 = 127;

/// The privilege names `[[auth.users]] privileges` accepts (as in `GRANT`,
/// case and spacing aside).
pub fn privilege_name_known(name: &str) -> bool {
    let words: Vec<String> = name
        .split_ascii_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        words.as_slice(),
        ["PROCESS"] | ["SUPER"] | ["CONNECTION", "ADMIN"] | ["ALL"] | ["ALL", "PRIVILEGES"]
    )
}

fn validate_host_port(v: &str) -> Result<(), String> {
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| format!("'{v}' is not host:port"))?;
    if host.is_empty() {
        return Err(format!("'{v}' has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("'{v}' has an invalid port"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
