//! Metric names (documented constants; label values are fixed strings) and
//! [`Handles`]: every series recorded per statement or per connection,
//! registered once at start so the hot path does no registry lookup and
//! allocates no label.
//!
//! The bottom of the crate: imports nothing from it, so every module may
//! record metrics without importing `admin` (which keeps the exporter and
//! the HTTP endpoint). Paths to the `metrics` crate are written `::metrics`
//! because this module has the same name.
//!
//! Accessors take enums or backend indices where the label set is fixed.
//! Where it is not fixed here (commands, route reasons, error kinds: their
//! lists live with their owners), the caller passes the `&'static str`
//! label; the handle is found by comparing against the few labels given at
//! start, and a label not given then is recorded through the registry, as
//! a backend whose name was not known at start is.

pub use ::metrics::{Counter, Gauge, Histogram};

/// Client connections accepted (counter).
pub const CLIENT_CONNECTIONS: &str = "causeway_client_connections_total";
/// Client connections open now (gauge).
pub const CLIENT_CONNECTIONS_OPEN: &str = "causeway_client_connections_open";
/// Client sessions that switched to the compressed protocol (counter).
pub const COMPRESSED_SESSIONS: &str = "causeway_compressed_sessions_total";
/// Logins refused, label `reason` (counter).
pub const LOGIN_FAILURES: &str = "causeway_login_failures_total";
/// Commands received from clients, label `command` (counter).
pub const COMMANDS: &str = "causeway_commands_total";
/// Routing decisions, labels `target` and `reason` (counter).
pub const ROUTE_DECISIONS: &str = "causeway_route_decisions_total";
/// Errors sent to clients, label `kind` (counter).
pub const CLIENT_ERRORS: &str = "causeway_client_errors_total";
/// Backend connections opened, label `backend` (counter).
pub const BACKEND_CONNECTS: &str = "causeway_backend_connects_total";
/// Backend connections lost in the middle of a reply, label `backend` (counter).
pub const BACKEND_LOST: &str = "causeway_backend_lost_total";
/// Autocommit reads run again elsewhere after their backend failed before
/// any byte of the result reached the client, label `backend` (the one
/// that failed) (counter).
pub const READ_RETRIES: &str = "causeway_read_retries_total";
/// Backends a statement found dead (refused, or silent and not greeting a
/// new connection) and reported down until the monitor sees them healthy
/// again, label `backend` (counter).
pub const BACKEND_MARKED_DOWN: &str = "causeway_backend_marked_down_total";
/// Account reloads from the primary (counter).
pub const ACCOUNT_RELOADS: &str = "causeway_account_reloads_total";

/// Replication position reads sent to each backend, label `backend` (counter).
pub const POSITION_POLLS: &str = "causeway_position_polls_total";
/// Primary position reads made because reads asked for a fresh one
/// (global level, missing write positions) (counter).
pub const POSITION_REQUESTS: &str = "causeway_position_requests_total";
/// Replica lag in seconds, labels `backend` and `source` (`positions`:
/// from the primary's position history; `seconds_behind_master`) (gauge).
pub const REPLICA_LAG: &str = "causeway_replica_lag_seconds";
/// Reads under a consistency level other than eventual, labels `level` and
/// `served` (`replica`, `replica_after_wait`, `primary`,
/// `primary_after_timeout`, `error`) (counter).
pub const CONSISTENCY_READS: &str = "causeway_consistency_reads_total";
/// Time reads spent waiting for a replica to reach their position, label
/// `level` (summary, seconds).
pub const CONSISTENCY_WAIT: &str = "causeway_consistency_wait_seconds";

/// Backend connections kept by the session-level pool now (gauge).
pub const SESSION_POOL_IDLE: &str = "causeway_session_pool_idle";
/// Sessions that took a pooled backend connection instead of opening one,
/// label `backend` (counter).
pub const SESSION_POOL_REUSES: &str = "causeway_session_pool_reuses_total";

