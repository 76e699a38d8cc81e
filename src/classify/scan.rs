//! One statement from its first token to its `;`: the kind (via
//! [`head`](super::head)), the flags (one walk over every token), and the
//! `sqlparser` fallback when the leading tokens do not decide.

use super::head::{self, Head, Wrapper};
use super::lexer::{Lexer, Tok, Token};
use super::{parse, Flags, Kind};

/// How deep wrappers (`SET STATEMENT .. FOR`, `EXPLAIN ANALYZE`) may nest
/// before the statement is given up as unknown: bounds the recursion on
/// hostile input.
const MAX_WRAP_DEPTH: u32 = 4;

/// What the flag walk needs to know about the statement.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScanCtx {
    /// A `SET` statement: `@v =` at the top level, right after `SET` or a
    /// comma, assigns `@v`.
    pub set_stmt: bool,
    /// `CALL`, `LOAD DATA`: user variables may be assigned (`OUT`
    /// parameters, per-row targets): each counts as assigned and read.
    pub vars_assigned: bool,
}

/// The result of the flag walk.
struct Scanned {
    flags: Flags,
    /// End of the statement's last token before its `;`.
    body_end: usize,
}

/// Classifies the statement that starts with `first` (not a `;`) and
/// leaves `lx`, which is after `first`, after the statement's `;` (or at
/// the end of the input).
pub(crate) fn statement<'a>(first: Token<'a>, lx: &mut Lexer<'a>, depth: u32) -> (Kind, Flags) {
    if depth > MAX_WRAP_DEPTH {
        let s = scan(first, lx, ScanCtx::default(), usize::MAX);
        return (Kind::Unknown, s.flags);
    }
    match head::decide(first, lx.clone()) {
        Head::Kind(kind, extra, ctx) => {
            let flags = scan(first, lx, ctx, usize::MAX).flags | extra;
            let kind = match kind {
                Kind::Read if flags.contains(Flags::LOCKING) => Kind::LockingRead,
                k => k,
            };
            (kind, flags)
        }
        Head::Rest(kind) => {
            lx.skip_to_end();
            (kind, Flags::default())
        }
        Head::Wrap(wrapper, inner) => {
            let stop = inner.peek().map_or(lx.src().len(), |t| t.start);
            let ctx = ScanCtx {
                set_stmt: wrapper == Wrapper::SetStatement,
                ..ScanCtx::default()
            };
            let prefix = scan(first, lx, ctx, stop);
            *lx = inner;
            let inner_first = match lx.next_token() {
                Some(t) if !t.is_punct(b';') => t,
                _ => return (Kind::Unknown, prefix.flags),
            };
            let (kind, flags) = statement(inner_first, lx, depth + 1);
            let kind = match (wrapper, kind) {
                (Wrapper::SetStatement, k) => k,
                (Wrapper::Analyze, k @ (Kind::Read | Kind::LockingRead)) => k,
                (Wrapper::Analyze, Kind::Unknown) => Kind::Unknown,
                (Wrapper::Analyze, _) => Kind::Write,
            };
            (kind, prefix.flags | flags)
        }
        Head::Fallback => {
            let after_first = lx.clone();
            let s = scan(first, lx, ScanCtx::default(), usize::MAX);
            match parse::classify(&rebuild(first, after_first, s.body_end)) {
                Some(kind) => (kind, s.flags | Flags::PARSED),
                None => (Kind::Unknown, s.flags),
            }
        }
    }
}

