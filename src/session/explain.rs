//! Statements Causeway answers itself. `EXPLAIN ROUTE <statement>` shows,
//! without running the statement, how it was classified and where it would
//! run and why, with every backend's state. `SET CAUSEWAY CONSISTENCY = ...`,
//! `SHOW CAUSEWAY CONSISTENCY` and `SHOW CAUSEWAY TOKEN` set and show the
//! session's consistency level and its causal token. The process lists
//! (`SHOW [FULL] PROCESSLIST`, `SHOW CAUSEWAY PROCESSLIST`) are answered in
//! `processlist`, from what each session publishes.

use crate::classify::classify;
use crate::consistency::{encode_token, Level};
use crate::error::{Error, ServerError};
use crate::protocol::resultset::encode_text;
use crate::router::{self, Pin, Target};

use super::consistency::bad_value;
use super::{Flow, Session};

impl Session {
    pub(super) async fn local_statement(&mut self, sql: &str, seq: u8) -> Flow {
        if let Some(full) = crate::classify::show_processlist(sql.as_bytes()) {
            return self.show_processlist(full, seq).await;
        }
        match own_statement(sql) {
            Some(Own::SetConsistency(v)) => {
                if v.eq_ignore_ascii_case("default") {
                    self.causal.level_override = None;
                } else {
                    match Level::parse(&v) {
                        Some(l) => self.causal.level_override = Some(l),
                        None => return self.fail(seq, &bad_value("consistency", &v)).await,
                    }
                }
                return self.ok_or_close(seq).await;
            }
            Some(Own::ShowConsistency) => {
                let policy = self.policy();
                let level = self
                    .causal
                    .level_override
                    .or_else(|| {
                        self.ctx
                            .cluster
                            .config()
                            .consistency_for(&self.account.user)
                    })
                    .unwrap_or(policy.consistency.level);
                return self.one_value(seq, "consistency", level.to_string()).await;
            }
            Some(Own::ShowProcesslist) => return self.causeway_processlist(seq).await,
            Some(Own::Switchover(to)) => return self.switchover(&to, seq).await,
            Some(Own::ShowToken) => {
                return match self.session_position().await {
                    Ok(p) => self.one_value(seq, "token", encode_token(&p)).await,
                    Err(e) => self.fail(seq, &e).await,
                };
            }
            None => {}
        }
        let Some(inner) = strip_explain_route(sql) else {
            let e = Error::Server(ServerError {
                code: 1064,
                sql_state: *b"42000",
                message: "Causeway does not know this statement; it answers EXPLAIN ROUTE \
                     <statement>, SET CAUSEWAY CONSISTENCY = <level>, SHOW CAUSEWAY CONSISTENCY, \
                     SHOW CAUSEWAY TOKEN, SHOW CAUSEWAY PROCESSLIST and CAUSEWAY SWITCHOVER TO \
                     'name'"
                    .into(),
            });
            return self.fail(seq, &e).await;
        };
        let class = classify(inner);
        let snap = self.snapshot();
        let decision = self.decide(&snap, &class, inner.as_bytes());
        let level = self.level_for(&snap, &class);
        let (topo, policy) = (&snap.topo, &snap.policy);
        let by_position = level
            .as_ref()
            .is_ok_and(|l| *l != crate::consistency::Level::Eventual);
        let view = self.view(inner.as_bytes(), by_position);
        let target = match decision.target {
            Target::Local => "causeway".to_string(),
            t => t
                .index(topo)
                .and_then(|i| topo.backends.get(i))
                .map_or_else(|| "(no primary)".to_string(), |b| b.name.clone()),
        };
        let hints = &class.hints;
        let mut rows: Vec<(String, String)> = vec![
            ("kind".into(), class.kind.as_str().to_string()),
            ("flags".into(), class.flags.to_string()),
            (
                "hint.route".into(),
                hints
                    .route
                    .as_ref()
                    .map(|h| format!("{h:?}").to_lowercase())
                    .unwrap_or_default(),
            ),
            (
                "hint.consistency".into(),
                hints.consistency.clone().unwrap_or_default(),
            ),
            ("target".into(), target),
            ("reason".into(), decision.reason.label().to_string()),
            ("policy".into(), policy.name.clone()),
            ("pin".into(), view.pin.map_or("", Pin::label).to_string()),
            ("in_transaction".into(), view.in_transaction.to_string()),
            (
                "transaction_written".into(),
                view.transaction_written.to_string(),
            ),
            ("isolation".into(), format!("{:?}", view.isolation)),
            (
                "consistency".into(),
                match &level {
                    Ok(l) => l.to_string(),
                    Err(e) => e.to_string(),
                },
            ),
        ];
        let loads = snap.loads();
        let qualifying = router::qualifying_replicas(policy, topo, loads, by_position);
        for (i, b) in topo.backends.iter().enumerate() {
            rows.push((
                format!("backend.{}", b.name),
                format!(
                    "role={:?} up={} lag_s={} position_lag_ms={} position={} replicating={} qualifies={}",
                    b.role,
                    b.up,
                    b.lag_s.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                    snap.lags.get(i)
                        .copied()
                        .flatten()
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "-".into()),
                    self.ctx
                        .cluster
                        .positions()
                        .sample(i)
                        .and_then(|s| s.pos.as_ref().map(|p| p.to_string()))
                        .unwrap_or_else(|| "-".into()),
                    b.replicating
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    topo.is_primary(i) || qualifying.contains(&i),
                )
                .to_lowercase(),
            ));
        }
        let cells: Vec<Vec<Option<String>>> = rows
            .into_iter()
            .map(|(k, v)| vec![Some(k), Some(v)])
            .collect();
        self.send_rows(seq, &["item", "value"], &cells).await
    }

    /// A text result set Causeway built itself.
    async fn send_rows(&mut self, seq: u8, columns: &[&str], rows: &[Vec<Option<String>>]) -> Flow {
        self.scratch.clear();
        encode_text(
            &mut self.scratch,
            seq,
            self.client.caps,
            self.client.ext_caps,
            self.status,
            columns,
            rows,
        );
        match self.client.stream.write_all(&self.scratch).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }
}

