//! What the session learns from a reply: session variables, database,
//! transaction state, temporary tables, locks, user variables.

use super::relay::ReplyInfo;
use super::Session;
use crate::classify::{
    names_collation, replayable_user_var_set, replayable_user_var_sets, set_transaction,
    temp_table_changes, Class, Flags, Kind,
};
use crate::pool::conn::BackendConn;
use crate::protocol::consts::status;

impl Session {
    /// Learns from a reply of backend `index` to a statement of class `class`.
    pub(super) fn learn(&mut self, index: usize, info: &ReplyInfo, stmt: Option<(&Class, &[u8])>) {
        let st = info.status.unwrap_or(self.status);
        let was_written = self.txn.written;
        let owner = self.txn.backend.unwrap_or(self.primary);
        // Autocommit is the primary connection's to say: replica
        // connections keep it on, even while one serves a READ ONLY
        // transaction.
        const AC: u16 = status::AUTOCOMMIT;
        if index == owner {
            self.status = if self.is_primary(index) {
                st
            } else {
                (st & !AC) | (self.status & AC)
            };
        } else if self.is_primary(index) {
            self.status = (self.status & !AC) | (st & AC);
        }
        // `SET TRANSACTION` without `SESSION` is for the next transaction
        // only: the values the server reports for it are not the session's.
        let one_shot: Vec<(String, String)>;
        let variables = match stmt {
            Some((c, sql))
                if c.kind == Kind::SetTransaction
                    && !c.flags.contains(Flags::GLOBAL)
                    && !set_transaction(sql).session =>
            {
                one_shot = info
                    .variables
                    .iter()
                    .filter(|(k, _)| !is_transaction_var(k))
                    .cloned()
                    .collect();
                &one_shot
            }
            _ => &info.variables,
        };
        if !variables.is_empty() && self.state.record_vars(variables) {
            if let Some(s) = self.conns.synced.get_mut(index) {
                s.version = self.state.version;
            }
        }
        if let Some(db) = &info.schema {
            self.database = (!db.is_empty()).then(|| db.clone());
            if let Some(s) = self.conns.synced.get_mut(index) {
                s.database = self.database.clone();
            }
        }
        // Whether the statement leaves the transaction read-only so far:
        // plain reads and statements that start it or only look around.
        let plain_read = stmt.is_some_and(|(c, _)| match c.kind {
            Kind::Read => !c.flags.intersects(Flags::PRIMARY_ONLY),
            Kind::Begin { .. } | Kind::Show | Kind::Use | Kind::SetTransaction => true,
            _ => false,
        });
        let in_trans = st & status::IN_TRANS != 0;
        match self.txn.backend {
            None if in_trans => {
                self.txn.backend = Some(index);
                self.txn.written = !plain_read;
            }
            Some(b) if b == index && !in_trans => {
                self.txn.backend = None;
                self.txn.written = false;
            }
            Some(b) if b == index && !plain_read => self.txn.written = true,
            _ => {}
        }
        let Some((class, sql)) = stmt else { return };
        if info.error {
            return;
        }
        // The characteristics `SET TRANSACTION` gave the next transaction
        // are used up by the first statement that succeeds in one: a read
        // of a table, a write, a transaction boundary. Reads of variables
        // and failed statements leave them for the next.
        let starts_transaction = match class.kind {
            Kind::Read => class
                .reads_table
                .unwrap_or_else(|| crate::classify::reads_a_table(sql)),
            Kind::Write
            | Kind::LockingRead
            | Kind::Begin { .. }
            | Kind::Commit
            | Kind::Rollback
            | Kind::Call
            | Kind::Unknown => true,
            _ => false,
        };
        if starts_transaction {
            self.held.next_transaction = false;
        }
        self.learn_positions(
            index,
            class,
            was_written,
            info.last_gtid.is_some(),
            in_trans,
        );
        if matches!(class.kind, Kind::TempTable { .. })
            || class.flags.contains(Flags::MULTI_STATEMENT)
        {
            self.state.learn_temp_tables(temp_table_changes(sql));
        }
        // A multi-statement's literal user variable assignments replay like
        // a lone one's.
        let multi_sets = (!self.conns.pooled
            && class.flags.contains(Flags::MULTI_STATEMENT)
            && (class.kind == Kind::SetUserVar
                || class
                    .flags
                    .intersects(Flags::USER_VAR_ASSIGN | Flags::SELECT_INTO)))
        .then(|| replayable_user_var_sets(sql));
        let multi = multi_sets.is_some();
        match multi_sets {
            Some(Some(sets)) => {
                for r in sets {
                    if let Some(s) = sql.get(r) {
                        self.state.user_var_sets.push(s.to_vec());
                    }
                }
                if let Some(s) = self.conns.synced.get_mut(index) {
                    s.user_vars = self.state.user_var_sets.len();
                }
            }
            Some(None) => self.state.user_vars_on_primary = true,
            None => {}
        }
        match class.kind {
            Kind::LockTables => self.state.table_locks = true,
            Kind::UnlockTables | Kind::Begin { .. } => self.state.table_locks = false,
            // The transaction pool reads assigned values back instead.
            Kind::SetUserVar if self.conns.pooled || multi => {}
            Kind::SetUserVar if replayable_user_var_set(sql) => {
                self.state.user_var_sets.push(sql.to_vec());
                if let Some(s) = self.conns.synced.get_mut(index) {
                    s.user_vars = self.state.user_var_sets.len();
                }
            }
            Kind::SetUserVar => self.state.user_vars_on_primary = true,
            Kind::SetSession => {
                if let Some(c) = names_collation(sql) {
                    if self.state.set_collation(&c) {
                        if let Some(s) = self.conns.synced.get_mut(index) {
                            s.version = self.state.version;
                        }
                    }
                }
            }
            Kind::SetTransaction if !class.flags.contains(Flags::GLOBAL) => {
                let st = set_transaction(sql);
                match st.isolation.filter(|_| st.session) {
                    // Only for the next transaction, and only on this connection.
                    None => self.held.next_transaction = !st.session,
                    // The server does not report `SET SESSION TRANSACTION
                    // ISOLATION LEVEL` as a variable change; record it.
                    Some(level) => {
                        if self
                            .state
                            .record_vars(&[("tx_isolation".into(), level.into())])
                        {
                            if let Some(s) = self.conns.synced.get_mut(index) {
                                s.version = self.state.version;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        if !self.conns.pooled
            && !multi
            && class
                .flags
                .intersects(Flags::USER_VAR_ASSIGN | Flags::SELECT_INTO)
            && class.kind != Kind::SetUserVar
        {
            self.state.user_vars_on_primary = true;
        }
        if class.flags.contains(Flags::LOCK_FN) {
            self.learn_locks(sql);
        }
    }

    /// After a statement on backend `index` turned some of Causeway's
    /// session tracking off (a connector narrowing
    /// `session_track_system_variables`), turns it back on before the
    /// session's next statement, or later changes would go unseen and not
    /// follow the session to other backends. The client then reads `*`
    /// back from that variable.
    pub(super) async fn keep_tracking(
        &mut self,
        index: usize,
        info: &ReplyInfo,
        stmt: Option<(&Class, &[u8])>,
    ) {
        let named = stmt.is_some_and(|(c, sql)| {
            c.kind != Kind::Read && crate::classify::names_session_tracking(sql)
        });
        if !named && !BackendConn::tracking_changed(&info.variables) {
            return;
        }
        let Some(conn) = self.conns.open.get_mut(index).and_then(|c| c.as_mut()) else {
            return;
        };
        if let Err(e) = conn.restore_tracking().await {
            tracing::warn!(session = self.id, backend = index, error = %e,
                "could not turn session tracking back on");
            return;
        }
        // What the same statement set was reported under the narrowed
        // tracking, if at all: read it back.
        let Some((_, sql)) = stmt else { return };
        let names: Vec<String> = crate::classify::set_session_var_names(sql)
            .into_iter()
            .filter(|n| !n.starts_with("session_track_"))
            .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .collect();
        if names.is_empty() {
            return;
        }
        let select = format!(
            "SELECT {}",
            names
                .iter()
                .map(|n| format!("@@session.{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let row = match conn.query_table(&select).await {
            Ok(t) => t.rows.into_iter().next(),
            Err(e) => {
                tracing::warn!(session = self.id, backend = index, error = %e,
                    "could not read back the variables a statement set");
                return;
            }
        };
        let values: Vec<(String, String)> = names
            .into_iter()
            .zip(row.unwrap_or_default())
            .filter_map(|(n, v)| Some((n, v?)))
            .collect();
        if self.state.record_vars(&values) {
            if let Some(s) = self.conns.synced.get_mut(index) {
                s.version = self.state.version;
            }
        }
    }
}

/// The variables `SET TRANSACTION` changes.
fn is_transaction_var(name: &str) -> bool {
    [
        "tx_read_only",
        "tx_isolation",
        "transaction_read_only",
        "transaction_isolation",
    ]
    .iter()
    .any(|v| name.eq_ignore_ascii_case(v))
}
