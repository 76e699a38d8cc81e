//! The fast path: the kind of a statement from its leading tokens.
//!
//! Each function takes a lexer positioned after the tokens already read
//! (it is a copy: the caller walks the statement again for the flags) and
//! returns a [`Head`]. Only `SET` (see [`set`](super::set)), `WITH` and
//! `FLUSH` look further than a few tokens.

use super::lexer::{Lexer, Tok, Token, Upper};
use super::scan::ScanCtx;
use super::{set, Flags, Kind};

/// What the leading tokens say about a statement.
#[derive(Debug)]
pub(crate) enum Head<'a> {
    /// The kind is decided; the flag walk adds the flags (and `extra`).
    Kind(Kind, Flags, ScanCtx),
    /// The kind is decided and the statement runs to the end of the input
    /// whatever `;` it contains: stored-program bodies, compound
    /// statements, `EXPLAIN ROUTE <anything>`. No flags.
    Rest(Kind),
    /// The statement wraps another one that starts at the lexer.
    Wrap(Wrapper, Lexer<'a>),
    /// The fast path cannot tell: ask `sqlparser`.
    Fallback,
}

/// Statements that wrap another statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrapper {
    /// MariaDB `SET STATEMENT var=value [, ...] FOR <stmt>`: the kind of
    /// `<stmt>` (the variables last for that statement only).
    SetStatement,
    /// `EXPLAIN ANALYZE <stmt>` / MariaDB `ANALYZE <stmt>`: the statement
    /// runs, so a read stays a read and anything else is a write.
    Analyze,
}

fn kind(k: Kind) -> Head<'static> {
    Head::Kind(k, Flags::default(), ScanCtx::default())
}

/// `CALL p(@v)` may set `@v` (an `OUT` parameter), `LOAD DATA .. (a, @v)`
/// sets it for every row: their user variables are assigned as well as
/// read.
fn vars_may_be_assigned(k: Kind) -> Head<'static> {
    let ctx = ScanCtx {
        vars_assigned: true,
        ..ScanCtx::default()
    };
    Head::Kind(k, Flags::default(), ctx)
}

/// Whether the lexer is at the end of the statement.
fn at_end(lx: &Lexer<'_>) -> bool {
    lx.peek().is_none_or(|t| t.is_punct(b';'))
}

/// Consumes the next token if it is the word `kw`.
fn eat(lx: &mut Lexer<'_>, kw: &[u8]) -> bool {
    if lx.peek().is_some_and(|t| t.is(kw)) {
        lx.next_token();
        true
    } else {
        false
    }
}

/// The kind of the statement that starts with `first`; `lx` is after it.
pub(crate) fn decide<'a>(first: Token<'a>, mut lx: Lexer<'a>) -> Head<'a> {
    if first.is_punct(b'(') {
        return parenthesized(lx);
    }
    let Some(w) = first.word() else {
        return Head::Fallback;
    };
    let Some(lead) = lead(w) else {
        return Head::Fallback;
    };
    match lead {
        Lead::Read => kind(Kind::Read),
        Lead::With => with(lx),
        Lead::Write => kind(Kind::Write),
        Lead::Create => create(lx),
        Lead::Drop => drop(lx),
        Lead::Flush => flush(lx),
        Lead::Analyze => analyze(lx),
        Lead::Begin => begin(lx),
        Lead::Start => start(lx),
        Lead::Commit => kind(Kind::Commit),
        Lead::Rollback => rollback(lx),
        Lead::Savepoint => kind(Kind::Savepoint),
        Lead::Release if eat(&mut lx, b"SAVEPOINT") => kind(Kind::Savepoint),
        Lead::Release => Head::Fallback,
        Lead::Xa => kind(Kind::Xa),
        Lead::Set => set::classify(lx),
        Lead::Lock => lock(lx, Kind::LockTables),
        Lead::Unlock => lock(lx, Kind::UnlockTables),
        Lead::Backup => backup(lx),
        Lead::Prepare => kind(Kind::Prepare),
        Lead::Execute if eat(&mut lx, b"IMMEDIATE") => kind(Kind::Unknown),
        Lead::Execute => kind(Kind::Execute),
        Lead::Deallocate => kind(Kind::Deallocate),
        Lead::Call => vars_may_be_assigned(Kind::Call),
        Lead::Load => vars_may_be_assigned(Kind::Write),
        Lead::Show if eat(&mut lx, b"CAUSEWAY") => kind(Kind::Admin),
        // `CAUSEWAY SWITCHOVER TO 'name'`: Causeway's own, never sent on.
        Lead::Causeway => kind(Kind::Admin),
        // Causeway answers it about its client sessions.
        Lead::Show if super::processlist::show_processlist_tail(lx.clone()).is_some() => {
            kind(Kind::Admin)
        }
        Lead::Show => kind(Kind::Show),
        Lead::Explain => explain(lx, true),
        Lead::Describe => explain(lx, false),
        Lead::Use => kind(Kind::Use),
        Lead::Kill => kind(Kind::Kill),
        // Compound statements outside stored programs (MariaDB): their
        // bodies hold `;`, so they run to the end of the input.
        Lead::Compound => Head::Rest(Kind::Unknown),
    }
}

