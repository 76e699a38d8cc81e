//! The monitor: checks every backend on its own schedule (one task each,
//! every check bounded by a timeout) and publishes each result into the
//! topology snapshot; reloads accounts from the primary periodically in a
//! task of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{now_secs, BackendState, Cluster, Observed, Source};
use crate::config::AuthSource;
use crate::consistency::Flavor;
use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::BackendConn;

/// Runs until `shutdown` changes: one task per backend checks it on its
/// own schedule, each check bounded by a timeout, so a backend that hangs
/// delays no other backend's check; accounts load in a task of their own.
/// The caller waits for the primary's first check before accepting
/// clients.
pub fn spawn_monitor(
    cluster: Arc<Cluster>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let n = cluster.topology().backends.len();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            tasks.spawn(poll_positions(cluster.clone(), i, shutdown.clone()));
            tasks.spawn(check_loop(cluster.clone(), i, shutdown.clone()));
        }
        if cluster.config().auth.source == AuthSource::Primary {
            tasks.spawn(accounts_loop(cluster.clone(), shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    })
}

/// How long one health check may take in all: connecting and each query
/// are bounded by the connect timeout; this bounds the whole.
fn check_limit(cluster: &Cluster) -> Duration {
    cluster.config().timeouts.connect().saturating_mul(3)
}