impl Session {
    /// Gives unpinned borrowed connections back and publishes what
    /// SHOW CAUSEWAY PROCESSLIST shows of the session, if it changed.
    pub(super) fn after_command(&mut self, reg: &super::registry::Registration) {
        if self.conns.pooled && !self.conns.keep {
            self.release_unpinned();
        }
        let p = &self.published;
        // The same connections, by thread id: a reconnect to the same
        // backend keeps their number but not their thread.
        let thread =
            |b: &Option<crate::pool::conn::BackendConn>| b.as_ref().map_or(0, |c| c.thread_id);
        let same = p.pin == self.held.published_pin.map(Pin::label)
            && p.database == self.database
            && p.threads.len() == self.conns.open.len()
            && p.threads
                .iter()
                .zip(&self.conns.open)
                .all(|(t, b)| *t == thread(b))
            && !p.pool.is_empty();
        if same {
            return;
        }
        let topo = self.ctx.cluster.topology();
        let backends = self
            .conns
            .open
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let b = b.as_ref()?;
                let name = topo.backends.get(i).map(|t| t.name.as_str()).unwrap_or("?");
                Some(format!("{name}#{}", b.thread_id))
            })
            .collect::<Vec<_>>()
            .join(",");
        let pool = match (self.conns.pooled, self.conns.keep) {
            (true, false) => "transaction",
            (true, true) => "session",
            _ => "none",
        };
        self.published = super::registry::Status {
            database: self.database.clone(),
            pool,
            pin: self.held.published_pin.map(Pin::label),
            backends,
            threads: self.conns.open.iter().map(thread).collect(),
        };
        reg.publish(&self.published);
    }

    /// A result set of one row and one column.
    async fn one_value(&mut self, seq: u8, column: &str, value: String) -> Flow {
        self.send_rows(seq, &[column], &[vec![Some(value)]]).await
    }

    /// `CAUSEWAY SWITCHOVER TO 'name'`: for accounts with SUPER, as the
    /// server's replication statements; the answer is one row saying what
    /// happened.
    async fn switchover(&mut self, to: &str, seq: u8) -> Flow {
        if !self.account.privileges.super_ {
            let e = Error::PrivilegeNeeded { privilege: "SUPER" };
            return self.fail(seq, &e).await;
        }
        let cluster = self.ctx.cluster.clone();
        match cluster.switchover(to).await {
            Ok(o) => {
                let row = vec![
                    Some(o.from),
                    Some(o.to),
                    Some(o.stall_ms.to_string()),
                    Some(o.position),
                    Some(o.warnings.join("; ")),
                ];
                self.send_rows(
                    seq,
                    &["from", "to", "stall_ms", "position", "warnings"],
                    &[row],
                )
                .await
            }
            Err(e) => self.fail(seq, &Error::from(e)).await,
        }
    }
}