/// What a statement's first word announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lead {
    Read,
    With,
    Write,
    Create,
    Drop,
    Flush,
    Analyze,
    Begin,
    Start,
    Commit,
    Rollback,
    Savepoint,
    Release,
    Xa,
    Set,
    Lock,
    Unlock,
    Backup,
    Prepare,
    Execute,
    Deallocate,
    Call,
    Load,
    Show,
    Explain,
    Describe,
    Use,
    Kill,
    Compound,
    /// `CAUSEWAY ..`: Causeway's own statements.
    Causeway,
}

/// Statement keywords, sorted (a test checks the order) and bucketed by
/// first letter: a lookup compares a handful of words of the right length.
pub(crate) const LEADS: &[(&[u8], Lead)] = &[
    (b"ALTER", Lead::Write),
    (b"ANALYZE", Lead::Analyze),
    (b"BACKUP", Lead::Backup),
    (b"BEGIN", Lead::Begin),
    (b"BINLOG", Lead::Write),
    (b"CACHE", Lead::Write),
    (b"CALL", Lead::Call),
    (b"CASE", Lead::Compound),
    (b"CAUSEWAY", Lead::Causeway),
    (b"CHANGE", Lead::Write),
    (b"CHECK", Lead::Write),
    (b"CHECKSUM", Lead::Write),
    (b"CLONE", Lead::Write),
    (b"COMMIT", Lead::Commit),
    (b"CREATE", Lead::Create),
    (b"DEALLOCATE", Lead::Deallocate),
    (b"DELETE", Lead::Write),
    (b"DESC", Lead::Describe),
    (b"DESCRIBE", Lead::Describe),
    (b"DO", Lead::Write),
    (b"DROP", Lead::Drop),
    (b"EXECUTE", Lead::Execute),
    (b"EXPLAIN", Lead::Explain),
    (b"FLUSH", Lead::Flush),
    (b"GRANT", Lead::Write),
    (b"HANDLER", Lead::Write),
    (b"HELP", Lead::Show),
    (b"IF", Lead::Compound),
    (b"IMPORT", Lead::Write),
    (b"INSERT", Lead::Write),
    (b"INSTALL", Lead::Write),
    (b"KILL", Lead::Kill),
    (b"LOAD", Lead::Load),
    (b"LOCK", Lead::Lock),
    (b"LOOP", Lead::Compound),
    (b"OPTIMIZE", Lead::Write),
    (b"PREPARE", Lead::Prepare),
    (b"PURGE", Lead::Write),
    (b"RELEASE", Lead::Release),
    (b"RENAME", Lead::Write),
    (b"REPAIR", Lead::Write),
    (b"REPEAT", Lead::Compound),
    (b"REPLACE", Lead::Write),
    (b"RESET", Lead::Write),
    (b"RESTART", Lead::Write),
    (b"REVOKE", Lead::Write),
    (b"ROLLBACK", Lead::Rollback),
    (b"SAVEPOINT", Lead::Savepoint),
    (b"SELECT", Lead::Read),
    (b"SET", Lead::Set),
    (b"SHOW", Lead::Show),
    (b"SHUTDOWN", Lead::Write),
    (b"START", Lead::Start),
    (b"STOP", Lead::Write),
    (b"TABLE", Lead::Read),
    (b"TRUNCATE", Lead::Write),
    (b"UNINSTALL", Lead::Write),
    (b"UNLOCK", Lead::Unlock),
    (b"UPDATE", Lead::Write),
    (b"USE", Lead::Use),
    (b"VALUES", Lead::Read),
    (b"WHILE", Lead::Compound),
    (b"WITH", Lead::With),
    (b"XA", Lead::Xa),
];

