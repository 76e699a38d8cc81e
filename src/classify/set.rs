//! `SET` statements: session state, user variables, transactions, global
//! state, and MariaDB's `SET STATEMENT .. FOR <stmt>`.
//!
//! The rule, per assignment in the list:
//! - `GLOBAL x`, `PERSIST x`, `PERSIST_ONLY x`, `@@global.x`,
//!   `@@persist.x` change the server: the statement is a `Write` with the
//!   `GLOBAL` flag, whatever else it assigns.
//! - `@v` is a user variable.
//! - anything else (`x`, `SESSION x`, `LOCAL x`, `@@x`, `@@session.x`,
//!   `NAMES ..`, `CHARACTER SET ..`, `CHARSET ..`) is session state.
//!
//! Only user variables: `SetUserVar`. Only `autocommit` set to a literal
//! (`0 1 ON OFF TRUE FALSE`, quoted or not): `SetAutocommit`. Any other
//! mix: `SetSession` (with `USER_VAR_ASSIGN` when a user variable is among
//! them; the server's status flags tell the new autocommit). A list the
//! fast path cannot follow is `Unknown`.

use super::head::{Head, Wrapper};
use super::lexer::{Lexer, Tok, Token, Upper};
use super::scan::ScanCtx;
use super::{Flags, Kind};

fn head(kind: Kind, flags: Flags) -> Head<'static> {
    Head::Kind(
        kind,
        flags,
        ScanCtx {
            set_stmt: true,
            ..ScanCtx::default()
        },
    )
}

/// Classifies a `SET` statement; `lx` is positioned after `SET`.
pub(crate) fn classify(lx: Lexer<'_>) -> Head<'_> {
    let Some(first) = lx.peek() else {
        return head(Kind::Unknown, Flags::default());
    };
    let none = Flags::default();
    let second = || {
        let mut l = lx.clone();
        l.next_token();
        l.peek()
    };
    let second_is = |kw: &[u8]| second().is_some_and(|t| t.is(kw));
    let Some(w) = first.word() else {
        return assignments(lx);
    };
    match Upper::new(w).as_bytes() {
        b"CAUSEWAY" => head(Kind::Admin, none),
        b"TRANSACTION" => head(Kind::SetTransaction, none),
        b"SESSION" | b"LOCAL" if second_is(b"TRANSACTION") => head(Kind::SetTransaction, none),
        b"GLOBAL" | b"PERSIST" | b"PERSIST_ONLY" if second_is(b"TRANSACTION") => {
            head(Kind::SetTransaction, Flags::GLOBAL)
        }
        b"PASSWORD" => head(Kind::Write, none),
        b"DEFAULT" if second_is(b"ROLE") => head(Kind::Write, none),
        b"ROLE" => head(Kind::SetSession, none),
        b"RESOURCE" if second_is(b"GROUP") => head(Kind::SetSession, none),
        b"STATEMENT" => statement_for(lx),
        _ => assignments(lx),
    }
}

/// `SET STATEMENT a=1 [, ...] FOR <stmt>`: the statement after the first
/// top-level `FOR`.
fn statement_for(mut lx: Lexer<'_>) -> Head<'_> {
    lx.next_token(); // STATEMENT
    let mut depth = 0u32;
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            break;
        } else if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && t.is(b"FOR") {
            return Head::Wrap(Wrapper::SetStatement, lx);
        }
    }
    head(Kind::Unknown, Flags::default())
}

/// What the assignments of a `SET` list touch.
#[derive(Default)]
struct Targets {
    user: bool,
    global: bool,
    /// Session state other than `autocommit` set to a literal.
    session: bool,
    /// The last `autocommit = <literal>`.
    autocommit: Option<bool>,
}

/// Scope of one assignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    User,
    Session,
    Global,
}

