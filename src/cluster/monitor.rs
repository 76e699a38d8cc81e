//! The monitor loop: checks every backend each interval and publishes a new
//! topology snapshot; reloads accounts from the primary periodically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{now_secs, BackendState, Cluster};
use crate::admin::metrics as m;
use crate::config::AuthSource;
use crate::consistency::Flavor;
use crate::error::Error;
use crate::pool::conn::BackendConn;

/// Runs until `shutdown` changes. Performs one full check before the
/// returned future's first `.await` point completes, so the caller can
/// wait for [`first_check`] before accepting clients.
pub fn spawn_monitor(
    cluster: Arc<Cluster>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let n = cluster.topology().backends.len();
        let mut conns: Vec<Option<BackendConn>> = (0..n).map(|_| None).collect();
        let interval = Duration::from_millis(cluster.config().monitor.interval_ms);
        let refresh = Duration::from_secs(cluster.config().monitor.accounts_refresh_s.max(1));
        let mut last_accounts: Option<Instant> = None;
        for i in 0..n {
            tokio::spawn(poll_positions(cluster.clone(), i, shutdown.clone()));
        }
        loop {
            check_all(&cluster, &mut conns).await;
            if cluster.config().auth.source == AuthSource::Primary
                && last_accounts.is_none_or(|t| t.elapsed() >= refresh)
            {
                match cluster.reload_accounts().await {
                    Ok(_) => last_accounts = Some(Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not load accounts from the primary")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    })
}

async fn check_all(cluster: &Cluster, conns: &mut [Option<BackendConn>]) {
    let mut topo = (*cluster.topology()).clone();
    let checks = conns
        .iter_mut()
        .enumerate()
        .map(|(i, c)| check_one(cluster, i, c));
    let results = futures_util::future::join_all(checks).await;
    for (state, result) in topo.backends.iter_mut().zip(results) {
        apply(state, result);
    }
    if let Some(Some(v)) = conns
        .first()
        .map(|c| c.as_ref().map(|c| c.server_version.clone()))
    {
        topo.greeting_version = v;
    }
    cluster.publish(topo);
}

struct Probe {
    read_only: bool,
    server_id: u32,
    version: String,
    /// Replicas only: (Seconds_Behind_Master, both threads running).
    replication: Option<(Option<u64>, bool)>,
}

async fn check_one(
    cluster: &Cluster,
    index: usize,
    slot: &mut Option<BackendConn>,
) -> Result<Probe, Error> {
    let result = probe(cluster, index, slot).await;
    if result.is_err() {
        // A failed or slow check leaves the connection in an unknown state.
        *slot = None;
    }
    result
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
    let mut probe = Probe {
        read_only: col(0) == "1",
        server_id: col(1).parse().unwrap_or(0),
        version: col(2),
        replication: None,
    };
    if index > 0 {
        let t = timed(conn, "SHOW SLAVE STATUS", timeout).await?;
        if !t.rows.is_empty() {
            let running = t.get(0, "Slave_IO_Running") == Some("Yes")
                && t.get(0, "Slave_SQL_Running") == Some("Yes");
            let lag = t
                .get(0, "Seconds_Behind_Master")
                .and_then(|v| v.parse().ok());
            probe.replication = Some((lag, running));
        }
    }
    Ok(probe)
}

fn apply(state: &mut BackendState, result: Result<Probe, Error>) {
    state.checked_at = Some(now_secs());
    match result {
        Ok(p) => {
            if !state.up {
                tracing::info!(backend = %state.name, "backend is up");
            }
            state.up = true;
            state.read_only = Some(p.read_only);
            state.server_id = Some(p.server_id);
            state.version = Some(p.version);
            state.lag_s = p.replication.and_then(|r| r.0);
            if let Some(l) = state.lag_s {
                metrics::gauge!(m::REPLICA_LAG, "backend" => state.name.clone(),
                    "source" => "seconds_behind_master")
                .set(l as f64);
            }
            state.replicating = p.replication.map(|r| r.1);
            state.last_error = None;
            state.consecutive_failures = 0;
        }
        Err(e) => {
            if state.up || state.consecutive_failures == 0 {
                tracing::warn!(backend = %state.name, error = %e, "backend check failed");
            }
            state.up = false;
            state.last_error = Some(e.to_string());
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        }
    }
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
    let lag = (index > 0).then(
        || metrics::gauge!(m::REPLICA_LAG, "backend" => name.clone(), "source" => "positions"),
    );
    let spacing = Duration::from_micros(cluster.config().monitor.position_request_spacing_us);
    let mut conn: Option<BackendConn> = None;
    let mut asked = false;
    let mut last_start: Option<Instant> = None;
    loop {
        // Reads asking for a fresh primary position share polls: while they
        // come concurrently (the last poll served more than one), poll starts
        // are kept `spacing` apart, and every read that arrives before a poll
        // starts is served by it. A lone client is never held back.
        if asked && positions.last_batch() > 1 {
            if let Some(t) = last_start {
                let since = t.elapsed();
                if since < spacing {
                    tokio::time::sleep(spacing - since).await;
                }
            }
        }
        let reconnected = conn.is_none();
        if conn.is_none() {
            match cluster.monitor_connect(index).await {
                Ok(c) => {
                    if index == 0 {
                        positions.set_flavor(Flavor::from_version(&c.server_version));
                    }
                    conn = Some(c);
                }
                Err(_) => {
                    let generation = (index == 0).then(|| positions.primary_poll_starting());
                    positions.record(index, Instant::now(), None, true, generation);
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            let flavor = positions.flavor();
            let generation = (index == 0).then(|| positions.primary_poll_starting());
            let started = Instant::now();
            last_start = Some(started);
            let result = timed(c, flavor.position_query(index == 0), timeout).await;
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
            if let (Some(g), Some(ms)) = (&lag, positions.sample(index).and_then(|s| s.lag_ms)) {
                g.set(ms as f64 / 1000.0);
            }
        }
        let wait = if conn.is_some() {
            interval
        } else {
            interval.max(Duration::from_millis(200))
        };
        tokio::select! {
            a = positions.primary_poll_due(wait), if index == 0 => asked = a,
            _ = tokio::time::sleep(wait), if index != 0 => asked = false,
            _ = shutdown.changed() => return,
        }
    }
}
