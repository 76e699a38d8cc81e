//! Statement classification: what a SQL text is, which flags force it to
//! the primary, and which routing hints its leading comments carry.
//!
//! Pure and synchronous; imports nothing from the crate (the router and
//! the session use it, not the other way round).
//!
//! Two paths:
//! - the **fast path**, a lexer (`lexer`) that borrows the text and
//!   allocates nothing, reads the leading tokens of each statement (`head`,
//!   `set`) and walks every token once for the flags (`scan`). It decides
//!   nearly everything, including `WITH .. UPDATE`.
//! - the **slow path**, `sqlparser` with the MySQL dialect (`parse`), for
//!   what the leading tokens do not settle; such a result carries
//!   [`Flags::PARSED`]. What neither can place is [`Kind::Unknown`], which
//!   the router treats as a write: misclassification costs speed, never
//!   correctness.
//!
//! Comments (`-- `, `#`, `/* */`) are skipped everywhere; the content of
//! executable comments (`/*! .. */`, `/*M! .. */`) is SQL and sets
//! [`Flags::EXECUTABLE_COMMENT`]. Hints come from the leading comments only
//! (`hints`).
//!
//! **Multi-statements** (more than one non-empty statement; a trailing `;`
//! does not count) set [`Flags::MULTI_STATEMENT`] and OR the flags of all
//! statements. The kind is `Read` if every statement is a `Read` and no
//! flag forces the primary ([`Flags::PRIMARY_ONLY`]), `Write` if every
//! statement is a `Write`, and `Unknown` otherwise. Stored-program bodies
//! (`CREATE PROCEDURE/FUNCTION/TRIGGER/EVENT`), MariaDB compound statements
//! (`BEGIN NOT ATOMIC`, `IF`, `LOOP`, ...) and `EXPLAIN ROUTE` run to the
//! end of the text whatever `;` they hold: one statement.
//!
//! **Readings that depend on the server.** The lexer assumes backslash
//! escapes in strings and that executable comments run. When a string
//! holds a backslash before a quote (`NO_BACKSLASH_ESCAPES` would end it
//! there), or an executable comment is gated on a version not every
//! supported server has (`/*!NNNNN` from 50700 up, six-digit versions,
//! MariaDB's `/*M!`), the text is classified under every reading: the
//! kind stands only if all readings agree (else `Unknown`), and the flags
//! of all readings are set. No `'\'; DELETE ..` or `/*!99999 SELECT 1
//! FROM (*/ UPDATE ..` passes for a read. `ANSI_QUOTES` changes no token
//! boundary (only whether `".."` is a string or a name; [`mentions_table`]
//! treats it as a string).

mod diagnostics;
mod head;
mod hints;
mod kill;
mod lexer;
mod own;
mod parse;
mod processlist;
mod scan;
mod session_fns;
mod session_sql;
mod set;

#[cfg(test)]
mod tests;

pub use diagnostics::reads_diagnostics;
pub use kill::{has_kill, kill_statement, KillScope, KillStatement, KillTarget};
pub use own::{explain_route_target, own_statement, OwnStatement};
pub use processlist::{processlist_refs, show_processlist, ProcesslistRef, RefRole};
pub use session_fns::{
    hide_socket, in_read_only, lock_calls, reads_a_table, reads_last_insert_id, starts_with_load,
    substitute_connection_id, substitute_row_count, user_var_names, InReadOnly, LockCalls,
};
pub use session_sql::{
    handler, names_collation, names_session_tracking, prepared_name, replayable_user_var_set,
    replayable_user_var_sets, same_table_name, set_session_var_names, set_transaction,
    temp_table_changes, HandlerOp, SetTransaction, TempTableChange,
};
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use lexer::{Lexer, Reading, Tok};

/// What a statement is, its flags, and the hints it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub kind: Kind,
    pub flags: Flags,
    pub hints: Hints,
    /// Whether the statement reads a table (what [`reads_a_table`] says),
    /// noted in the classifier's pass so nothing lexes it again; `None`
    /// when that pass could not tell.
    pub reads_table: Option<bool>,
}

impl Class {
    /// Whether running the statement a second time, after a first run whose
    /// connection broke, can do no harm: one plain read, with nothing that
    /// changes state (side-effect functions, assignments, `INTO`, locking)
    /// and no executable comment that may hide such a thing.
    pub fn may_run_twice(&self) -> bool {
        self.kind == Kind::Read
            && !self.flags.intersects(
                Flags::PRIMARY_ONLY | Flags::MULTI_STATEMENT | Flags::EXECUTABLE_COMMENT,
            )
    }

