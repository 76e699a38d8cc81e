//! The monitor loop: checks every backend each interval and publishes a new
//! topology snapshot; reloads accounts from the primary periodically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{now_secs, BackendState, Cluster};
use crate::config::AuthSource;
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