/// Walks the tokens of one statement, `first` and those at `lx`, through
/// its `;`, or up to the first token starting at or after `stop`, and
/// collects the flags.
fn scan<'a>(first: Token<'a>, lx: &mut Lexer<'a>, ctx: ScanCtx, stop: usize) -> Scanned {
    let mut flags = Flags::default();
    let mut prev: Option<Token<'_>> = None;
    let mut prev2: Option<Token<'_>> = None;
    let mut depth = 0u32;
    let mut into_list = false;
    let mut body_end = first.end;
    let bounded = stop != usize::MAX;
    let mut pending = Some(first);
    loop {
        let t = match pending.take() {
            Some(t) => t,
            None => {
                let save = bounded.then(|| lx.clone());
                let Some(t) = lx.next_token() else { break };
                if let Some(save) = save.filter(|_| t.start >= stop) {
                    *lx = save;
                    break;
                }
                t
            }
        };
        if t.is_punct(b';') {
            break;
        }
        body_end = t.end;
        match t.kind {
            Tok::Punct => match t.text {
                b"(" => {
                    depth += 1;
                    if let Some(w) = prev.and_then(|p| p.word()) {
                        flags |= function_flags(w);
                    }
                }
                b")" => depth = depth.saturating_sub(1),
                _ => {}
            },
            Tok::Word => flags |= word_flags(&t, prev.as_ref(), prev2.as_ref()),
            Tok::UserVar => flags |= user_var(lx, ctx, depth, prev.as_ref(), into_list),
            Tok::SysVar => flags |= sys_var_flags(t.text),
            Tok::Quoted | Tok::Str | Tok::Host | Tok::Assign => {}
        }
        into_list = match t.kind {
            Tok::Word => t.is(b"INTO"),
            Tok::UserVar => into_list,
            Tok::Punct => into_list && t.is_punct(b','),
            _ => false,
        };
        if into_list && t.is(b"INTO") {
            if let Some(n) = lx.peek() {
                if n.kind == Tok::UserVar || n.is(b"OUTFILE") || n.is(b"DUMPFILE") {
                    flags |= Flags::SELECT_INTO;
                }
            }
        }
        prev2 = prev;
        prev = Some(t);
    }
    if lx.saw_exec {
        flags |= Flags::EXECUTABLE_COMMENT;
    }
    Scanned { flags, body_end }
}

/// Flags from a word and the two before it: locking clauses, sequences,
/// `SQL_CALC_FOUND_ROWS`. Dispatches on the length first: most words are
/// none of these.
fn word_flags(t: &Token<'_>, prev: Option<&Token<'_>>, prev2: Option<&Token<'_>>) -> Flags {
    let is_prev = |kw: &[u8]| prev.is_some_and(|p| p.is(kw));
    let is_prev2 = |kw: &[u8]| prev2.is_some_and(|p| p.is(kw));
    let w = t.text;
    let hit = match w.len() {
        3 => {
            w.eq_ignore_ascii_case(b"FOR")
                && is_prev(b"VALUE")
                && (is_prev2(b"NEXT") || is_prev2(b"PREVIOUS"))
        }
        4 => w.eq_ignore_ascii_case(b"MODE") && is_prev(b"SHARE") && is_prev2(b"IN"),
        5 => w.eq_ignore_ascii_case(b"SHARE") && is_prev(b"FOR"),
        6 => w.eq_ignore_ascii_case(b"UPDATE") && is_prev(b"FOR"),
        19 => {
            return flag_if(
                w.eq_ignore_ascii_case(b"SQL_CALC_FOUND_ROWS"),
                Flags::CALC_FOUND_ROWS,
            )
        }
        _ => false,
    };
    match (hit, w.len()) {
        (false, _) => Flags::default(),
        (true, 3) => Flags::SIDE_EFFECT_FN,
        (true, _) => Flags::LOCKING,
    }
}

fn flag_if(cond: bool, flag: Flags) -> Flags {
    if cond {
        flag
    } else {
        Flags::default()
    }
}

/// Whether `len` is the length of one of the names in `names`: a cheap
/// test before comparing the names themselves.
const fn lengths(names: &[&[u8]]) -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < names.len() {
        mask |= 1u64 << (names[i].len() % 64);
        i += 1;
    }
    mask
}

const LOCK_FUNCTIONS: &[&[u8]] = &[b"GET_LOCK", b"RELEASE_LOCK", b"RELEASE_ALL_LOCKS"];

