//! `KILL` as MariaDB spells it, read into a typed statement so that the
//! session answers it itself (a KILL must never reach a backend with a
//! thread id the client chose):
//!
//! ```text
//! KILL [HARD | SOFT] [CONNECTION | QUERY] { n | CONNECTION_ID() }
//! KILL [HARD | SOFT] QUERY ID n
//! KILL [HARD | SOFT] [CONNECTION | QUERY] USER { user | 'user'@'host' | CURRENT_USER[()] }
//! ```
//!
//! Pure; nothing here can panic, whatever the input.

use super::lexer::{Lexer, Reading, Tok, Token};

/// What a KILL ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    /// The connection (the default).
    Connection,
    /// The statement it runs now; the connection goes on.
    Query,
}

/// Whom a KILL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillTarget {
    /// A connection id (a Causeway session id).
    Id(u64),
    /// `CONNECTION_ID()`: the session itself.
    Own,
    /// `QUERY ID n`: a query id (Causeway shows none, so none is known).
    QueryId(u64),
    /// `USER name[@host]`; `None` user stands for `CURRENT_USER`.
    User {
        user: Option<String>,
        host: Option<String>,
    },
}

/// A parsed `KILL` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillStatement {
    pub scope: KillScope,
    /// `HARD` / `SOFT` (MariaDB): whether the kill may interrupt
    /// uninterruptible work. Causeway's kill is the same either way.
    pub soft: bool,
    pub target: KillTarget,
}

/// Reads `sql` as one `KILL` statement (comments and a trailing `;`
/// allowed). `None` when it is not one, or uses a form not listed above
/// (an arbitrary expression as the id, for example).
pub fn kill_statement(sql: &str) -> Option<KillStatement> {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    if !lx.next_token()?.is(b"KILL") {
        return None;
    }
    let mut t = lx.next_token()?;
    let mut soft = false;
    if t.is(b"HARD") || t.is(b"SOFT") {
        soft = t.is(b"SOFT");
        t = lx.next_token()?;
    }
    let mut scope = KillScope::Connection;
    if t.is(b"CONNECTION") || t.is(b"QUERY") {
        if t.is(b"QUERY") {
            scope = KillScope::Query;
        }
        t = lx.next_token()?;
    }
    let target = if t.is(b"USER") {
        user_spec(&mut lx)?
    } else if t.is(b"ID") && scope == KillScope::Query {
        KillTarget::QueryId(number(&lx.next_token()?)?)
    } else if t.is(b"ID") {
        KillTarget::Id(number(&lx.next_token()?)?)
    } else if t.is(b"CONNECTION_ID") {
        empty_call(&mut lx)?;
        KillTarget::Own
    } else {
        KillTarget::Id(number(&t)?)
    };
    at_end(&mut lx).then_some(KillStatement {
        scope,
        soft,
        target,
    })
}

/// Whether any top-level statement of `sql` starts with `KILL` (so that a
/// multi-statement holding one is refused instead of sent to a backend).
pub fn has_kill(sql: &str) -> bool {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    let mut at_start = true;
    while let Some(t) = lx.next_token() {
        if at_start && t.is(b"KILL") {
            return true;
        }
        at_start = t.is_punct(b';');
    }
    false
}

/// A decimal id; `None` for anything else (a number too large for u64 is
/// no thread id anyone has: `u64::MAX`, which no session holds).
fn number(t: &Token<'_>) -> Option<u64> {
    let w = t.word()?;
    if w.is_empty() || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        std::str::from_utf8(w)
            .ok()?
            .parse::<u64>()
            .unwrap_or(u64::MAX),
    )
}

/// `(` `)` after a function name.
fn empty_call(lx: &mut Lexer<'_>) -> Option<()> {
    lx.next_token().filter(|t| t.is_punct(b'('))?;
    lx.next_token().filter(|t| t.is_punct(b')'))?;
    Some(())
}

/// Only an optional `;` is left.
fn at_end(lx: &mut Lexer<'_>) -> bool {
    match lx.next_token() {
        None => true,
        Some(t) if t.is_punct(b';') => lx.next_token().is_none(),
        Some(_) => false,
    }
}