/// Backend connections of the transaction-level pool, labels `backend` and
/// `state` (`idle`, `busy`) (gauge).
pub const TXN_POOL_CONNECTIONS: &str = "causeway_txn_pool_connections";
/// Statements that found every connection of a backend in use and queued,
/// label `backend` (counter).
pub const TXN_POOL_WAITS: &str = "causeway_txn_pool_waits_total";
/// Queued statements that gave up (ERROR 9001), label `backend` (counter).
pub const TXN_POOL_TIMEOUTS: &str = "causeway_txn_pool_timeouts_total";
/// Sessions pinned to a backend connection, label `reason` (counter).
pub const PINS: &str = "causeway_pins_total";
/// Sessions pinned now (gauge).
pub const PINNED_SESSIONS: &str = "causeway_pinned_sessions";
/// Changes of the observed primary (counter).
pub const ROLE_CHANGES: &str = "causeway_role_changes_total";
/// 1 while the cluster has an observed primary, else 0 (gauge).
pub const PRIMARY_KNOWN: &str = "causeway_primary_known";
/// 1 while more than one server takes writes (split brain), else 0 (gauge).
pub const SPLIT_BRAIN: &str = "causeway_split_brain";
/// Statements that waited for a primary (none, or a switchover holding
/// writes), label `result` (`released`, `timeout`) (counter).
pub const WRITE_HOLDS: &str = "causeway_write_holds_total";
/// Transactions replayed on a new primary after the old one failed under
/// them, label `result` (`done`; `mismatch`: a statement returned
/// something else; `failed`: no primary, or an error) (counter).
pub const TRANSACTION_REPLAYS: &str = "causeway_transaction_replays_total";
/// Switchovers Causeway was asked to perform, label `result` (`done`,
/// `refused`: nothing was changed; `aborted`: writes were held and the old
/// primary kept its role; `failed`: a step after the promotion failed)
/// (counter).
pub const SWITCHOVERS: &str = "causeway_switchovers_total";

/// Declares a fieldless enum whose variants map to fixed label values.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $label:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            /// Every value, in declaration order (`value as usize` indexes it).
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value exported for this variant.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// The variant exported as `label`, if any.
            pub fn of_label(label: &str) -> Option<$name> {
                match label {
                    $($label => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

label_enum! {
    /// The `target` label of [`ROUTE_DECISIONS`].
    RouteTarget {
        Primary => "primary",
        Replica => "replica",
    }
}

label_enum! {
    /// The `level` label of [`CONSISTENCY_READS`] and [`CONSISTENCY_WAIT`]
    /// (eventual reads are not counted there).
    Level {
        Session => "session",
        Global => "global",
        Bounded => "bounded",
    }
}

label_enum! {
    /// The `served` label of [`CONSISTENCY_READS`].
    Served {
        Replica => "replica",
        ReplicaAfterWait => "replica_after_wait",
        Primary => "primary",
        PrimaryAfterTimeout => "primary_after_timeout",
        Error => "error",
    }
}

label_enum! {
    /// The `reason` label of [`PINS`].
    PinReason {
        Transaction => "transaction",
        TemporaryTable => "temporary_table",
        LockTables => "lock_tables",
        UserLock => "user_lock",
        TextPrepare => "text_prepare",
        FoundRows => "found_rows",
        SetTransaction => "set_transaction",
        Cursor => "cursor",
        LongData => "long_data",
        UserVariable => "user_variable",
        Diagnostics => "diagnostics",
    }
}

label_enum! {
    /// The `reason` label of [`LOGIN_FAILURES`].
    LoginFailure {
        UnknownUser => "unknown_user",
        UnsupportedPlugin => "unsupported_plugin",
        WrongPassword => "wrong_password",
    }
}

label_enum! {
    /// The counters labelled by `backend` alone.
    BackendCounter {
        Connects => "causeway_backend_connects_total",
        Lost => "causeway_backend_lost_total",
        TxnPoolWaits => "causeway_txn_pool_waits_total",
        TxnPoolTimeouts => "causeway_txn_pool_timeouts_total",
        SessionPoolReuses => "causeway_session_pool_reuses_total",
        ReadRetries => "causeway_read_retries_total",
        MarkedDown => "causeway_backend_marked_down_total",
    }
}

impl BackendCounter {
    /// The metric name (the same string as [`BackendCounter::label`]).
    pub fn name(self) -> &'static str {
        self.label()
    }
}

/// The label values known at start.
pub struct Labels<'a> {
    /// Backend names in topology order (the index a session uses).
    pub backends: &'a [String],
    /// Every `command` label.
    pub commands: &'a [&'static str],
    /// The `(target, reason)` pairs of [`ROUTE_DECISIONS`] to register
    /// (only pairs that can occur: each registered pair is exported, at 0
    /// until used).
    pub routes: &'a [(RouteTarget, &'static str)],
    /// Every `kind` of [`CLIENT_ERRORS`].
    pub error_kinds: &'a [&'static str],
}

