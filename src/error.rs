//! Typed errors and the one place that turns an error into the ERR packet a
//! client sees (code, SQLSTATE, message).
//!
//! May import `protocol` (and `classify`, `position`, `metrics`); nothing
//! above it.

use std::borrow::Cow;

use bytes::BytesMut;

use crate::protocol::response;

/// The longest message an ERR packet carries, in bytes: the server's
/// `MYSQL_ERRMSG_SIZE` (512, terminating zero included, so 511 of text).
pub const MAX_MESSAGE: usize = 511;

/// How much of a value a message may echo, in bytes, as the server echoes
/// a variable's value in ERROR 1231 (`%-.200T`).
pub const MAX_ECHO: usize = 200;

/// Client input as a message echoes it, the way the server does (`%-.NT`):
/// when longer than `max` bytes, the longest prefix that ends on a
/// character boundary and leaves room for `...`, then `...`.
pub fn echo(value: &str, max: usize) -> Cow<'_, str> {
    if value.len() <= max {
        return Cow::Borrowed(value);
    }
    let keep = prefix(value, max.saturating_sub(3));
    Cow::Owned(format!("{keep}..."))
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
    Internal,
}

/// An ERR packet received from a backend, kept to be relayed verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sql_state: [u8; 5],
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            String::from_utf8_lossy(&self.sql_state),
            self.message
        )
    }
}

impl ServerError {
    pub fn from_packet(payload: &[u8]) -> Option<ServerError> {
        response::Err::decode(payload).map(|e| ServerError {
            code: e.code,
            sql_state: e.sql_state,
            message: String::from_utf8_lossy(e.message).into_owned(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Access denied for user '{user}'@'{host}' (using password: {})", if *.using_password { "YES" } else { "NO" })]
    AccessDenied {
        user: String,
        host: String,
        using_password: bool,
    },
    #[error("{0}")]
    Server(ServerError),
    #[error("Causeway cannot reach backend '{backend}' ({address}): {reason}")]
    BackendUnavailable {
        backend: String,
        address: String,
        reason: String,
    },
    #[error("Causeway lost its connection to backend '{backend}' during the query: {reason}")]
    BackendLost { backend: String, reason: String },
    #[error("backend '{backend}' sent a malformed packet")]
    BackendProtocol { backend: String },
    /// A backend connection was lost while it held what the session cannot
    /// get back on another one; the client connection is closed after it.
    #[error(
        "Causeway lost its connection to backend '{backend}' ({reason}) and with it \
         the session's {lost}: the connection is closed"
    )]
    SessionLost {
        backend: String,
        reason: String,
        lost: &'static str,
    },
    /// A backend connection was lost while it held the session's open
    /// transaction: the transaction is over, the session goes on.
    #[error(
        "Causeway lost its connection to backend '{backend}' ({reason}) and with it \
         the open transaction (rolled back by the server, unless this was its COMMIT); \
         the session is no longer in a transaction"
    )]
    TransactionLost { backend: String, reason: String },
    /// No server takes writes (primary down, or a switchover): the
    /// statement was not sent.
    #[error("Causeway has no primary to send the statement to: {reason}; waited {waited_ms} ms")]
    NoPrimary { waited_ms: u64, reason: String },
    /// More than one server takes writes: the statement was not sent.
    #[error("Causeway refuses writes: more than one server takes writes ({servers}), a split brain an operator must resolve")]
    SplitBrain { servers: String },
    #[error("Unknown command")]
    UnknownCommand(u8),
    #[error("Malformed communication packet")]
    MalformedPacket,
    #[error("Got a packet bigger than 'max_allowed_packet' bytes")]
    PacketTooLarge,
    #[error("Got packets out of order")]
    PacketsOutOfOrder,
    #[error("Causeway does not support TLS yet: connect without TLS (e.g. --ssl=0 or ssl-mode=DISABLED)")]
    TlsUnsupported,
    #[error("Too many connections")]
    TooManyConnections,
    /// The server's `max_user_connections` (or Causeway's per-user cap).
    #[error("User {0} already has more than 'max_user_connections' active connections")]
    TooManyUserConnections(String),
    /// The account's own `MAX_USER_CONNECTIONS`.
    #[error(
        "User '{user}' has exceeded the 'max_user_connections' resource (current value: {limit})"
    )]
    UserLimitReached { user: String, limit: u32 },
    #[error("Unknown thread id: {0}")]
    NoSuchThread(u64),
    /// `KILL QUERY ID n`: Causeway shows no query ids, so none is known.
    #[error("Unknown query id: {0}")]
    NoSuchQuery(u64),
    /// A `KILL` Causeway cannot answer itself (and must not send on).
    #[error("Causeway answers KILL [HARD|SOFT] [CONNECTION|QUERY] {{n | CONNECTION_ID()}} and KILL ... USER name, each alone in its statement")]
    KillUnsupported,
    #[error("You are not owner of thread {0}")]
    NotOwnerOfThread(u32),
    /// `KILL USER` naming a session the killer may not kill.
    #[error("Operation KILL USER failed for {user}@{host}")]
    KillUserDenied { user: String, host: String },
    /// Causeway could not interrupt a session's statement on its backend
    /// (the side connection failed or was refused).
    #[error("Causeway could not interrupt the statement on backend '{backend}': {reason} (the monitor account needs CONNECTION ADMIN there)")]
    KillFailed { backend: String, reason: String },
    /// The session was killed while a statement ran (`KILL n`).
    #[error("Connection was killed")]
    ConnectionKilled,
    /// `KILL QUERY` of the session's own id, or of a statement Causeway
    /// was running itself.
    #[error("Query execution was interrupted")]
    QueryInterrupted,
    #[error("Causeway is shutting down")]
    ShuttingDown,
    #[error(
        "Causeway: no connection to backend '{backend}' became free within {waited_ms} ms \
             (transaction pool: at most {max} per backend, all in use)"
    )]
    PoolTimeout {
        backend: String,
        waited_ms: u64,
        max: usize,
    },
    /// A data change inside `START TRANSACTION READ ONLY` (which a replica
    /// serves): the server's own error for it.
    #[error("Cannot execute statement in a READ ONLY transaction")]
    ReadOnlyTransaction,
    /// A statement that needs a privilege the account lacks (the
    /// server's ER_SPECIFIC_ACCESS_DENIED_ERROR).
    #[error(
        "Access denied; you need (at least one of) the {privilege} privilege(s) for this operation"
    )]
    PrivilegeNeeded { privilege: &'static str },
    /// A switchover Causeway was asked to perform was refused or failed;
    /// the reason says which step and what the cluster looks like now.
    #[error("Causeway switchover: {reason}")]
    Switchover { reason: String },
}