    /// Whether a statement of an open transaction may be run again on
    /// another server, in a replay of the transaction (`sql` is its text):
    /// a read, a locking read, a data change (not `LOAD`), `BEGIN` (not
    /// `READ ONLY`) or a savepoint, with nothing that changes session
    /// state (assignments, `INTO`), calls a connection-bound or
    /// non-transactional function (`LAST_INSERT_ID()`, locks, sequences,
    /// ...) or hides something in an executable comment. Such a statement
    /// never commits: after a lost connection it cannot have taken effect.
    pub fn may_replay(&self, sql: &[u8]) -> bool {
        let plain = !self.flags.intersects(
            Flags::MULTI_STATEMENT
                | Flags::EXECUTABLE_COMMENT
                | Flags::SIDE_EFFECT_FN
                | Flags::SELECT_INTO
                | Flags::USER_VAR_ASSIGN
                | Flags::GLOBAL,
        );
        plain
            && match self.kind {
                Kind::Read | Kind::LockingRead | Kind::Savepoint => true,
                Kind::Begin { read_only, .. } => !read_only,
                Kind::Write => {
                    in_read_only(sql) == InReadOnly::DataChange && !starts_with_load(sql)
                }
                _ => false,
            }
    }
}

/// The kind of a statement (of the first one, for multi-statements: see
/// the module documentation for how they combine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `SELECT`, `WITH .. SELECT`, `VALUES`, `TABLE`, `EXPLAIN ANALYZE` /
    /// MariaDB `ANALYZE` of a read, without locking clauses. Flags may
    /// still force the primary.
    Read,
    /// `INSERT/UPDATE/DELETE/REPLACE`, writable CTEs, `LOAD DATA`, DDL,
    /// `HANDLER`, `DO`, `FLUSH`, `ANALYZE/OPTIMIZE/REPAIR/CHECK TABLE`,
    /// `GRANT`, `SET GLOBAL`, `SET PASSWORD`, replication control, ...
    Write,
    /// `SELECT .. FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE`.
    LockingRead,
    /// `BEGIN [WORK]`, `START TRANSACTION [READ ONLY | READ WRITE | WITH
    /// CONSISTENT SNAPSHOT, ..]`.
    Begin {
        read_only: bool,
        consistent_snapshot: bool,
    },
    /// `COMMIT [WORK] [AND [NO] CHAIN] [[NO] RELEASE]`.
    Commit,
    /// `ROLLBACK [WORK]` (not `TO SAVEPOINT`).
    Rollback,
    /// `SAVEPOINT x`, `RELEASE SAVEPOINT x`, `ROLLBACK [WORK] TO [SAVEPOINT] x`.
    Savepoint,
    /// `XA START/END/PREPARE/COMMIT/ROLLBACK/RECOVER`.
    Xa,
    /// `SET [SESSION | GLOBAL] TRANSACTION ..` (`GLOBAL` flag if global).
    SetTransaction,
    /// `SET [SESSION] autocommit = <literal>` and nothing else.
    SetAutocommit(bool),
    /// Session state: `SET [SESSION | LOCAL] x = ..`, `SET @@x`, `SET NAMES`,
    /// `SET CHARACTER SET`, `SET ROLE`; with `USER_VAR_ASSIGN` when user
    /// variables are set too.
    SetSession,
    /// `SET @a = .., @b := ..` (only user variables).
    SetUserVar,
    /// `CREATE [OR REPLACE] TEMPORARY TABLE/SEQUENCE`, `DROP TEMPORARY TABLE`.
    TempTable { create: bool },
    /// `LOCK TABLE(S)`, `FLUSH TABLES .. WITH READ LOCK / FOR EXPORT`,
    /// `LOCK INSTANCE FOR BACKUP`, MariaDB `BACKUP LOCK`.
    LockTables,
    /// `UNLOCK TABLE(S)`, `UNLOCK INSTANCE`, MariaDB `BACKUP UNLOCK`.
    UnlockTables,
    /// `PREPARE s FROM ..`.
    Prepare,
    /// `EXECUTE s [USING ..]` (`EXECUTE IMMEDIATE` is `Unknown`).
    Execute,
    /// `DEALLOCATE PREPARE s`, `DROP PREPARE s`.
    Deallocate,
    /// `CALL p(..)`.
    Call,
    /// `SHOW ..`, `DESCRIBE t`, `EXPLAIN <stmt>` (not `ANALYZE`), `HELP`.
    Show,
    /// `USE db`.
    Use,
    /// `KILL [CONNECTION | QUERY] n`.
    Kill,
    /// Statements Causeway answers itself: `EXPLAIN ROUTE <stmt>`, `SHOW
    /// CAUSEWAY ..`, `SET CAUSEWAY ..`, `SHOW [FULL] PROCESSLIST`.
    Admin,
    /// Anything else, empty or unparseable: routed like a write.
    Unknown,
}