/// Handles of one metric, one per label value given at start.
struct Family<T> {
    entries: Vec<(&'static str, T)>,
}

impl<T> Family<T> {
    fn new(labels: &[&'static str], make: impl Fn(&'static str) -> T) -> Family<T> {
        Family {
            entries: labels.iter().map(|l| (*l, make(l))).collect(),
        }
    }

    /// The handle for `label`. Labels are string literals, so the address
    /// usually matches; the text comparison covers a copy elsewhere.
    fn get(&self, label: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(l, _)| std::ptr::eq(*l, label))
            .or_else(|| self.entries.iter().find(|(l, _)| *l == label))
            .map(|(_, h)| h)
    }
}

/// The counters of one backend, indexed by [`BackendCounter`].
struct Backend {
    name: String,
    counters: Vec<Counter>,
}

/// Every series recorded per statement or per connection, registered once
/// (build it after the recorder is installed: a handle registered before
/// records nothing). Share it behind an `Arc`.
pub struct Handles {
    client_connections: Counter,
    client_connections_open: Gauge,
    compressed_sessions: Counter,
    login_failures: Vec<Counter>,
    commands: Family<Counter>,
    /// Indexed by [`RouteTarget`].
    routes: Vec<Family<Counter>>,
    client_errors: Family<Counter>,
    /// Indexed by backend (topology order).
    backends: Vec<Backend>,
    /// Indexed by `Level * Served::ALL.len() + Served`.
    consistency_reads: Vec<Counter>,
    /// Indexed by [`Level`].
    consistency_wait: Vec<Histogram>,
    /// Indexed by [`PinReason`].
    pins: Vec<Counter>,
    pinned_sessions: Gauge,
    session_pool_idle: Gauge,
}

impl Handles {
    pub fn new(labels: &Labels<'_>) -> Handles {
        let routes = RouteTarget::ALL
            .iter()
            .map(|t| {
                let reasons: Vec<&'static str> = labels
                    .routes
                    .iter()
                    .filter(|(rt, _)| rt == t)
                    .map(|(_, r)| *r)
                    .collect();
                let target = t.label();
                Family::new(
                    &reasons,
                    |r| ::metrics::counter!(ROUTE_DECISIONS, "target" => target, "reason" => r),
                )
            })
            .collect();
        let consistency_reads = Level::ALL
            .iter()
            .flat_map(|l| {
                Served::ALL.iter().map(move |s| {
                    ::metrics::counter!(CONSISTENCY_READS, "level" => l.label(), "served" => s.label())
                })
            })
            .collect();
        Handles {
            client_connections: ::metrics::counter!(CLIENT_CONNECTIONS),
            client_connections_open: ::metrics::gauge!(CLIENT_CONNECTIONS_OPEN),
            compressed_sessions: ::metrics::counter!(COMPRESSED_SESSIONS),
            login_failures: LoginFailure::ALL
                .iter()
                .map(|r| ::metrics::counter!(LOGIN_FAILURES, "reason" => r.label()))
                .collect(),
            commands: Family::new(
                labels.commands,
                |c| ::metrics::counter!(COMMANDS, "command" => c),
            ),
            routes,
            client_errors: Family::new(
                labels.error_kinds,
                |k| ::metrics::counter!(CLIENT_ERRORS, "kind" => k),
            ),
            backends: labels
                .backends
                .iter()
                .map(|name| Backend {
                    name: name.clone(),
                    counters: BackendCounter::ALL
                        .iter()
                        .map(|c| ::metrics::counter!(c.name(), "backend" => name.clone()))
                        .collect(),
                })
                .collect(),
            consistency_reads,
            consistency_wait: Level::ALL
                .iter()
                .map(|l| ::metrics::histogram!(CONSISTENCY_WAIT, "level" => l.label()))
                .collect(),
            pins: PinReason::ALL
                .iter()
                .map(|r| ::metrics::counter!(PINS, "reason" => r.label()))
                .collect(),
            pinned_sessions: ::metrics::gauge!(PINNED_SESSIONS),
            session_pool_idle: ::metrics::gauge!(SESSION_POOL_IDLE),
        }
    }

    /// [`CLIENT_CONNECTIONS`].
    pub fn client_connections(&self) -> &Counter {
        &self.client_connections
    }