/// Checks backend `index` every `monitor.interval_ms` and publishes what
/// it found.
async fn check_loop(cluster: Arc<Cluster>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(cluster.config().monitor.interval_ms);
    let limit = check_limit(&cluster);
    let mut conn: Option<BackendConn> = None;
    loop {
        let result = match tokio::time::timeout(limit, probe(&cluster, index, &mut conn)).await {
            Ok(r) => r,
            Err(_) => Err(Error::BackendLost {
                backend: format!("#{index}"),
                reason: format!("the health check took longer than {limit:?}"),
            }),
        };
        if result.is_err() {
            // A failed or slow check leaves the connection in an unknown state.
            conn = None;
        }
        let version = conn.as_ref().map(|c| c.server_version.clone());
        let ext = conn.as_ref().map(|c| c.server_ext_capabilities);
        let needed = cluster.config().monitor.role_probes;
        let mut changed = None;
        cluster.update_topology(|topo| {
            if let Some(state) = topo.backends.get_mut(index) {
                apply(state, result, needed);
                if ext.is_some() {
                    state.ext_capabilities = ext;
                }
            }
            if topo.settle_roles() {
                changed = Some((topo.primary, topo.split_brain.clone(), topo.role_epoch));
            }
            if let (Some(v), true) = (version, topo.is_primary(index)) {
                topo.greeting_version = v;
            }
        });
        if let Some((primary, split, epoch)) = changed {
            cluster.roles_changed(primary, &split, epoch);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cluster.probe_now.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Loads accounts from the primary every `monitor.accounts_refresh_s`
/// (sooner again after a failure), each load bounded by a timeout.
async fn accounts_loop(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    let refresh = Duration::from_secs(cluster.config().monitor.accounts_refresh_s.max(1));
    let retry = Duration::from_millis(cluster.config().monitor.interval_ms)
        .max(Duration::from_millis(200))
        .min(refresh);
    loop {
        let wait = match cluster.reload_accounts().await {
            Ok(_) => refresh,
            Err(e) => {
                tracing::warn!(error = %e, "could not load accounts from the primary");
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

struct Probe {
    read_only: bool,
    server_id: u32,
    version: String,
    /// Replicas: (Seconds_Behind_Master, both threads running) of its
    /// first replication channel.
    replication: Option<(Option<u64>, bool)>,
    sources: Vec<Source>,
}

/// Runs one monitor query, bounded by the connect timeout.
async fn timed(
    conn: &mut BackendConn,
    sql: &str,
    timeout: std::time::Duration,
) -> Result<crate::pool::conn::Table, Error> {
    match tokio::time::timeout(timeout, conn.query_table(sql)).await {
        Ok(r) => r,
        Err(_) => Err(Error::BackendLost {
            backend: conn.backend.clone(),
            reason: format!("monitor query took longer than {timeout:?}"),
        }),
    }
}

/// Asks a backend what it is: writable or not, its server id and version,
/// and every replication channel it has (the same questions for every
/// backend: roles come from the answers, not from the configuration).
async fn probe(
    cluster: &Cluster,
    index: usize,
    slot: &mut Option<BackendConn>,
) -> Result<Probe, Error> {
    let conn = match slot {
        Some(c) => c,
        None => slot.insert(cluster.monitor_connect(index).await?),
    };
    let timeout = cluster.config().timeouts.connect();
    let rows = timed(conn, "SELECT @@read_only, @@server_id, @@version", timeout)
        .await?
        .rows;
    let row = rows.first().ok_or(Error::BackendProtocol {
        backend: format!("#{index}"),
    })?;
    let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let version = col(2);
    let mut probe = Probe {
        read_only: col(0) == "1",
        server_id: col(1).parse().unwrap_or(0),
        replication: None,
        sources: Vec::new(),
        version,
    };
    let channels = if Flavor::from_version(&probe.version) == Flavor::MariaDb {
        "SHOW ALL SLAVES STATUS"
    } else {
        "SHOW SLAVE STATUS"
    };
    let t = timed(conn, channels, timeout).await?;
    for r in 0..t.rows.len() {
        let host = t.get(r, "Master_Host").unwrap_or_default();
        let port = t.get(r, "Master_Port").unwrap_or_default();
        if host.is_empty() {
            continue;
        }
        probe.sources.push(Source {
            address: format!("{host}:{port}"),
            server_id: t
                .get(r, "Master_Server_Id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        });
        if probe.replication.is_none() {
            let running = t.get(r, "Slave_IO_Running") == Some("Yes")
                && t.get(r, "Slave_SQL_Running") == Some("Yes");
            let lag = t
                .get(r, "Seconds_Behind_Master")
                .and_then(|v| v.parse().ok());
            probe.replication = Some((lag, running));
        }
    }
    // Not part of the role: the source's id is learned once connected.
    probe.sources.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(probe)
}

/// Takes one check's result into the backend's state: the raw facts at
/// once, what routing depends on (up, writable, sources) through flap
/// damping.
fn apply(state: &mut BackendState, result: Result<Probe, Error>, needed: u32) {
    state.checked_at = Some(now_secs());
    let seen = match &result {
        Ok(p) => Observed {
            up: true,
            read_only: p.read_only,
            sources: p
                .sources
                .iter()
                .map(|s| Source {
                    address: s.address.clone(),
                    server_id: 0,
                })
                .collect(),
        },
        Err(_) => Observed {
            up: false,
            read_only: false,
            sources: Vec::new(),
        },
    };
    state.observe(seen, needed);
    let accepted_up = state.accepted.as_ref().is_some_and(|a| a.up);
    match result {
        Ok(p) => {
            state.server_id = Some(p.server_id);
            state.version = Some(p.version);
            state.lag_s = p.replication.and_then(|r| r.0);
            if let Some(l) = state.lag_s {
                metrics::gauge!(m::REPLICA_LAG, "backend" => state.name.clone(),
                    "source" => "seconds_behind_master")
                .set(l as f64);
            }
            state.replicating = p.replication.map(|r| r.1);
            state.consecutive_failures = 0;
            if accepted_up {
                state.last_error = None;
                // The accepted view, with the sources' ids as now known.
                if let Some(a) = state.accepted.as_ref() {
                    state.read_only = Some(a.read_only);
                }
                state.sources = p.sources;
            }
        }
        Err(e) => {
            if state.up || state.consecutive_failures == 0 {
                tracing::warn!(backend = %state.name, error = %e, "backend check failed");
            }
            state.last_error = Some(e.to_string());
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        }
    }
    if accepted_up != state.up {
        if accepted_up {
            tracing::info!(backend = %state.name, "backend is up");
        } else {
            tracing::warn!(backend = %state.name, "backend is down");
        }
    }
    state.up = accepted_up;
}

/// Reads backend `index`'s replication position every
/// `monitor.position_interval_ms` on a connection of its own (the primary's
/// also whenever a global read asks for a fresh one) and records it.
async fn poll_positions(cluster: Arc<Cluster>, index: usize, mut shutdown: watch::Receiver<bool>) {
    let positions = cluster.positions().clone();
    let interval = Duration::from_millis(cluster.config().monitor.position_interval_ms);
    let timeout = cluster.config().timeouts.connect();
    let name = cluster.topology().backends[index].name.clone();
    let polls = metrics::counter!(m::POSITION_POLLS, "backend" => name.clone());
    let requests = metrics::counter!(m::POSITION_REQUESTS);
    let lag = metrics::gauge!(m::REPLICA_LAG, "backend" => name.clone(), "source" => "positions");
    let spacing = Duration::from_micros(cluster.config().monitor.position_request_spacing_us);
    let mut conn: Option<BackendConn> = None;
    let mut asked = false;
    loop {
        // Positions are asked by role: the primary's binlog position, a
        // replica's applied position. Reads asking for a fresh primary
        // position share polls; when the next one is due is
        // `Positions::primary_poll_due`'s call.
        let primary = positions.primary() == Some(index);
        let reconnected = conn.is_none();
        if conn.is_none() {
            match cluster.monitor_connect(index).await {
                Ok(c) => {
                    positions.set_flavor(Flavor::from_version(&c.server_version));
                    conn = Some(c);
                }
                Err(_) => {
                    let generation = primary.then(|| positions.primary_poll_starting());
                    positions.record(index, Instant::now(), None, true, generation);
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            let flavor = positions.flavor();
            let generation = primary.then(|| positions.primary_poll_starting());
            let started = Instant::now();
            let result = timed(c, flavor.position_query(primary), timeout).await;
            polls.increment(1);
            if asked {
                requests.increment(1);
            }
            let pos = match result {
                Ok(t) => {
                    let text = t.rows.first().and_then(|r| r.first().cloned().flatten());
                    flavor.parse(text.as_deref().unwrap_or(""))
                }
                Err(_) => None,
            };
            if pos.is_none() {
                conn = None;
            }
            positions.record(index, started, pos, reconnected, generation);
            if let (false, Some(ms)) = (primary, positions.sample(index).and_then(|s| s.lag_ms)) {
                lag.set(ms as f64 / 1000.0);
            }
        }
        let wait = if conn.is_some() {
            interval
        } else {
            interval.max(Duration::from_millis(200))
        };
        tokio::select! {
            a = positions.primary_poll_due(wait, spacing), if primary => asked = a,
            _ = tokio::time::sleep(wait), if !primary => asked = false,
            // A change of roles: ask again at once, as the new role says.
            _ = positions.primary_changed(), if !primary => asked = false,
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::cluster::Cluster;
    use crate::config::Config;

    /// A primary that accepts connections and never says a word (nor
    /// loads accounts) does not hold up the checks of a replica: the
    /// replica (nothing listens on its port) is checked, and found down,
    /// every interval while the primary's first check and the account load
    /// still wait for their timeout. (Real time: the crate's tokio has no
    /// `test-util` for a paused clock.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_primary_does_not_hold_up_a_replica_check() {
        let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let text = format!(
            "[cluster]\nprimary = {{ name = \"primary\", address = \"{}\" }}\n\
             [[cluster.replicas]]\nname = \"replica\"\naddress = \"{closed_addr}\"\n\
             [monitor]\nuser = \"m\"\ninterval_ms = 100\n\
             [timeouts]\nconnect_ms = 60000\n",
            stuck.local_addr().unwrap()
        );
        let config = Arc::new(Config::from_str(&text, "t.toml").unwrap());
        let cluster = Cluster::new(config);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let monitor = super::spawn_monitor(cluster.clone(), rx);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let topo = cluster.topology();
        assert!(topo.backends[0].checked_at.is_none(), "primary still waits");
        assert!(!topo.backends[1].up);
        assert!(
            topo.backends[1].consecutive_failures >= 10,
            "replica checked every interval: {}",
            topo.backends[1].consecutive_failures
        );
        let _ = tx.send(true);
        monitor.abort();
        drop(stuck);
    }
}