/// A word of up to 16 bytes as one integer, upper-cased: words hold no
/// NUL byte, so equal numbers mean equal words, compared in one step.
const fn pack(w: &[u8]) -> Option<u128> {
    if w.len() > 16 {
        return None;
    }
    let mut v = 0u128;
    let mut i = 0;
    while i < w.len() {
        v = (v << 8) | w[i].to_ascii_uppercase() as u128;
        i += 1;
    }
    Some(v)
}

/// `LEADS`, packed.
const PACKED_LEADS: [u128; LEADS.len()] = {
    let mut packed = [0u128; LEADS.len()];
    let mut i = 0;
    while i < LEADS.len() {
        packed[i] = match pack(LEADS[i].0) {
            Some(p) => p,
            None => panic!("statement keywords are at most 16 bytes"),
        };
        i += 1;
    }
    packed
};

/// `LEADS[lo..hi]` start with the letter `b'A' + index`.
const LEAD_BUCKETS: [(u8, u8); 26] = {
    let mut buckets = [(0u8, 0u8); 26];
    let mut i = 0;
    while i < LEADS.len() {
        let letter = (LEADS[i].0[0] - b'A') as usize;
        if buckets[letter].1 == 0 {
            buckets[letter].0 = i as u8;
        }
        buckets[letter].1 = i as u8 + 1;
        i += 1;
    }
    buckets
};

/// The statement keyword `w` (any case), if it is one.
fn lead(w: &[u8]) -> Option<Lead> {
    let first = w.first()?.to_ascii_uppercase();
    let (lo, hi) = *LEAD_BUCKETS.get(usize::from(first.checked_sub(b'A')?))?;
    let (lo, hi) = (usize::from(lo), usize::from(hi));
    let packed = pack(w)?;
    let i = PACKED_LEADS
        .get(lo..hi)?
        .iter()
        .position(|p| *p == packed)?;
    LEADS.get(lo + i).map(|(_, l)| *l)
}

/// `(SELECT ..) UNION (SELECT ..)`, `((VALUES ..))`, `(WITH ..)`.
fn parenthesized(mut lx: Lexer<'_>) -> Head<'_> {
    loop {
        let Some(t) = lx.next_token() else {
            return kind(Kind::Unknown);
        };
        if t.is_punct(b'(') {
            continue;
        }
        return if t.is(b"SELECT") || t.is(b"VALUES") || t.is(b"TABLE") {
            kind(Kind::Read)
        } else if t.is(b"WITH") {
            with(lx)
        } else {
            Head::Fallback
        };
    }
}

/// `WITH [RECURSIVE] cte [(cols)] AS (..) [, ...] <main statement>`: the
/// main statement is the first statement keyword at the top level, or a
/// `(` right after a CTE's closing parenthesis (a parenthesized query).
fn with(mut lx: Lexer<'_>) -> Head<'_> {
    let mut depth = 0u32;
    let mut after_cte = false;
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            break;
        }
        if t.is_punct(b'(') {
            if depth == 0 && after_cte {
                return kind(Kind::Read);
            }
            depth += 1;
            continue;
        }
        if t.is_punct(b')') {
            depth = depth.saturating_sub(1);
            after_cte = depth == 0;
            continue;
        }
        after_cte = false;
        if depth > 0 {
            continue;
        }
        if t.is(b"SELECT") || t.is(b"VALUES") || t.is(b"TABLE") {
            return kind(Kind::Read);
        }
        if t.is(b"INSERT") || t.is(b"UPDATE") || t.is(b"DELETE") || t.is(b"REPLACE") {
            return kind(Kind::Write);
        }
    }
    Head::Fallback
}