impl Kind {
    /// A fixed lower-case name, for metric labels and `EXPLAIN ROUTE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::LockingRead => "locking_read",
            Kind::Begin { .. } => "begin",
            Kind::Commit => "commit",
            Kind::Rollback => "rollback",
            Kind::Savepoint => "savepoint",
            Kind::Xa => "xa",
            Kind::SetTransaction => "set_transaction",
            Kind::SetAutocommit(_) => "set_autocommit",
            Kind::SetSession => "set_session",
            Kind::SetUserVar => "set_user_var",
            Kind::TempTable { .. } => "temp_table",
            Kind::LockTables => "lock_tables",
            Kind::UnlockTables => "unlock_tables",
            Kind::Prepare => "prepare",
            Kind::Execute => "execute",
            Kind::Deallocate => "deallocate",
            Kind::Call => "call",
            Kind::Show => "show",
            Kind::Use => "use",
            Kind::Kill => "kill",
            Kind::Admin => "admin",
            Kind::Unknown => "unknown",
        }
    }
}

/// Bit flags on a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// More than one non-empty statement.
    pub const MULTI_STATEMENT: Flags = Flags(1 << 0);
    /// Calls a function whose result depends on the connection's history
    /// or that changes server state: `LAST_INSERT_ID FOUND_ROWS ROW_COUNT
    /// GET_LOCK RELEASE_LOCK RELEASE_ALL_LOCKS IS_USED_LOCK IS_FREE_LOCK
    /// NEXTVAL LASTVAL SETVAL SLEEP BENCHMARK MASTER_POS_WAIT
    /// SOURCE_POS_WAIT MASTER_GTID_WAIT WAIT_FOR_EXECUTED_GTID_SET
    /// WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS UUID_SHORT` (a name followed by
    /// `(`), `NEXT VALUE FOR`, `PREVIOUS VALUE FOR`; or reads a
    /// connection-bound variable: `@@identity @@last_insert_id @@last_gtid
    /// @@warning_count @@error_count`. Stored functions are not known.
    pub const SIDE_EFFECT_FN: Flags = Flags(1 << 1);
    /// `GET_LOCK( RELEASE_LOCK( RELEASE_ALL_LOCKS(` (also `SIDE_EFFECT_FN`).
    pub const LOCK_FN: Flags = Flags(1 << 2);
    /// `INTO @v`, `INTO OUTFILE`, `INTO DUMPFILE`.
    pub const SELECT_INTO: Flags = Flags(1 << 3);
    /// Assigns a user variable: `@v :=`, `INTO @v`, `SET @v = ..`, and
    /// any `@v` of a `CALL` (an `OUT` parameter?) or a `LOAD DATA` (a
    /// per-row target); those also set `USER_VAR_READ`.
    pub const USER_VAR_ASSIGN: Flags = Flags(1 << 4);
    /// Reads a user variable (`@v` not being assigned; not `@@system`).
    pub const USER_VAR_READ: Flags = Flags(1 << 5);
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    pub const LOCKING: Flags = Flags(1 << 6);
    /// Holds `/*! .. */` or `/*M! .. */`.
    pub const EXECUTABLE_COMMENT: Flags = Flags(1 << 7);
    /// `SQL_CALC_FOUND_ROWS`.
    pub const CALC_FOUND_ROWS: Flags = Flags(1 << 8);
    /// `SET GLOBAL`, `SET @@global.`, `SET PERSIST`, `SET GLOBAL TRANSACTION`.
    pub const GLOBAL: Flags = Flags(1 << 9);
    /// The fast path could not decide and `sqlparser` did.
    pub const PARSED: Flags = Flags(1 << 10);

    /// Flags that keep a read off the replicas.
    pub const PRIMARY_ONLY: Flags = Flags(
        Self::SIDE_EFFECT_FN.0 | Self::SELECT_INTO.0 | Self::USER_VAR_ASSIGN.0 | Self::LOCKING.0,
    );

    const NAMES: [(Flags, &'static str); 11] = [
        (Self::MULTI_STATEMENT, "MULTI_STATEMENT"),
        (Self::SIDE_EFFECT_FN, "SIDE_EFFECT_FN"),
        (Self::LOCK_FN, "LOCK_FN"),
        (Self::SELECT_INTO, "SELECT_INTO"),
        (Self::USER_VAR_ASSIGN, "USER_VAR_ASSIGN"),
        (Self::USER_VAR_READ, "USER_VAR_READ"),
        (Self::LOCKING, "LOCKING"),
        (Self::EXECUTABLE_COMMENT, "EXECUTABLE_COMMENT"),
        (Self::CALC_FOUND_ROWS, "CALC_FOUND_ROWS"),
        (Self::GLOBAL, "GLOBAL"),
        (Self::PARSED, "PARSED"),
    ];

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    #[inline]
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    #[inline]
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the flags set, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    #[inline]
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    #[inline]
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// `LOCKING|USER_VAR_READ`, or `-` when empty.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// Routing hints from the leading comments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hints {
    pub route: Option<RouteHint>,
    /// `eventual`, `session`, `global`, `bounded:200ms`, ... (lower case,
    /// as written; the consistency module parses it).
    pub consistency: Option<String>,
    /// A position token to wait for, as written.
    pub after: Option<String>,
}