impl Error {
    pub fn side(&self) -> Side {
        match self {
            Error::AccessDenied { .. }
            | Error::UnknownCommand(_)
            | Error::MalformedPacket
            | Error::PacketTooLarge
            | Error::PacketsOutOfOrder
            | Error::TlsUnsupported
            | Error::NoSuchThread(_)
            | Error::NoSuchQuery(_)
            | Error::KillUnsupported
            | Error::NotOwnerOfThread(_)
            | Error::KillUserDenied { .. }
            | Error::PrivilegeNeeded { .. }
            | Error::ReadOnlyTransaction => Side::Client,
            Error::Server(_)
            | Error::BackendUnavailable { .. }
            | Error::NoPrimary { .. }
            | Error::SplitBrain { .. }
            | Error::BackendLost { .. }
            | Error::BackendProtocol { .. }
            | Error::KillFailed { .. }
            | Error::Switchover { .. }
            | Error::SessionLost { .. }
            | Error::TransactionLost { .. } => Side::Backend,
            Error::TooManyUserConnections(_) | Error::UserLimitReached { .. } => Side::Client,
            Error::TooManyConnections
            | Error::ShuttingDown
            | Error::ConnectionKilled
            | Error::QueryInterrupted
            | Error::PoolTimeout { .. } => Side::Internal,
        }
    }