/// `CREATE [OR REPLACE] TEMPORARY ..`, stored programs, everything else.
fn create(mut lx: Lexer<'_>) -> Head<'_> {
    // The object type comes within the first few tokens, after `OR
    // REPLACE`, `DEFINER = user`, `ALGORITHM = ..`, `AGGREGATE`, ...
    for _ in 0..16 {
        let Some(t) = lx.next_token() else { break };
        let Some(w) = t.word() else { continue };
        match Upper::new(w).as_bytes() {
            b"TEMPORARY" => return kind(Kind::TempTable { create: true }),
            // Bodies may hold `;` (`BEGIN .. ; .. END`).
            b"PROCEDURE" | b"FUNCTION" | b"TRIGGER" | b"EVENT" | b"PACKAGE" => {
                return Head::Rest(Kind::Write)
            }
            b"TABLE" | b"VIEW" | b"INDEX" | b"DATABASE" | b"SCHEMA" | b"USER" | b"ROLE"
            | b"SEQUENCE" | b"SERVER" | b"TABLESPACE" | b"LOGFILE" | b"SPATIAL" | b"UNIQUE"
            | b"FULLTEXT" => break,
            _ => {}
        }
    }
    kind(Kind::Write)
}

/// `DROP TEMPORARY TABLE`, `DROP PREPARE`, everything else.
fn drop(mut lx: Lexer<'_>) -> Head<'_> {
    if eat(&mut lx, b"TEMPORARY") {
        kind(Kind::TempTable { create: false })
    } else if eat(&mut lx, b"PREPARE") {
        kind(Kind::Deallocate)
    } else {
        kind(Kind::Write)
    }
}

/// `FLUSH TABLES .. WITH READ LOCK` and `FLUSH TABLES .. FOR EXPORT` take
/// locks that the session holds until `UNLOCK TABLES`: like `LOCK TABLES`.
/// Any other `FLUSH` is a write.
fn flush(mut lx: Lexer<'_>) -> Head<'_> {
    let mut prev_read_or_for = None;
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            break;
        }
        match prev_read_or_for {
            Some(b'R') if t.is(b"LOCK") => return kind(Kind::LockTables),
            Some(b'F') if t.is(b"EXPORT") => return kind(Kind::LockTables),
            _ => {}
        }
        prev_read_or_for = if t.is(b"READ") {
            Some(b'R')
        } else if t.is(b"FOR") {
            Some(b'F')
        } else {
            None
        };
    }
    kind(Kind::Write)
}

/// `ANALYZE [NO_WRITE_TO_BINLOG | LOCAL] TABLE ..` is a write; MariaDB's
/// `ANALYZE [FORMAT=..] <stmt>` runs the statement.
fn analyze(mut lx: Lexer<'_>) -> Head<'_> {
    let next = lx.peek();
    if next.is_none_or(|t| {
        t.is(b"TABLE") || t.is(b"TABLES") || t.is(b"NO_WRITE_TO_BINLOG") || t.is(b"LOCAL")
    }) {
        return kind(Kind::Write);
    }
    skip_format(&mut lx);
    Head::Wrap(Wrapper::Analyze, lx)
}

/// Skips `FORMAT = <name>`.
fn skip_format(lx: &mut Lexer<'_>) {
    if eat(lx, b"FORMAT") {
        if lx.peek().is_some_and(|t| t.is_punct(b'=')) {
            lx.next_token();
        }
        lx.next_token();
    }
}

/// `EXPLAIN ROUTE <stmt>` (Causeway's own), `EXPLAIN ANALYZE <stmt>`
/// (runs it), and every other EXPLAIN/DESCRIBE (shows a plan or a table).
fn explain(mut lx: Lexer<'_>, is_explain: bool) -> Head<'_> {
    if is_explain && lx.peek().is_some_and(|t| t.is(b"ROUTE")) {
        let mut after = lx.clone();
        after.next_token();
        // `EXPLAIN route` alone describes a table called `route`.
        if after.peek().is_some() {
            return Head::Rest(Kind::Admin);
        }
    }
    // MySQL allows `EXPLAIN FORMAT=TREE ANALYZE` as well as `EXPLAIN ANALYZE
    // FORMAT=TREE`.
    skip_format(&mut lx);
    if eat(&mut lx, b"ANALYZE") {
        skip_format(&mut lx);
        return Head::Wrap(Wrapper::Analyze, lx);
    }
    kind(Kind::Show)
}

/// `BEGIN [WORK]`; MariaDB's `BEGIN NOT ATOMIC ..` is a compound statement.
fn begin(mut lx: Lexer<'_>) -> Head<'_> {
    eat(&mut lx, b"WORK");
    if at_end(&lx) {
        kind(Kind::Begin {
            read_only: false,
            consistent_snapshot: false,
        })
    } else if eat(&mut lx, b"NOT") && eat(&mut lx, b"ATOMIC") {
        Head::Rest(Kind::Unknown)
    } else {
        kind(Kind::Unknown)
    }
}

/// `START TRANSACTION [characteristic [, ...]]`; `START SLAVE` and friends.
fn start(mut lx: Lexer<'_>) -> Head<'_> {
    if !eat(&mut lx, b"TRANSACTION") {
        return match lx.peek() {
            Some(t) if t.kind == Tok::Word => kind(Kind::Write),
            _ => kind(Kind::Unknown),
        };
    }
    let (mut read_only, mut consistent_snapshot) = (false, false);
    loop {
        if at_end(&lx) {
            return kind(Kind::Begin {
                read_only,
                consistent_snapshot,
            });
        }
        if eat(&mut lx, b"WITH") && eat(&mut lx, b"CONSISTENT") && eat(&mut lx, b"SNAPSHOT") {
            consistent_snapshot = true;
        } else if eat(&mut lx, b"READ") {
            if eat(&mut lx, b"ONLY") {
                read_only = true;
            } else if !eat(&mut lx, b"WRITE") {
                return kind(Kind::Unknown);
            }
        } else {
            return kind(Kind::Unknown);
        }
        if lx.peek().is_some_and(|t| t.is_punct(b',')) {
            lx.next_token();
        }
    }
}

/// `ROLLBACK [WORK] TO [SAVEPOINT] x` versus a plain rollback.
fn rollback(mut lx: Lexer<'_>) -> Head<'_> {
    eat(&mut lx, b"WORK");
    if eat(&mut lx, b"TO") {
        kind(Kind::Savepoint)
    } else {
        kind(Kind::Rollback)
    }
}

/// `LOCK TABLE(S)` / `UNLOCK TABLE(S)`; MySQL's `LOCK INSTANCE FOR BACKUP`
/// is held by the session the same way.
fn lock(mut lx: Lexer<'_>, k: Kind) -> Head<'static> {
    if eat(&mut lx, b"TABLES") || eat(&mut lx, b"TABLE") || eat(&mut lx, b"INSTANCE") {
        kind(k)
    } else {
        kind(Kind::Unknown)
    }
}

/// MariaDB `BACKUP LOCK t` / `BACKUP UNLOCK` are session-held locks;
/// `BACKUP STAGE ..` is a write.
fn backup(mut lx: Lexer<'_>) -> Head<'static> {
    if eat(&mut lx, b"LOCK") {
        kind(Kind::LockTables)
    } else if eat(&mut lx, b"UNLOCK") {
        kind(Kind::UnlockTables)
    } else {
        kind(Kind::Write)
    }
}