fn assignments(mut lx: Lexer<'_>) -> Head<'_> {
    let mut targets = Targets::default();
    loop {
        match assignment(&mut lx, &mut targets) {
            Some(End::Comma) => continue,
            Some(End::Statement) => break,
            None => return head(Kind::Unknown, Flags::default()),
        }
    }
    let t = targets;
    if t.global {
        head(Kind::Write, Flags::GLOBAL)
    } else if t.user && !t.session && t.autocommit.is_none() {
        head(Kind::SetUserVar, Flags::USER_VAR_ASSIGN)
    } else if let (Some(on), false, false) = (t.autocommit, t.user, t.session) {
        head(Kind::SetAutocommit(on), Flags::default())
    } else if t.user {
        head(Kind::SetSession, Flags::USER_VAR_ASSIGN)
    } else {
        head(Kind::SetSession, Flags::default())
    }
}

/// Reads one assignment and the `,` or `;` after it. `None` if the tokens
/// are not an assignment.
fn assignment(lx: &mut Lexer<'_>, targets: &mut Targets) -> Option<End> {
    let t = lx.next_token()?;
    let (scope, name) = match t.kind {
        Tok::UserVar => (Scope::User, None),
        Tok::SysVar => sys_var_target(t.text),
        Tok::Quoted => (Scope::Session, None),
        Tok::Word => match Upper::new(t.text).as_bytes() {
            b"NAMES" | b"CHARSET" => return session_value(lx, targets),
            b"CHARACTER" if lx.peek().is_some_and(|n| n.is(b"SET")) => {
                lx.next_token();
                return session_value(lx, targets);
            }
            b"GLOBAL" | b"PERSIST" | b"PERSIST_ONLY" => (Scope::Global, lx.next_token()),
            b"SESSION" | b"LOCAL" => (Scope::Session, lx.next_token()),
            _ => (Scope::Session, Some(t)),
        },
        _ => return None,
    };
    // The rest of the name (`keycache1.key_buffer_size`), then `=` or `:=`.
    let name_is_autocommit = name.is_some_and(|n| n.is(b"AUTOCOMMIT"))
        && lx
            .peek()
            .is_some_and(|n| n.is_punct(b'=') || n.kind == Tok::Assign);
    loop {
        let n = lx.next_token()?;
        if n.is_punct(b'=') || n.kind == Tok::Assign {
            break;
        }
        if n.is_punct(b',') || n.is_punct(b';') {
            return None;
        }
    }
    match scope {
        Scope::User => targets.user = true,
        Scope::Global => targets.global = true,
        Scope::Session => {}
    }
    let value = value_tokens(lx);
    if scope == Scope::Session {
        match (
            name_is_autocommit,
            value.single.and_then(|v| literal_bool(&v)),
        ) {
            (true, Some(on)) => targets.autocommit = Some(on),
            _ => targets.session = true,
        }
    }
    (value.count > 0).then_some(value.end)
}

/// `@@x`, `@@session.x`, `@@local.x`, `@@global.x`, `@@persist.x`,
/// `@@persist_only.x`. The name is checked for `autocommit` by the caller
/// through a synthetic word token.
fn sys_var_target(text: &[u8]) -> (Scope, Option<Token<'_>>) {
    let (scope_part, name) = match text.iter().position(|b| *b == b'.') {
        Some(i) => (
            text.get(..i).unwrap_or(&[]),
            text.get(i + 1..).unwrap_or(&[]),
        ),
        None => (&[][..], text),
    };
    let scope = match Upper::new(scope_part).as_bytes() {
        b"GLOBAL" | b"PERSIST" | b"PERSIST_ONLY" => Scope::Global,
        _ => Scope::Session,
    };
    let word = Token {
        kind: Tok::Word,
        text: name,
        start: 0,
        end: 0,
    };
    (scope, Some(word))
}

/// `NAMES ..` / `CHARACTER SET ..`: session state up to the next top-level
/// comma.
fn session_value(lx: &mut Lexer<'_>, targets: &mut Targets) -> Option<End> {
    targets.session = true;
    let value = value_tokens(lx);
    (value.count > 0).then_some(value.end)
}

/// What ended a value.
#[derive(Clone, Copy)]
enum End {
    /// A top-level `,`: another assignment follows.
    Comma,
    /// `;` or the end of the input.
    Statement,
}

/// The tokens of a value, through the next top-level `,` or the end of
/// the statement.
struct Value<'a> {
    count: usize,
    /// The token, if the value is one token.
    single: Option<Token<'a>>,
    end: End,
}

fn value_tokens<'a>(lx: &mut Lexer<'a>) -> Value<'a> {
    let mut depth = 0u32;
    let mut count = 0;
    let mut first = None;
    let end = loop {
        let Some(t) = lx.next_token() else {
            break End::Statement;
        };
        if t.is_punct(b';') {
            break End::Statement;
        }
        if depth == 0 && t.is_punct(b',') {
            break End::Comma;
        }
        if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth = depth.saturating_sub(1);
        }
        count += 1;
        first.get_or_insert(t);
    };
    Value {
        count,
        single: if count == 1 { first } else { None },
        end,
    }
}

/// `0 1 ON OFF TRUE FALSE`, bare or quoted.
fn literal_bool(t: &Token<'_>) -> Option<bool> {
    if !matches!(t.kind, Tok::Word | Tok::Str) {
        return None;
    }
    match Upper::new(t.text).as_bytes() {
        b"1" | b"ON" | b"TRUE" => Some(true),
        b"0" | b"OFF" | b"FALSE" => Some(false),
        _ => None,
    }
}