    /// A backend connection that could not be opened or broke (not a
    /// server's refusal, not a pool wait).
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Error::BackendUnavailable { .. }
                | Error::BackendLost { .. }
                | Error::BackendProtocol { .. }
        )
    }

    /// Whether the same statement may be sent again without risk of running
    /// it twice.
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            Error::BackendUnavailable { .. }
                | Error::NoPrimary { .. }
                | Error::SplitBrain { .. }
                | Error::TooManyConnections
                | Error::PoolTimeout { .. }
        )
    }

    /// Every value [`Error::label`] returns (registered as metric handles
    /// at start).
    pub const LABELS: &'static [&'static str] = &[
        "access_denied",
        "server",
        "backend_unavailable",
        "no_primary",
        "split_brain",
        "backend_lost",
        "backend_protocol",
        "session_lost",
        "transaction_lost",
        "unknown_command",
        "malformed_packet",
        "packet_too_large",
        "packets_out_of_order",
        "tls_unsupported",
        "too_many_connections",
        "too_many_user_connections",
        "user_limit_reached",
        "no_such_thread",
        "no_such_query",
        "kill_unsupported",
        "not_owner_of_thread",
        "kill_user_denied",
        "kill_failed",
        "connection_killed",
        "query_interrupted",
        "shutting_down",
        "pool_timeout",
        "read_only_transaction",
        "privilege_needed",
        "switchover",
    ];

    /// A fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::AccessDenied { .. } => "access_denied",
            Error::Server(_) => "server",
            Error::BackendUnavailable { .. } => "backend_unavailable",
            Error::NoPrimary { .. } => "no_primary",
            Error::SplitBrain { .. } => "split_brain",
            Error::BackendLost { .. } => "backend_lost",
            Error::BackendProtocol { .. } => "backend_protocol",
            Error::SessionLost { .. } => "session_lost",
            Error::TransactionLost { .. } => "transaction_lost",
            Error::UnknownCommand(_) => "unknown_command",
            Error::MalformedPacket => "malformed_packet",
            Error::PacketTooLarge => "packet_too_large",
            Error::PacketsOutOfOrder => "packets_out_of_order",
            Error::TlsUnsupported => "tls_unsupported",
            Error::TooManyConnections => "too_many_connections",
            Error::TooManyUserConnections(_) => "too_many_user_connections",
            Error::UserLimitReached { .. } => "user_limit_reached",
            Error::NoSuchThread(_) => "no_such_thread",
            Error::NoSuchQuery(_) => "no_such_query",
            Error::KillUnsupported => "kill_unsupported",
            Error::NotOwnerOfThread(_) => "not_owner_of_thread",
            Error::KillUserDenied { .. } => "kill_user_denied",
            Error::KillFailed { .. } => "kill_failed",
            Error::ConnectionKilled => "connection_killed",
            Error::QueryInterrupted => "query_interrupted",
            Error::ShuttingDown => "shutting_down",
            Error::PoolTimeout { .. } => "pool_timeout",
            Error::ReadOnlyTransaction => "read_only_transaction",
            Error::PrivilegeNeeded { .. } => "privilege_needed",
            Error::Switchover { .. } => "switchover",
        }
    }

    /// Code and SQLSTATE, as a MariaDB server would use them.
    pub fn code(&self) -> (u16, &[u8; 5]) {
        match self {
            Error::AccessDenied { .. } => (1045, b"28000"),
            Error::Server(e) => (e.code, &e.sql_state),
            // Server-range codes only: client libraries built on the C
            // connector turn an ERR packet with a client code (2000-2999,
            // e.g. 2003 or 2013) into "2027 Received malformed packet".
            // The statement was not sent: a proxy-defined code, next to
            // the pool's 9001.
            Error::BackendUnavailable { .. } => (9002, b"HY000"),
            // Not sent either: the cluster has no primary (9003) or more
            // than one (9004).
            Error::NoPrimary { .. } => (9003, b"HY000"),
            Error::SplitBrain { .. } => (9004, b"HY000"),
            // ER_CONNECTION_KILLED: what a server says when the connection
            // serving the statement went away under it.
            Error::BackendLost { .. }
            | Error::BackendProtocol { .. }
            | Error::SessionLost { .. }
            | Error::TransactionLost { .. } => (1927, b"70100"),
            Error::UnknownCommand(_) => (1047, b"08S01"),
            Error::MalformedPacket => (1835, b"08S01"),
            Error::PacketTooLarge => (1153, b"08S01"),
            Error::PacketsOutOfOrder => (1156, b"08S01"),
            Error::TlsUnsupported => (1251, b"08004"),
            Error::TooManyConnections => (1040, b"08004"),
            Error::TooManyUserConnections(_) => (1203, b"42000"),
            Error::UserLimitReached { .. } => (1226, b"42000"),
            Error::NoSuchThread(_) => (1094, b"HY000"),
            Error::NoSuchQuery(_) => (1957, b"HY000"),
            Error::KillUnsupported => (1235, b"42000"),
            Error::NotOwnerOfThread(_) | Error::KillUserDenied { .. } => (1095, b"HY000"),
            Error::ConnectionKilled => (1927, b"70100"),
            // ER_UNKNOWN_ERROR: a server-range code for a failure of
            // Causeway's own.
            Error::KillFailed { .. } => (1105, b"HY000"),
            Error::QueryInterrupted => (1317, b"70100"),
            Error::ShuttingDown => (1053, b"08S01"),
            // The statement was not sent: a proxy-defined code, as other
            // proxies use for a pool wait that ran out.
            Error::PoolTimeout { .. } => (9001, b"HY000"),
            Error::ReadOnlyTransaction => (1792, b"25006"),
            Error::PrivilegeNeeded { .. } => (1227, b"42000"),
            // Causeway's own, next to 9003/9004: the switchover did not
            // happen (or did not finish; the message says which).
            Error::Switchover { .. } => (9005, b"HY000"),
        }
    }

    /// The ERR payload for this error. The only place errors become packets.
    pub fn encode_err(&self, out: &mut BytesMut) {
        let (code, state) = self.code();
        let message = match self {
            Error::Server(e) => e.message.clone(),
            other => other.to_string(),
        };
        // No message is longer than a server's: those Causeway writes may
        // hold names and values from the client or the configuration.
        response::Err {
            code,
            sql_state: *state,
            message: prefix(&message, MAX_MESSAGE).as_bytes(),
        }
        .encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_matches_mariadb_shape() {
        let e = Error::AccessDenied {
            user: "app".into(),
            host: "127.0.0.1".into(),
            using_password: true,
        };
        let mut out = BytesMut::new();
        e.encode_err(&mut out);
        let back = ServerError::from_packet(&out).unwrap();
        assert_eq!(back.code, 1045);
        assert_eq!(&back.sql_state, b"28000");
        assert_eq!(
            back.message,
            "Access denied for user 'app'@'127.0.0.1' (using password: YES)"
        );
    }

    #[test]
    fn echoed_values_and_messages_are_cut_as_the_server_cuts_them() {
        // As MariaDB 10.11 answers `SET sql_mode = '<1000 x>'`: 197 bytes
        // and `...`; with two-byte characters, 98 of them and `...`.
        let long = "x".repeat(1000);
        assert_eq!(echo(&long, MAX_ECHO), format!("{}...", "x".repeat(197)));
        let wide = "é".repeat(300);
        assert_eq!(echo(&wide, MAX_ECHO), format!("{}...", "é".repeat(98)));
        assert_eq!(echo("short", MAX_ECHO), "short");
        // Every message fits the server's limit, cut on a character.
        let e = Error::BackendUnavailable {
            backend: "é".repeat(1_000_000),
            address: String::new(),
            reason: String::new(),
        };
        let mut out = BytesMut::new();
        e.encode_err(&mut out);
        let back = ServerError::from_packet(&out).unwrap();
        assert!(back.message.len() <= MAX_MESSAGE, "{}", back.message.len());
        assert!(!back.message.contains('\u{fffd}'));
    }

    #[test]
    fn server_errors_are_relayed_verbatim() {
        let e = Error::Server(ServerError {
            code: 1049,
            sql_state: *b"42000",
            message: "Unknown database 'nope'".into(),
        });
        let mut out = BytesMut::new();
        e.encode_err(&mut out);
        assert_eq!(&out[..], b"\xff\x19\x04#42000Unknown database 'nope'");
        assert_eq!(e.side(), Side::Backend);
    }

    /// Client libraries reject ERR packets with client-range codes.
    #[test]
    fn causeway_errors_use_server_range_codes() {
        let backend = || "primary".to_string();
        let all = [
            Error::BackendUnavailable {
                backend: backend(),
                address: "127.0.0.1:1".into(),
                reason: "refused".into(),
            },
            Error::BackendLost {
                backend: backend(),
                reason: "closed".into(),
            },
            Error::BackendProtocol { backend: backend() },
            Error::SessionLost {
                backend: backend(),
                reason: "closed".into(),
                lost: "temporary tables",
            },
        ];
        for e in all {
            let (code, _) = e.code();
            assert!(!(2000..3000).contains(&code), "{e}: {code}");
        }
    }
}
