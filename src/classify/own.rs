//! The statements Causeway answers itself, read with the lexer:
//! `EXPLAIN ROUTE <statement>`, `SET CAUSEWAY CONSISTENCY [=] <level>`,
//! `SHOW CAUSEWAY CONSISTENCY | TOKEN | PROCESSLIST`, `CAUSEWAY SWITCHOVER
//! TO 'name'`. Comments may stand anywhere; a trailing `;` is allowed.

use super::lexer::{Lexer, Reading, Tok};

/// One of Causeway's own statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnStatement {
    /// `SET CAUSEWAY CONSISTENCY [=] <level>|DEFAULT` (quotes optional), as
    /// written.
    SetConsistency(String),
    /// `SHOW CAUSEWAY CONSISTENCY`.
    ShowConsistency,
    /// `SHOW CAUSEWAY TOKEN`.
    ShowToken,
    /// `SHOW CAUSEWAY PROCESSLIST`.
    ShowProcesslist,
    /// `CAUSEWAY SWITCHOVER TO 'name'` (or a bare or back-quoted name).
    Switchover(String),
}

/// Reads `SET CAUSEWAY ..`, `SHOW CAUSEWAY ..` and `CAUSEWAY SWITCHOVER ..`.
pub fn own_statement(sql: impl AsRef<[u8]>) -> Option<OwnStatement> {
    let src = sql.as_ref();
    let mut lx = Lexer::new(src, Reading::DEFAULT);
    let verb = lx.next_token()?;
    if verb.is(b"CAUSEWAY") {
        return switchover(&mut lx);
    }
    if !lx.next_token()?.is(b"CAUSEWAY") {
        return None;
    }
    let what = lx.next_token()?;
    if verb.is(b"SHOW") {
        let own = if what.is(b"CONSISTENCY") {
            OwnStatement::ShowConsistency
        } else if what.is(b"TOKEN") {
            OwnStatement::ShowToken
        } else if what.is(b"PROCESSLIST") {
            OwnStatement::ShowProcesslist
        } else {
            return None;
        };
        return at_end(&mut lx).then_some(own);
    }
    if !(verb.is(b"SET") && what.is(b"CONSISTENCY")) {
        return None;
    }
    if lx.peek().is_some_and(|t| t.is_punct(b'=')) {
        lx.next_token();
    }
    // The value: the text of its tokens (`bounded:200ms` is three), up to a
    // `;` or the end; a quoted value without its quotes.
    let first = lx.next_token().filter(|t| !t.is_punct(b';'))?;
    let mut end = first.end;
    let mut quoted = matches!(first.kind, Tok::Str | Tok::Quoted).then_some(first.text);
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            if !at_end(&mut lx) {
                return None;
            }
            break;
        }
        end = t.end;
        quoted = None;
    }
    let value = match quoted {
        Some(text) => text,
        None => src.get(first.start..end)?,
    };
    // An empty value (`''`) is a value: refused as a bad level later.
    let value = String::from_utf8_lossy(value).trim().to_string();
    Some(OwnStatement::SetConsistency(value))
}

/// `SWITCHOVER TO <name>` after `CAUSEWAY`.
fn switchover(lx: &mut Lexer<'_>) -> Option<OwnStatement> {
    if !(lx.next_token()?.is(b"SWITCHOVER") && lx.next_token()?.is(b"TO")) {
        return None;
    }
    let name = lx.next_token()?;
    if !matches!(name.kind, Tok::Str | Tok::Quoted | Tok::Word) {
        return None;
    }
    let name = String::from_utf8_lossy(name.text).to_string();
    at_end(lx).then_some(OwnStatement::Switchover(name))
}

/// Whether only an optional `;` is left.
fn at_end(lx: &mut Lexer<'_>) -> bool {
    match lx.next_token() {
        None => true,
        Some(t) => t.is_punct(b';') && lx.next_token().is_none(),
    }
}

/// The statement of `EXPLAIN ROUTE <statement>`, with its own leading
/// comments (they carry its hints), trimmed.
pub fn explain_route_target(sql: &str) -> Option<&str> {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    if !lx.next_token()?.is(b"EXPLAIN") {
        return None;
    }
    let route = lx.next_token().filter(|t| t.is(b"ROUTE"))?;
    // The text after `ROUTE` must start with whitespace or a comment, as
    // `EXPLAIN ROUTE(..)` is not this statement.
    let rest = sql.get(route.end..)?;
    rest.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '#' || c == '-')
        .then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_anywhere_and_nothing_after() {
        assert_eq!(
            own_statement("SHOW /* x */ CAUSEWAY -- y\n PROCESSLIST ;"),
            Some(OwnStatement::ShowProcesslist)
        );
        assert_eq!(
            own_statement("SET CAUSEWAY CONSISTENCY /* c */ = \"session\""),
            Some(OwnStatement::SetConsistency("session".into()))
        );
        assert_eq!(
            own_statement("SET CAUSEWAY CONSISTENCY = global; SELECT 1"),
            None
        );
        assert_eq!(own_statement("SHOW CAUSEWAY TOKEN x"), None);
        assert_eq!(
            own_statement("SET CAUSEWAY CONSISTENCY = ''"),
            Some(OwnStatement::SetConsistency(String::new()))
        );
        assert_eq!(own_statement(b"SET CAUSEWAY CONSISTENCY = '\xff'"), {
            Some(OwnStatement::SetConsistency("\u{fffd}".into()))
        });
        assert_eq!(
            own_statement("causeway /* c */ switchover to 'replica1';"),
            Some(OwnStatement::Switchover("replica1".into()))
        );
        assert_eq!(
            own_statement("CAUSEWAY SWITCHOVER TO `replica 2`"),
            Some(OwnStatement::Switchover("replica 2".into()))
        );
        assert_eq!(own_statement("CAUSEWAY SWITCHOVER replica1"), None);
        assert_eq!(own_statement("CAUSEWAY SWITCHOVER TO a b"), None);
        assert_eq!(explain_route_target("EXPLAIN ROUTE(1)"), None);
        assert_eq!(
            explain_route_target("explain /* a */ route /*FORCE_SLAVE*/ SELECT 1;"),
            Some("/*FORCE_SLAVE*/ SELECT 1;")
        );
    }
}