/// `user`, `'user'`, `` `user` ``, each with an optional `@host` /
/// `@'host'`; or `CURRENT_USER[()]`.
fn user_spec(lx: &mut Lexer<'_>) -> Option<KillTarget> {
    let t = lx.next_token()?;
    if t.is(b"CURRENT_USER") {
        if lx.peek().is_some_and(|p| p.is_punct(b'(')) {
            empty_call(lx)?;
        }
        return Some(KillTarget::User {
            user: None,
            host: None,
        });
    }
    let user = match t.kind {
        Tok::Word | Tok::Quoted | Tok::Str => unquote(t.text),
        _ => return None,
    };
    let host = match lx.peek() {
        Some(h) if matches!(h.kind, Tok::Host | Tok::UserVar) => {
            lx.next_token();
            Some(unquote(host_text(h.text)))
        }
        _ => None,
    };
    Some(KillTarget::User {
        user: Some(user),
        host,
    })
}

/// The host of `@host` / `@'host'` without its quotes (the lexer keeps
/// them in some spellings).
fn host_text(t: &[u8]) -> &[u8] {
    let t = t.strip_prefix(b"@").unwrap_or(t);
    match (t.first(), t.last()) {
        (Some(a), Some(b)) if t.len() >= 2 && a == b && matches!(a, b'\'' | b'"' | b'`') => {
            t.get(1..t.len() - 1).unwrap_or(t)
        }
        _ => t,
    }
}

/// The content of a name or string with doubled quotes and backslash
/// escapes undone.
fn unquote(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let next = raw.get(i + 1).copied();
        match (b, next) {
            (b'\\', Some(n)) => {
                out.push(n);
                i += 2;
            }
            (b'\'' | b'"' | b'`', Some(n)) if n == b => {
                out.push(b);
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(scope: KillScope, target: KillTarget) -> Option<KillStatement> {
        Some(KillStatement {
            scope,
            soft: false,
            target,
        })
    }

    fn user(u: &str, h: Option<&str>) -> KillTarget {
        KillTarget::User {
            user: Some(u.into()),
            host: h.map(str::to_string),
        }
    }

    #[test]
    fn kill_forms() {
        use KillScope::*;
        use KillTarget::*;
        let cases: &[(&str, Option<KillStatement>)] = &[
            ("KILL 5", k(Connection, Id(5))),
            ("kill connection 5;", k(Connection, Id(5))),
            ("/* x */ KILL QUERY 17", k(Query, Id(17))),
            ("KILL HARD QUERY 3", k(Query, Id(3))),
            ("KILL CONNECTION ID 9", k(Connection, Id(9))),
            ("KILL QUERY ID 9", k(Query, QueryId(9))),
            ("KILL CONNECTION_ID()", k(Connection, Own)),
            ("KILL QUERY connection_id ( )", k(Query, Own)),
            ("KILL USER bob", k(Connection, user("bob", None))),
            (
                "KILL QUERY USER 'bob'@'%'",
                k(Query, user("bob", Some("%"))),
            ),
            (
                "KILL USER `b``ob`@localhost",
                k(Connection, user("b`ob", Some("localhost"))),
            ),
            (
                "KILL USER CURRENT_USER()",
                k(
                    Connection,
                    User {
                        user: None,
                        host: None,
                    },
                ),
            ),
            ("KILL 99999999999999999999999", k(Connection, Id(u64::MAX))),
            ("KILL 5 + 1", None),
            ("KILL", None),
            ("KILL @a", None),
            ("KILL 5; SELECT 1", None),
            ("SELECT 1", None),
            ("KILL QUERY", None),
        ];
        for (sql, want) in cases {
            assert_eq!(&kill_statement(sql), want, "{sql}");
        }
        assert!(kill_statement("KILL SOFT 2").unwrap().soft);
    }

    #[test]
    fn kill_in_multi_statements() {
        assert!(has_kill("SELECT 1; KILL 5"));
        assert!(has_kill("kill 5"));
        assert!(!has_kill("SELECT 'KILL 5'; SELECT kill FROM t"));
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let words: &[&[u8]] = &[
            b"KILL ",
            b"QUERY ",
            b"USER ",
            b"ID ",
            b"'",
            b"@",
            b"`",
            b"\\",
            b";",
            b"9",
            b"(",
            b")",
            b"\xff",
            b"CONNECTION_ID",
            b"\xc3\xa9",
        ];
        for _ in 0..20_000 {
            let mut s = Vec::new();
            for _ in 0..(seed % 8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.extend_from_slice(words[(seed % words.len() as u64) as usize]);
            }
            let text = String::from_utf8_lossy(&s);
            let _ = kill_statement(&text);
            let _ = has_kill(&text);
        }
    }
}
