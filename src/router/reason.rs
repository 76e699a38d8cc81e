//! Why a statement runs where it runs, and why a session is pinned to a
//! backend connection. Enums for the code; [`Reason::label`] and
//! [`Pin::label`] give the fixed strings that metric labels, EXPLAIN ROUTE
//! and the process list show (they never change).

/// State that lives in one backend connection and cannot be copied to
/// another: it keeps the session on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pin {
    /// An open transaction.
    Transaction,
    /// `CREATE TEMPORARY TABLE`.
    TemporaryTable,
    /// `LOCK TABLES`, `FLUSH TABLES .. WITH READ LOCK`.
    LockTables,
    /// `GET_LOCK()`.
    UserLock,
    /// `PREPARE s FROM ..`.
    TextPrepare,
    /// `HANDLER t OPEN`.
    Handler,
    /// A cursor opened by COM_STMT_EXECUTE.
    Cursor,
    /// A `SQL_CALC_FOUND_ROWS` result awaiting `FOUND_ROWS()`.
    FoundRows,
    /// `SET TRANSACTION` characteristics for the next transaction.
    SetTransaction,
    /// COM_STMT_SEND_LONG_DATA awaiting its execute.
    LongData,
    /// User variables that cannot be replayed elsewhere.
    UserVariable,
    /// Warnings or errors a `SHOW WARNINGS` would show.
    Diagnostics,
}

impl Pin {
    /// The metric label and the text the process list shows.
    pub fn label(self) -> &'static str {
        match self {
            Pin::Transaction => "transaction",
            Pin::TemporaryTable => "temporary_table",
            Pin::LockTables => "lock_tables",
            Pin::UserLock => "user_lock",
            Pin::TextPrepare => "text_prepare",
            Pin::Handler => "handler",
            Pin::Cursor => "cursor",
            Pin::FoundRows => "found_rows",
            Pin::SetTransaction => "set_transaction",
            Pin::LongData => "long_data",
            Pin::UserVariable => "user_variable",
            Pin::Diagnostics => "diagnostics",
        }
    }

    /// What is lost with the connection, in words (the client's error).
    pub fn describe(self) -> &'static str {
        match self {
            Pin::Transaction => "open transaction (rolled back)",
            Pin::TemporaryTable => "temporary tables",
            Pin::LockTables => "table locks (LOCK TABLES)",
            Pin::UserLock => "user locks (GET_LOCK)",
            Pin::TextPrepare => "prepared statements (PREPARE)",
            Pin::Handler => "open HANDLERs",
            Pin::Cursor => "open cursor",
            Pin::FoundRows => "FOUND_ROWS() result",
            Pin::SetTransaction => "SET TRANSACTION characteristics",
            Pin::LongData => "parameter data (COM_STMT_SEND_LONG_DATA)",
            Pin::UserVariable => "user variables",
            Pin::Diagnostics => "diagnostics",
        }
    }
}

/// Why a statement runs where it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Causeway answers it itself.
    CausewayStatement,
    HintPrimary,
    HintReplica,
    HintReplicaUnavailable,
    HintBackend,
    HintBackendUnavailable,
    /// The session is pinned to the primary.
    Pinned(Pin),
    /// The open transaction runs on that backend.
    TransactionBound,
    /// A policy rule named the target.
    Rule,
    RuleReplicaUnavailable,
    RuleBackendUnavailable,
    /// The policy turned the read/write split off.
    SplitOff,
    ReadOnlyTransaction,
    ReadOnlyTransactionNoReplica,
    Read,
    Write,
    LockingRead,
    TransactionControl,
    SessionState,
    TemporaryTable,
    LockTables,
    TextPrepare,
    Call,
    Show,
    Kill,
    Unknown,
    LockFunction,
    SideEffectFunction,
    AssignsUserVariable,
    CalcFoundRows,
    UserVariable,
    InTransaction,
    TransactionSplitNoReplica,
    TransactionSplit,
    ReadOnPrimary,
    NoReplica,
    PrimaryOnly,
    /// The statement reads `information_schema.PROCESSLIST`.
    Processlist,
    /// `SET TRANSACTION` characteristics are on the primary connection.
    SetTransaction,
    /// COM_STMT_SEND_LONG_DATA went to the primary.
    LongData,
    /// The last insert id lives on the primary connection.
    LastInsertId,
    /// A command other than a query or an execute.
    Command,
    /// A replica did not reach the read's position: the primary ran it.
    ConsistencyFallback,
}

impl Reason {
    /// The metric label, the EXPLAIN ROUTE text and what tests assert on.
    pub fn label(self) -> &'static str {
        match self {
            Reason::CausewayStatement => "causeway_statement",
            Reason::HintPrimary => "hint_primary",
            Reason::HintReplica => "hint_replica",
            Reason::HintReplicaUnavailable => "hint_replica_unavailable",
            Reason::HintBackend => "hint_backend",
            Reason::HintBackendUnavailable => "hint_backend_unavailable",
            Reason::Pinned(p) => p.label(),
            Reason::TransactionBound => "transaction_bound",
            Reason::Rule => "rule",
            Reason::RuleReplicaUnavailable => "rule_replica_unavailable",
            Reason::RuleBackendUnavailable => "rule_backend_unavailable",
            Reason::SplitOff => "split_off",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::ReadOnlyTransactionNoReplica => "read_only_transaction_no_replica",
            Reason::Read => "read",
            Reason::Write => "write",
            Reason::LockingRead => "locking_read",
            Reason::TransactionControl => "transaction_control",
            Reason::SessionState => "session_state",
            Reason::TemporaryTable => "temporary_table",
            Reason::LockTables => "lock_tables",
            Reason::TextPrepare => "text_prepare",
            Reason::Call => "call",
            Reason::Show => "show",
            Reason::Kill => "kill",
            Reason::Unknown => "unknown",
            Reason::LockFunction => "lock_function",
            Reason::SideEffectFunction => "side_effect_function",
            Reason::AssignsUserVariable => "assigns_user_variable",
            Reason::CalcFoundRows => "calc_found_rows",
            Reason::UserVariable => "user_variable",
            Reason::InTransaction => "in_transaction",
            Reason::TransactionSplitNoReplica => "transaction_split_no_replica",
            Reason::TransactionSplit => "transaction_split",
            Reason::ReadOnPrimary => "read_on_primary",
            Reason::NoReplica => "no_replica",
            Reason::PrimaryOnly => "primary_only",
            Reason::Processlist => "processlist",
            Reason::SetTransaction => "set_transaction",
            Reason::LongData => "long_data",
            Reason::LastInsertId => "last_insert_id",
            Reason::Command => "command",
            Reason::ConsistencyFallback => "consistency_fallback",
        }
    }

    /// Whether a hint or a rule named the backend: consistency may make
    /// the read wait there or use the primary, never another replica.
    pub fn names_backend(self) -> bool {
        matches!(self, Reason::HintBackend | Reason::Rule)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
impl PartialEq<&str> for Reason {
    /// Tests compare a reason with its label.
    fn eq(&self, other: &&str) -> bool {
        self.label() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::{Pin, Reason};

    #[test]
    fn pinned_reasons_are_the_pins_labels() {
        assert_eq!(
            Reason::Pinned(Pin::LockTables).label(),
            Pin::LockTables.label()
        );
        assert_eq!(Reason::TransactionBound.label(), "transaction_bound");
        assert_eq!(Pin::UserLock.label(), "user_lock");
        assert_eq!(Pin::Cursor.describe(), "open cursor");
    }
}
