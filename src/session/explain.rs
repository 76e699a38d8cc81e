//! Statements Causeway answers itself. `EXPLAIN ROUTE <statement>` shows,
//! without running the statement, how it was classified and where it would
//! run and why, with every backend's state.

use crate::classify::classify;
use crate::error::{Error, ServerError};
use crate::protocol::resultset::encode_text;
use crate::router::{self, Target};

use super::{Flow, Session};

impl Session {
    pub(super) async fn local_statement(&mut self, sql: &str, seq: u8) -> Flow {
        let Some(inner) = strip_explain_route(sql) else {
            let e = Error::Server(ServerError {
                code: 1064,
                sql_state: *b"42000",
                message:
                    "Causeway does not know this statement; it answers EXPLAIN ROUTE <statement>"
                        .into(),
            });
            return self.fail(seq, &e).await;
        };
        let class = classify(inner);
        let decision = self.decide(&class, inner);
        let topo = self.ctx.cluster.topology();
        let policy = self
            .ctx
            .cluster
            .config()
            .policy_for(&self.user, self.database.as_deref())
            .clone();
        let view = self.view(inner);
        let target = match decision.target {
            Target::Local => "causeway".to_string(),
            t => topo
                .backends
                .get(t.index().unwrap_or(0))
                .map(|b| b.name.clone())
                .unwrap_or_default(),
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
            ("reason".into(), decision.reason.to_string()),
            ("policy".into(), policy.name.clone()),
            ("pin".into(), view.pin.unwrap_or("").to_string()),
            ("in_transaction".into(), view.in_transaction.to_string()),
            (
                "transaction_written".into(),
                view.transaction_written.to_string(),
            ),
            ("isolation".into(), format!("{:?}", view.isolation)),
        ];
        let qualifying = router::qualifying_replicas(&policy, &topo);
        for (i, b) in topo.backends.iter().enumerate() {
            rows.push((
                format!("backend.{}", b.name),
                format!(
                    "role={:?} up={} lag_s={} replicating={} qualifies={}",
                    b.role,
                    b.up,
                    b.lag_s.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
                    b.replicating
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    i == 0 || qualifying.contains(&i),
                )
                .to_lowercase(),
            ));
        }
        let cells: Vec<Vec<Option<String>>> = rows
            .into_iter()
            .map(|(k, v)| vec![Some(k), Some(v)])
            .collect();
        self.scratch.clear();
        encode_text(
            &mut self.scratch,
            seq,
            self.caps,
            self.status,
            &["item", "value"],
            &cells,
        );
        match self.client.write_all(&self.scratch).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }
}

/// The statement after `EXPLAIN ROUTE` (leading comments and case allowed).
fn strip_explain_route(sql: &str) -> Option<&str> {
    let mut rest = sql.trim_start();
    while let Some(r) = rest.strip_prefix("/*") {
        rest = r.split_once("*/")?.1.trim_start();
    }
    let (w1, r) = rest.split_once(char::is_whitespace)?;
    let r = r.trim_start();
    let (w2, r) = r.split_once(char::is_whitespace)?;
    (w1.eq_ignore_ascii_case("explain") && w2.eq_ignore_ascii_case("route")).then_some(r.trim())
}

#[cfg(test)]
mod tests {
    use super::strip_explain_route;

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