const SIDE_EFFECT_FUNCTIONS: &[&[u8]] = &[
    b"LAST_INSERT_ID",
    b"FOUND_ROWS",
    b"ROW_COUNT",
    b"IS_USED_LOCK",
    b"IS_FREE_LOCK",
    b"NEXTVAL",
    b"LASTVAL",
    b"SETVAL",
    b"SLEEP",
    b"BENCHMARK",
    b"MASTER_POS_WAIT",
    b"SOURCE_POS_WAIT",
    b"MASTER_GTID_WAIT",
    b"WAIT_FOR_EXECUTED_GTID_SET",
    b"WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS",
    b"UUID_SHORT",
];

const FUNCTION_LENGTHS: u64 = lengths(LOCK_FUNCTIONS) | lengths(SIDE_EFFECT_FUNCTIONS);

/// Flags for a call of the function `name`: functions whose result
/// depends on the connection's history or that change server state.
fn function_flags(name: &[u8]) -> Flags {
    if name.len() >= 64 || FUNCTION_LENGTHS & (1 << name.len()) == 0 {
        return Flags::default();
    }
    let is = |list: &[&[u8]]| list.iter().any(|f| name.eq_ignore_ascii_case(f));
    if is(LOCK_FUNCTIONS) {
        Flags::SIDE_EFFECT_FN | Flags::LOCK_FN
    } else if is(SIDE_EFFECT_FUNCTIONS) {
        Flags::SIDE_EFFECT_FN
    } else {
        Flags::default()
    }
}

/// System variables whose value belongs to the connection's last
/// statements (`@@identity` is `LAST_INSERT_ID()`).
const CONNECTION_VARIABLES: &[&[u8]] = &[
    b"IDENTITY",
    b"LAST_INSERT_ID",
    b"LAST_GTID",
    b"WARNING_COUNT",
    b"ERROR_COUNT",
];

const CONNECTION_VARIABLE_LENGTHS: u64 = lengths(CONNECTION_VARIABLES);

/// Reading a connection-bound system variable is as side-effecting as
/// calling the functions.
fn sys_var_flags(text: &[u8]) -> Flags {
    let name = match text.iter().rposition(|b| *b == b'.') {
        Some(i) => text.get(i + 1..).unwrap_or(&[]),
        None => text,
    };
    if name.len() >= 64 || CONNECTION_VARIABLE_LENGTHS & (1 << name.len()) == 0 {
        return Flags::default();
    }
    flag_if(
        CONNECTION_VARIABLES
            .iter()
            .any(|v| name.eq_ignore_ascii_case(v)),
        Flags::SIDE_EFFECT_FN,
    )
}

/// A user variable is assigned by `@v :=`, in an `INTO` list, or as the
/// target of a `SET`; otherwise it is read.
fn user_var(
    lx: &Lexer<'_>,
    ctx: ScanCtx,
    depth: u32,
    prev: Option<&Token<'_>>,
    into_list: bool,
) -> Flags {
    let next = lx.peek();
    let assigned = into_list
        || next.is_some_and(|n| n.kind == Tok::Assign)
        || (ctx.set_stmt
            && depth == 0
            && prev.is_some_and(|p| p.is(b"SET") || p.is_punct(b','))
            && next.is_some_and(|n| n.is_punct(b'=')));
    if ctx.vars_assigned {
        Flags::USER_VAR_ASSIGN | Flags::USER_VAR_READ
    } else if assigned {
        Flags::USER_VAR_ASSIGN
    } else {
        Flags::USER_VAR_READ
    }
}

/// The statement's tokens (`first`, then those at `lx` that start before
/// `body_end`) joined back into text, without comments and without the
/// markers of executable comments, for `sqlparser`.
fn rebuild<'a>(first: Token<'a>, mut lx: Lexer<'a>, body_end: usize) -> String {
    let src = lx.src();
    let mut out = String::new();
    let mut last_end = None;
    let mut pending = Some(first);
    while let Some(t) = pending.take().or_else(|| lx.next_token()) {
        if t.start >= body_end {
            break;
        }
        if last_end.is_some_and(|e| e != t.start) {
            out.push(' ');
        }
        out.push_str(&String::from_utf8_lossy(
            src.get(t.start..t.end).unwrap_or(&[]),
        ));
        last_end = Some(t.end);
    }
    out
}
