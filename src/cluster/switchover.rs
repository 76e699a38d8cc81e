//! A planned switchover performed by Causeway: the primary's role moves to
//! a replica with no write lost and, for clients, only a pause.
//!
//! ```text
//!  checks (nothing changed yet; refused with the reason)
//!    target known, up, not the primary, replicating from the primary,
//!    able to reach the primary's position within switchover.max_lag_ms
//!  hold new writes            (Cluster::hold_writes)
//!  drain                      no session of Causeway's uses the old primary
//!                             (a statement or a transaction there) and the
//!                             server shows no other open transaction that
//!                             changed rows (else: abort, release)
//!  old primary read_only=1    then read its @@gtid_binlog_pos
//!  target catches up          MASTER_GTID_WAIT(pos) (else: abort, old
//!                             primary read_only=0, release)
//!  promote the target         STOP SLAVE; RESET SLAVE ALL; read_only=0
//!  re-point every other up server, the old primary from `pos`
//!  wait until the monitor publishes the target as the primary
//!  release the held writes    (they go to the new primary)
//! ```
//!
//! The work runs in a task of its own, so a caller that goes away (an
//! admin client, a killed session) never leaves it half done. One
//! switchover runs at a time.
//!
//! The monitor account does the work: it needs, besides what the monitor
//! uses, `READ_ONLY ADMIN` (or `SUPER` before 10.5) for `read_only`, `REPLICATION
//! SLAVE ADMIN` for `STOP/START/RESET SLAVE`, `CHANGE MASTER` and
//! `gtid_slave_pos`, and `PROCESS` for `information_schema.INNODB_TRX`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::error::Error;
use crate::metrics as m;
use crate::pool::conn::BackendConn;
use crate::topology::same_address;

/// What a switchover did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwitchoverOutcome {
    pub from: String,
    pub to: String,
    /// How long new writes were held, in milliseconds.
    pub stall_ms: u64,
    /// From the request to the end, checks included.
    pub elapsed_ms: u64,
    /// The old primary's last position, which the target applied.
    pub position: String,
    /// Steps after the promotion that did not succeed (a server not
    /// re-pointed, the monitor slow to see the new primary): the new
    /// primary takes writes, but these need a look.
    pub warnings: Vec<String>,
}

/// Why a switchover did not happen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// Nothing was changed: the checks said no (or one already runs).
    Refused,
    /// Writes were held, then released with the old primary still the
    /// primary.
    Aborted,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct SwitchoverError {
    pub failure: Failure,
    pub reason: String,
}

impl SwitchoverError {
    fn refused(reason: impl Into<String>) -> SwitchoverError {
        SwitchoverError {
            failure: Failure::Refused,
            reason: format!("refused: {}", reason.into()),
        }
    }
    fn aborted(reason: impl Into<String>) -> SwitchoverError {
        SwitchoverError {
            failure: Failure::Aborted,
            reason: format!(
                "aborted (the old primary keeps its role): {}",
                reason.into()
            ),
        }
    }
}

impl From<SwitchoverError> for Error {
    fn from(e: SwitchoverError) -> Error {
        Error::Switchover { reason: e.reason }
    }
}

/// The transactions a switchover waits for on the old primary: those that
/// changed or lock something, or run a statement (a transaction that only
/// read and sits idle is not waited for: if its client writes in it later,
/// the old primary, read-only by then, refuses). Only INNODB_TRX: joining
/// the process list here was followed once by a lost connection under
/// load.
const OPEN_TRANSACTIONS: &str = "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
     WHERE trx_mysql_thread_id <> CONNECTION_ID() \
     AND (trx_rows_modified > 0 OR trx_rows_locked > 0 OR trx_query IS NOT NULL)";

/// How often the drain and the wait for the monitor look again.
const POLL: Duration = Duration::from_millis(10);

/// The least time between two looks at `INNODB_TRX` that shows fresh rows.
const TRX_LOOK: Duration = Duration::from_millis(120);