    /// [`CLIENT_CONNECTIONS_OPEN`].
    pub fn client_connections_open(&self) -> &Gauge {
        &self.client_connections_open
    }

    /// [`COMPRESSED_SESSIONS`].
    pub fn compressed_sessions(&self) -> &Counter {
        &self.compressed_sessions
    }

    /// Counts a refused login ([`LOGIN_FAILURES`]).
    pub fn login_failure(&self, reason: LoginFailure) {
        if let Some(c) = self.login_failures.get(reason as usize) {
            c.increment(1);
        }
    }

    /// Counts a command ([`COMMANDS`]); `label` is the command's label.
    pub fn command(&self, label: &'static str) {
        match self.commands.get(label) {
            Some(c) => c.increment(1),
            None => ::metrics::counter!(COMMANDS, "command" => label).increment(1),
        }
    }

    /// Counts a routing decision ([`ROUTE_DECISIONS`]).
    pub fn route(&self, target: RouteTarget, reason: &'static str) {
        match self.routes.get(target as usize).and_then(|f| f.get(reason)) {
            Some(c) => c.increment(1),
            None => ::metrics::counter!(ROUTE_DECISIONS, "target" => target.label(),
                "reason" => reason)
            .increment(1),
        }
    }

    /// Counts an error sent to a client ([`CLIENT_ERRORS`]); `kind` is the
    /// error's label.
    pub fn client_error(&self, kind: &'static str) {
        match self.client_errors.get(kind) {
            Some(c) => c.increment(1),
            None => ::metrics::counter!(CLIENT_ERRORS, "kind" => kind).increment(1),
        }
    }

    /// Counts `what` for backend `index` called `name`. A backend not known
    /// at start (or known under another name) is counted by name.
    pub fn backend(&self, what: BackendCounter, index: usize, name: &str) {
        match self
            .backends
            .get(index)
            .filter(|b| b.name == name)
            .and_then(|b| b.counters.get(what as usize))
        {
            Some(c) => c.increment(1),
            None => ::metrics::counter!(what.name(), "backend" => name.to_string()).increment(1),
        }
    }

    /// Counts a read under `level` by how it was served ([`CONSISTENCY_READS`]).
    pub fn consistency_read(&self, level: Level, served: Served) {
        let i = level as usize * Served::ALL.len() + served as usize;
        if let Some(c) = self.consistency_reads.get(i) {
            c.increment(1);
        }
    }

    /// [`Handles::consistency_read`] for a level carried as its label; a
    /// label no [`Level`] has (`eventual`) is counted by name.
    pub fn consistency_read_label(&self, level: &'static str, served: Served) {
        match Level::of_label(level) {
            Some(l) => self.consistency_read(l, served),
            None => ::metrics::counter!(CONSISTENCY_READS, "level" => level,
                "served" => served.label())
            .increment(1),
        }
    }

    /// [`Handles::consistency_wait`] for a level carried as its label; a
    /// label no [`Level`] has (`eventual`) is recorded by name.
    pub fn consistency_wait_label(&self, level: &'static str, seconds: f64) {
        match Level::of_label(level) {
            Some(l) => self.consistency_wait(l, seconds),
            None => ::metrics::histogram!(CONSISTENCY_WAIT, "level" => level).record(seconds),
        }
    }

    /// Records a position wait of `seconds` ([`CONSISTENCY_WAIT`]).
    pub fn consistency_wait(&self, level: Level, seconds: f64) {
        if let Some(h) = self.consistency_wait.get(level as usize) {
            h.record(seconds);
        }
    }

    /// Counts a session pinned, or pinned again for another reason ([`PINS`]).
    pub fn pin(&self, reason: PinReason) {
        if let Some(c) = self.pins.get(reason as usize) {
            c.increment(1);
        }
    }

    /// [`Handles::pin`] for a reason still carried as its label; a label no
    /// [`PinReason`] has is counted by name.
    pub fn pin_label(&self, reason: &'static str) {
        match PinReason::of_label(reason) {
            Some(r) => self.pin(r),
            None => ::metrics::counter!(PINS, "reason" => reason).increment(1),
        }
    }

    /// [`PINNED_SESSIONS`].
    pub fn pinned_sessions(&self) -> &Gauge {
        &self.pinned_sessions
    }

    /// [`SESSION_POOL_IDLE`].
    pub fn session_pool_idle(&self) -> &Gauge {
        &self.session_pool_idle
    }
}

#[cfg(test)]
mod tests;