/// Causeway's own session statements.
#[derive(Debug, PartialEq, Eq)]
enum Own {
    /// `SET CAUSEWAY CONSISTENCY [=] <level>|DEFAULT` (quotes optional).
    SetConsistency(String),
    /// `SHOW CAUSEWAY CONSISTENCY`.
    ShowConsistency,
    /// `SHOW CAUSEWAY TOKEN`.
    ShowToken,
    /// `SHOW CAUSEWAY PROCESSLIST`.
    ShowProcesslist,
    /// `CAUSEWAY SWITCHOVER TO 'name'`.
    Switchover(String),
}

fn own_statement(sql: &str) -> Option<Own> {
    use crate::classify::OwnStatement as O;
    Some(match crate::classify::own_statement(sql)? {
        O::SetConsistency(v) => Own::SetConsistency(v),
        O::ShowConsistency => Own::ShowConsistency,
        O::ShowToken => Own::ShowToken,
        O::ShowProcesslist => Own::ShowProcesslist,
        O::Switchover(to) => Own::Switchover(to),
    })
}

fn strip_explain_route(sql: &str) -> Option<&str> {
    crate::classify::explain_route_target(sql)
}

#[cfg(test)]
mod tests {
    use super::{own_statement, strip_explain_route, Own};

    #[test]
    fn own_statements_parse() {
        assert_eq!(
            own_statement("SET CAUSEWAY CONSISTENCY = 'global'"),
            Some(Own::SetConsistency("global".into()))
        );
        assert_eq!(
            own_statement("/* x */ set causeway consistency bounded:200ms;"),
            Some(Own::SetConsistency("bounded:200ms".into()))
        );
        assert_eq!(
            own_statement("SET CAUSEWAY CONSISTENCY=DEFAULT"),
            Some(Own::SetConsistency("DEFAULT".into()))
        );
        assert_eq!(
            own_statement("show causeway consistency"),
            Some(Own::ShowConsistency)
        );
        assert_eq!(own_statement("SHOW CAUSEWAY TOKEN;"), Some(Own::ShowToken));
        assert_eq!(own_statement("SHOW CAUSEWAY STATUS"), None);
        assert_eq!(own_statement("SET CAUSEWAY ROUTE = 'x'"), None);
        assert_eq!(own_statement("EXPLAIN ROUTE SELECT 1"), None);
    }

    #[test]
    fn strips_the_prefix() {
        assert_eq!(
            strip_explain_route("EXPLAIN ROUTE SELECT 1"),
            Some("SELECT 1")
        );
        assert_eq!(
            strip_explain_route("/* x */ explain  route\n/*FORCE_MASTER*/ SELECT 1"),
            Some("/*FORCE_MASTER*/ SELECT 1")
        );
        assert_eq!(strip_explain_route("SHOW CAUSEWAY STATUS"), None);
    }
}