/// Where a hint sends the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteHint {
    Primary,
    Replica,
    /// A backend by its configured name (case kept).
    Backend(String),
}

/// Classifies `sql`. Never panics; allocates nothing for a statement
/// without hints that the fast path decides.
pub fn classify(sql: &str) -> Class {
    let hints = hints::leading(sql);
    let src = sql.as_bytes();
    let base = classify_all(src, Reading::DEFAULT);
    // `reads_a_table` reads the default reading only, as this pass does.
    let reads_table = Some(base.reads_table);
    if !base.ambiguous {
        return Class {
            kind: base.kind,
            flags: base.flags,
            hints,
            reads_table,
        };
    }
    // The server could read the text otherwise: the kind must hold for
    // every reading, and the flags of all readings count.
    let (mut kind, mut flags) = (base.kind, base.flags);
    for reading in Reading::ALL.into_iter().skip(1) {
        let other = classify_all(src, reading);
        if other.kind != kind {
            kind = Kind::Unknown;
        }
        flags |= other.flags;
    }
    Class {
        kind,
        flags,
        hints,
        reads_table,
    }
}

struct All {
    kind: Kind,
    flags: Flags,
    /// Another [`Reading`] could see other tokens.
    ambiguous: bool,
    /// The first `FROM` names a table.
    reads_table: bool,
}

/// Classifies every statement of `src` and combines them.
fn classify_all(src: &[u8], reading: Reading) -> All {
    let mut lx = Lexer::new(src, reading);
    let mut flags = Flags::default();
    let mut first_kind = Kind::Unknown;
    let (mut count, mut all_read, mut all_write) = (0usize, true, true);
    while let Some(first) = lx.next_token() {
        if first.is_punct(b';') {
            continue; // an empty statement
        }
        let (kind, f) = scan::statement(first, &mut lx, 0);
        flags |= f;
        all_read &= kind == Kind::Read;
        all_write &= kind == Kind::Write;
        if count == 0 {
            first_kind = kind;
        }
        count += 1;
    }
    if lx.saw_exec {
        flags |= Flags::EXECUTABLE_COMMENT;
    }
    let kind = if count > 1 {
        flags |= Flags::MULTI_STATEMENT;
        if all_read && !flags.intersects(Flags::PRIMARY_ONLY) {
            Kind::Read
        } else if all_write {
            Kind::Write
        } else {
            Kind::Unknown
        }
    } else {
        first_kind
    };
    All {
        kind,
        flags,
        ambiguous: lx.ambiguous(),
        reads_table: lx.from_table.unwrap_or(false),
    }
}

/// Whether `sql` mentions the table `name` as an identifier (unquoted,
/// `` `quoted` ``, or `` db.`name` ``), ignoring strings and comments (but
/// not executable comments), comparing names as [`same_table_name`] does.
/// Used for the session's temporary tables; both are the client's bytes. A
/// column of the same name also counts: a false positive only sends the
/// statement to the primary.
pub fn mentions_table(sql: impl AsRef<[u8]>, name: impl AsRef<[u8]>) -> bool {
    let (sql, name) = (sql.as_ref(), name.as_ref());
    if name.is_empty() {
        return false;
    }
    let (found, ambiguous) = mentions(sql, name, Reading::DEFAULT);
    found
        || (ambiguous
            && Reading::ALL
                .into_iter()
                .skip(1)
                .any(|r| mentions(sql, name, r).0))
}

/// Whether a reading of `src` names `name`, and whether another reading
/// could see other tokens.
fn mentions(src: &[u8], name: &[u8], reading: Reading) -> (bool, bool) {
    let mut lx = Lexer::new(src, reading);
    while let Some(t) = lx.next_token() {
        let hit = match t.kind {
            Tok::Word => same_table_name(t.text, name),
            Tok::Quoted if t.text.windows(2).any(|w| w == b"``") => {
                same_table_name(&session_sql::undouble(t.text, b'`'), name)
            }
            Tok::Quoted => same_table_name(t.text, name),
            _ => false,
        };
        if hit {
            return (true, lx.ambiguous());
        }
    }
    (false, lx.ambiguous())
}