impl Cluster {
    /// Moves the primary's role to backend `to` (its configured name); see
    /// the module documentation for the steps.
    pub async fn switchover(
        self: &Arc<Self>,
        to: &str,
    ) -> Result<SwitchoverOutcome, SwitchoverError> {
        let cluster = self.clone();
        let to = to.to_string();
        let result = tokio::spawn(async move { cluster.run_switchover(&to).await })
            .await
            .unwrap_or_else(|e| Err(SwitchoverError::aborted(format!("the task failed: {e}"))));
        let label = match &result {
            Ok(o) if o.warnings.is_empty() => "done",
            Ok(_) => "incomplete",
            Err(e) if e.failure == Failure::Refused => "refused",
            Err(_) => "aborted",
        };
        metrics::counter!(m::SWITCHOVERS, "result" => label).increment(1);
        match &result {
            Ok(o) => tracing::warn!(from = %o.from, to = %o.to, stall_ms = o.stall_ms,
                warnings = ?o.warnings, "switchover done"),
            Err(e) => tracing::warn!(reason = %e.reason, "switchover did not happen"),
        }
        result
    }

    async fn run_switchover(&self, to: &str) -> Result<SwitchoverOutcome, SwitchoverError> {
        let began = Instant::now();
        let Ok(_one) = self.switchover_lock.try_lock() else {
            return Err(SwitchoverError::refused(
                "another switchover is in progress",
            ));
        };
        let cfg = self.config().switchover.clone();
        if cfg.replication_user.is_empty() {
            return Err(SwitchoverError::refused(
                "switchover.replication_user is not configured (the account re-pointed servers \
                 replicate with)",
            ));
        }
        let topo = self.topology();
        let names: Vec<&str> = topo.backends.iter().map(|b| b.name.as_str()).collect();
        let Some(target) = topo.backends.iter().position(|b| b.name == to) else {
            return Err(SwitchoverError::refused(format!(
                "unknown server '{to}' (the servers are: {})",
                names.join(", ")
            )));
        };
        let Some(old) = topo.primary else {
            return Err(SwitchoverError::refused(
                "the cluster has no primary to switch over from",
            ));
        };
        let (old_b, target_b) = (&topo.backends[old], &topo.backends[target]);
        if old == target {
            return Err(SwitchoverError::refused(format!(
                "'{to}' is already the primary"
            )));
        }
        if !target_b.up {
            return Err(SwitchoverError::refused(format!(
                "'{to}' is down ({})",
                target_b
                    .last_error
                    .as_deref()
                    .unwrap_or("failed its checks")
            )));
        }
        let step_limit = self.config().timeouts.connect().max(Duration::from_secs(5));
        let connect = |i: usize, what: &'static str| async move {
            tokio::time::timeout(step_limit, self.monitor_connect(i))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::BackendUnavailable {
                        backend: format!("#{i}"),
                        address: String::new(),
                        reason: "connecting took too long".into(),
                    })
                })
                .map_err(|e| SwitchoverError::refused(format!("cannot reach the {what}: {e}")))
        };
        let mut oc = connect(old, "primary").await?;
        let mut tc = connect(target, "target").await?;
        check_replicates(&mut tc, to, &old_b.address, old_b.server_id, step_limit).await?;
        // Close enough: the target reaches the primary's current position
        // within max_lag_ms (before anything is held).
        let pos = value(&mut oc, "SELECT @@gtid_binlog_pos", step_limit)
            .await
            .map_err(|e| {
                SwitchoverError::refused(format!("reading the primary's position: {e}"))
            })?;
        let max_lag = Duration::from_millis(cfg.max_lag_ms);
        if !gtid_wait(&mut tc, &pos, max_lag).await.map_err(|e| {
            SwitchoverError::refused(format!("waiting for '{to}' to reach {pos}: {e}"))
        })? {
            return Err(SwitchoverError::refused(format!(
                "'{to}' is too far behind: it did not reach the primary's position {pos} within \
                 switchover.max_lag_ms ({} ms)",
                cfg.max_lag_ms
            )));
        }
        tracing::info!(from = %old_b.name, to, "switchover: checks passed; holding writes");

        let hold = self.hold_writes();
        let held = Instant::now();
        self.drain(
            &mut oc,
            old,
            Duration::from_millis(cfg.drain_ms),
            step_limit,
        )
        .await?;
        tracing::info!(from = %old_b.name, "switchover: drained; making the old primary read-only");
        exec(&mut oc, "SET GLOBAL read_only=1", step_limit)
            .await
            .map_err(|e| SwitchoverError::aborted(format!("SET GLOBAL read_only=1: {e}")))?;
        let undo = |why: String| async move {
            // Best effort: the old primary takes writes again.
            let restored = match self.monitor_connect(old).await {
                Ok(mut c) => exec(&mut c, "SET GLOBAL read_only=0", step_limit).await,
                Err(e) => Err(e),
            };
            match restored {
                Ok(()) => SwitchoverError::aborted(why),
                Err(e) => SwitchoverError::aborted(format!(
                    "{why}; restoring read_only=0 on the old primary failed too ({e}): \
                     set it by hand"
                )),
            }
        };
        let last = match value(&mut oc, "SELECT @@gtid_binlog_pos", step_limit).await {
            Ok(p) => p,
            Err(e) => return Err(undo(format!("reading the old primary's position: {e}")).await),
        };
        tracing::info!(position = %last, to, "switchover: waiting for the target to apply the old primary's last position");
        let catch_up = Duration::from_millis(cfg.catch_up_ms);
        match gtid_wait(&mut tc, &last, catch_up).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(undo(format!(
                    "'{to}' did not apply {last} within switchover.catch_up_ms ({} ms)",
                    cfg.catch_up_ms
                ))
                .await)
            }
            Err(e) => return Err(undo(format!("waiting on '{to}': {e}")).await),
        }
        tracing::info!(to, "switchover: promoting the target");
        for sql in ["STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=0"] {
            if let Err(e) = exec(&mut tc, sql, step_limit).await {
                // Back as it was: the target replicates again.
                let _ = exec(&mut tc, "SET GLOBAL read_only=1", step_limit).await;
                let back = change_master(&cfg, &old_b.address, None);
                let mut undo_target = Ok(());
                for s in back.iter().map(String::as_str) {
                    undo_target = undo_target.and(exec(&mut tc, s, step_limit).await);
                }
                let why = match undo_target {
                    Ok(()) => format!("{sql} on '{to}': {e}"),
                    Err(e2) => format!(
                        "{sql} on '{to}': {e}; re-pointing '{to}' back failed too ({e2}): \
                         re-point it by hand"
                    ),
                };
                return Err(undo(why).await);
            }
        }
        // From here on the target takes writes: what fails is reported,
        // not undone.
        let mut warnings = Vec::new();
        for (i, b) in topo.backends.iter().enumerate() {
            if i == target {
                continue;
            }
            let from_pos = (i == old).then_some(last.as_str());
            if !b.up && i != old {
                warnings.push(format!(
                    "'{}' is down and was not re-pointed: point it at '{to}' by hand",
                    b.name
                ));
                continue;
            }
            let r = if i == old {
                repoint(&mut oc, &cfg, &target_b.address, from_pos, step_limit).await
            } else {
                match tokio::time::timeout(step_limit, self.monitor_connect(i)).await {
                    Ok(Ok(mut c)) => {
                        repoint(&mut c, &cfg, &target_b.address, from_pos, step_limit).await
                    }
                    Ok(Err(e)) => Err(format!("cannot connect: {e}")),
                    Err(_) => Err("connecting took too long".to_string()),
                }
            };
            match r {
                Ok(()) => tracing::info!(server = %b.name, to, "switchover: re-pointed"),
                Err(e) => warnings.push(format!("re-pointing '{}' at '{to}' failed: {e}", b.name)),
            }
        }
        tracing::info!(
            to,
            "switchover: waiting for the monitor to see the new primary"
        );
        let publish = Duration::from_millis(cfg.publish_ms);
        let deadline = Instant::now() + publish;
        while self.topology().primary != Some(target) {
            if Instant::now() >= deadline {
                warnings.push(format!(
                    "the monitor did not see '{to}' as the primary within switchover.publish_ms \
                     ({} ms); writes were released and wait for it on their own",
                    cfg.publish_ms
                ));
                break;
            }
            // A planned change: check again at once instead of at the
            // next interval (damping still counts the checks).
            self.probe_now.notify_waiters();
            tokio::time::sleep(POLL).await;
        }
        let stall_ms = held.elapsed().as_millis() as u64;
        drop(hold);
        Ok(SwitchoverOutcome {
            from: old_b.name.clone(),
            to: to.to_string(),
            stall_ms,
            elapsed_ms: began.elapsed().as_millis() as u64,
            position: last,
            warnings,
        })
    }

    /// Waits until no session of Causeway's uses the old primary (no
    /// command on its way there, no transaction open there: the hold
    /// admits no new use) and the server shows no other client's
    /// transaction that changed or locked rows; aborts after `limit`.
    async fn drain(
        &self,
        conn: &mut BackendConn,
        index: usize,
        limit: Duration,
        step_limit: Duration,
    ) -> Result<(), SwitchoverError> {
        let deadline = Instant::now() + limit;
        let mut last_look: Option<Instant> = None;
        let mut open = String::new();
        loop {
            let users = self.primary_users(index);
            if users == 0 {
                // The server refreshes INNODB_TRX only for a look more than
                // 0.1 s after the previous one: closer looks see the same
                // old rows.
                if let Some(wait) = last_look.and_then(|t| TRX_LOOK.checked_sub(t.elapsed())) {
                    tokio::time::sleep(wait).await;
                }
                open = value(conn, OPEN_TRANSACTIONS, step_limit)
                    .await
                    .map_err(|e| {
                        SwitchoverError::aborted(format!("counting open transactions: {e}"))
                    })?;
                last_look = Some(Instant::now());
                if open == "0" && self.primary_users(index) == 0 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                if last_look.is_some_and(|t| t.elapsed() < TRX_LOOK) {
                    tokio::time::sleep(TRX_LOOK).await;
                }
                let threads = value(
                    conn,
                    "SELECT GROUP_CONCAT(CONCAT(trx_mysql_thread_id, ' (', trx_rows_modified, \
                     ' rows changed, ', trx_rows_locked, ' locked, ', \
                     IF(trx_query IS NULL, 'idle', 'running'), ')') SEPARATOR ', ') \
                     FROM information_schema.INNODB_TRX \
                     WHERE trx_mysql_thread_id <> CONNECTION_ID() \
                     AND (trx_rows_modified > 0 OR trx_rows_locked > 0 OR trx_query IS NOT NULL)",
                    step_limit,
                )
                .await
                .unwrap_or_default();
                let users = self.primary_users(index);
                return Err(SwitchoverError::aborted(format!(
                    "the primary did not drain within switchover.drain_ms ({} ms): {users} \
                     session(s) of Causeway's still in a transaction or statement there; \
                     transactions the server shows: {} ({})",
                    limit.as_millis(),
                    if open.is_empty() {
                        "not looked at"
                    } else {
                        open.as_str()
                    },
                    if threads.is_empty() {
                        "none"
                    } else {
                        threads.as_str()
                    },
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The target replicates from the primary (by address or server id) and
/// both its threads run.
async fn check_replicates(
    tc: &mut BackendConn,
    to: &str,
    primary_address: &str,
    primary_id: Option<u32>,
    limit: Duration,
) -> Result<(), SwitchoverError> {
    let t = match tokio::time::timeout(limit, tc.query_table("SHOW SLAVE STATUS")).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return Err(SwitchoverError::refused(format!(
                "SHOW SLAVE STATUS on '{to}': {e}"
            )))
        }
        Err(_) => {
            return Err(SwitchoverError::refused(format!(
                "SHOW SLAVE STATUS on '{to}' took too long"
            )))
        }
    };
    if t.rows.is_empty() {
        return Err(SwitchoverError::refused(format!(
            "'{to}' does not replicate from the primary (it has no replication configured)"
        )));
    }
    let host = t.get(0, "Master_Host").unwrap_or_default();
    let port = t.get(0, "Master_Port").unwrap_or_default();
    let id = t
        .get(0, "Master_Server_Id")
        .and_then(|v| v.parse::<u32>().ok());
    let source = format!("{host}:{port}");
    let same =
        same_address(&source, primary_address) || (id.is_some_and(|i| i != 0) && id == primary_id);
    if !same {
        return Err(SwitchoverError::refused(format!(
            "'{to}' does not replicate from the primary ({primary_address}) but from {source}"
        )));
    }
    if t.get(0, "Slave_IO_Running") != Some("Yes") {
        return Err(SwitchoverError::refused(format!(
            "'{to}' does not replicate from the primary: its I/O thread is not running ({})",
            t.get(0, "Last_IO_Error").unwrap_or_default()
        )));
    }
    if t.get(0, "Slave_SQL_Running") != Some("Yes") {
        return Err(SwitchoverError::refused(format!(
            "'{to}' is too far behind: its SQL thread is not running, it applies nothing of \
             what the primary sends ({})",
            t.get(0, "Last_SQL_Error").unwrap_or_default()
        )));
    }
    Ok(())
}

/// `STOP SLAVE`, the position to start from (the old primary's), `CHANGE
/// MASTER TO` the new primary, `START SLAVE`.
async fn repoint(
    c: &mut BackendConn,
    cfg: &crate::config::SwitchoverConfig,
    to_address: &str,
    from_pos: Option<&str>,
    limit: Duration,
) -> Result<(), String> {
    for (i, sql) in change_master(cfg, to_address, from_pos).iter().enumerate() {
        match exec(c, sql, limit).await {
            Ok(()) => {}
            // A server that never replicated has nothing to stop.
            Err(_) if i == 0 => {}
            Err(e) => return Err(format!("{}: {e}", redact(sql))),
        }
    }
    Ok(())
}

/// The statements that make a server replicate from `to_address`.
fn change_master(
    cfg: &crate::config::SwitchoverConfig,
    to_address: &str,
    from_pos: Option<&str>,
) -> Vec<String> {
    let (host, port) = to_address.rsplit_once(':').unwrap_or((to_address, "3306"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut out = vec!["STOP SLAVE".to_string()];
    if let Some(p) = from_pos {
        out.push(format!("SET GLOBAL gtid_slave_pos = {}", quote(p)));
    }
    out.push(format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
         MASTER_USE_GTID=slave_pos",
        quote(host),
        port.parse::<u16>().unwrap_or(3306),
        quote(&cfg.replication_user),
        quote(&cfg.replication_password),
    ));
    out.push("SET GLOBAL read_only=1".to_string());
    out.push("START SLAVE".to_string());
    out
}

/// A statement for a log line or an error, without the password.
fn redact(sql: &str) -> String {
    match sql.find("MASTER_PASSWORD=") {
        Some(i) => format!("{}MASTER_PASSWORD=...", &sql[..i]),
        None => sql.to_string(),
    }
}

/// A SQL string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for ch in s.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `MASTER_GTID_WAIT(pos, limit)`: whether `pos` was reached in time.
async fn gtid_wait(c: &mut BackendConn, pos: &str, limit: Duration) -> Result<bool, Error> {
    let sql = format!(
        "SELECT MASTER_GTID_WAIT({}, {:.3})",
        quote(pos),
        limit.as_secs_f64()
    );
    let v = value(c, &sql, limit + Duration::from_secs(5)).await?;
    Ok(v == "0")
}

/// Runs a statement, bounded by `limit`.
async fn exec(c: &mut BackendConn, sql: &str, limit: Duration) -> Result<(), Error> {
    value_opt(c, sql, limit).await.map(|_| ())
}

/// The first column of the first row ("" for NULL or none).
async fn value(c: &mut BackendConn, sql: &str, limit: Duration) -> Result<String, Error> {
    value_opt(c, sql, limit)
        .await
        .map(|v| v.unwrap_or_default())
}

async fn value_opt(
    c: &mut BackendConn,
    sql: &str,
    limit: Duration,
) -> Result<Option<String>, Error> {
    match tokio::time::timeout(limit, c.query_rows(sql)).await {
        Ok(Ok(rows)) => Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::BackendLost {
            backend: c.backend.clone(),
            reason: format!("'{}' took longer than {limit:?}", redact(sql)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_master_quotes_and_redacts() {
        let cfg = crate::config::SwitchoverConfig {
            replication_user: "re'pl".into(),
            replication_password: "s\\ecret".into(),
            ..Default::default()
        };
        let sql = change_master(&cfg, "127.0.0.1:3307", Some("0-1-5"));
        assert_eq!(sql[1], "SET GLOBAL gtid_slave_pos = '0-1-5'");
        assert_eq!(
            sql[2],
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=3307, MASTER_USER='re''pl', \
             MASTER_PASSWORD='s\\\\ecret', MASTER_USE_GTID=slave_pos"
        );
        assert!(!redact(&sql[2]).contains("ecret"));
        assert!(change_master(&cfg, "[::1]:3306", None)[1].contains("MASTER_HOST='::1'"));
    }
}
