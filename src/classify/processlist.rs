//! Where a statement names the process list, so that Causeway can answer
//! it about its own client sessions: `SHOW [FULL] PROCESSLIST`, and the
//! byte spans of every `information_schema.PROCESSLIST` table reference in
//! a query, for the session to replace with a derived table of its rows.
//!
//! Everything works on tokens from the lexer: strings, comments and
//! quoted names that merely contain the words are never matched, and the
//! spans are byte offsets into the text as given.

use super::lexer::{Lexer, Reading, Tok, Token};

/// `SHOW [FULL] PROCESSLIST` (and nothing else but a trailing `;`):
/// `Some(full)`.
pub fn show_processlist(sql: &[u8]) -> Option<bool> {
    let mut lx = Lexer::new(sql, Reading::DEFAULT);
    let first = lx.next_token()?;
    if !first.is(b"SHOW") {
        return None;
    }
    show_processlist_tail(lx)
}

/// After `SHOW`: `[FULL] PROCESSLIST [;]` to the end, `Some(full)`.
pub(crate) fn show_processlist_tail(mut lx: Lexer<'_>) -> Option<bool> {
    let mut t = lx.next_token()?;
    let full = t.is(b"FULL");
    if full {
        t = lx.next_token()?;
    }
    if !t.is(b"PROCESSLIST") {
        return None;
    }
    while let Some(t) = lx.next_token() {
        if !t.is_punct(b';') {
            return None;
        }
    }
    Some(full)
}

/// One reference to `information_schema.PROCESSLIST` in a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcesslistRef {
    /// Byte span of the reference, the qualifier included
    /// (`` information_schema . `PROCESSLIST` ``).
    pub start: usize,
    pub end: usize,
    /// What the reference is and so what replaces it.
    pub role: RefRole,
}

/// How a processlist reference is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefRole {
    /// A table in a `FROM`/`JOIN` list without an alias: replace with a
    /// derived table named `PROCESSLIST`.
    Table,
    /// A table followed by its alias (`AS p` or `p`): replace with a
    /// derived table, the alias names it.
    AliasedTable,
    /// The qualifier of a column (`information_schema.PROCESSLIST.ID`):
    /// replace with `PROCESSLIST`.
    ColumnQualifier,
}

/// Every `information_schema.PROCESSLIST` reference of `sql`, in order,
/// when every statement holding one is a query (`SELECT`, `WITH`, or a
/// parenthesized query): the server then reads the derived table in
/// their place. `current_db_is_schema`: the session's database is
/// `information_schema`, so an unqualified `PROCESSLIST` in a `FROM`
/// list is the table too. `None` when there is nothing to rewrite, when a
/// reference is in another statement (a `CREATE VIEW` must not capture
/// today's sessions), or when the server could read the text otherwise
/// (`NO_BACKSLASH_ESCAPES`, version-gated comments) and the readings
/// disagree.
pub fn processlist_refs(sql: &[u8], current_db_is_schema: bool) -> Option<Vec<ProcesslistRef>> {
    // Almost no statement names it: skip the lexer for those.
    if !sql
        .windows(11)
        .any(|w| w.eq_ignore_ascii_case(b"processlist"))
    {
        return None;
    }
    let (refs, ambiguous) = refs_in(sql, Reading::DEFAULT, current_db_is_schema)?;
    if ambiguous {
        for reading in Reading::ALL.into_iter().skip(1) {
            if refs_in(sql, reading, current_db_is_schema).map(|r| r.0) != Some(refs.clone()) {
                return None;
            }
        }
    }
    (!refs.is_empty()).then_some(refs)
}

/// The references under one reading, and whether another reading could
/// see other tokens; `None` if one is outside a query.
fn refs_in(sql: &[u8], reading: Reading, bare: bool) -> Option<(Vec<ProcesslistRef>, bool)> {
    let mut lx = Lexer::new(sql, reading);
    let mut out = Vec::new();
    // Per parenthesis depth: inside a FROM list (where a bare name and a
    // name after `,` are tables).
    let mut from: Vec<bool> = vec![false];
    let mut query_statement: Option<bool> = None;
    let mut prev: Option<Token<'_>> = None;
    while let Some(t) = lx.next_token() {
        if query_statement.is_none() && !t.is_punct(b';') {
            query_statement = Some(t.is_punct(b'(') || t.is(b"SELECT") || t.is(b"WITH"));
        }
        if t.is_punct(b';') {
            query_statement = None;
            from = vec![false];
        } else if t.is_punct(b'(') {
            from.push(false);
        } else if t.is_punct(b')') {
            if from.len() > 1 {
                from.pop();
            }
        } else if let Some(w) = t.word() {
            if let Some(f) = from.last_mut() {
                if w.eq_ignore_ascii_case(b"FROM") || w.eq_ignore_ascii_case(b"JOIN") {
                    *f = true;
                } else if ends_from_list(w) {
                    *f = false;
                }
            }
        }
        let in_from = from.last().copied().unwrap_or(false);
        if let Some(r) = reference_at(t, &mut lx, prev, in_from, bare) {
            if query_statement != Some(true) {
                return None;
            }
            out.push(r);
            prev = None;
            continue;
        }
        prev = Some(t);
    }
    Some((out, lx.ambiguous()))
}

/// Words that end a `FROM` list at their depth.
fn ends_from_list(w: &[u8]) -> bool {
    const ENDS: &[&[u8]] = &[
        b"WHERE",
        b"GROUP",
        b"HAVING",
        b"ORDER",
        b"LIMIT",
        b"ON",
        b"USING",
        b"UNION",
        b"EXCEPT",
        b"INTERSECT",
        b"WINDOW",
        b"FOR",
        b"LOCK",
        b"INTO",
        b"SELECT",
        b"RETURNING",
        b"SET",
    ];
    ENDS.iter().any(|e| w.eq_ignore_ascii_case(e))
}

/// Whether a token is the name `name` (unquoted or backquoted).
fn is_name(t: &Token<'_>, name: &[u8]) -> bool {
    matches!(t.kind, Tok::Word | Tok::Quoted) && t.text.eq_ignore_ascii_case(name)
}

/// A reference starting at `t`: `information_schema . PROCESSLIST`, or a
/// bare `PROCESSLIST` as a table in a `FROM` list when `bare`. Consumes
/// its tokens.
fn reference_at<'a>(
    t: Token<'a>,
    lx: &mut Lexer<'a>,
    prev: Option<Token<'a>>,
    in_from: bool,
    bare: bool,
) -> Option<ProcesslistRef> {
    // Not a part of a longer qualified name (`x.information_schema`).
    if prev.is_some_and(|p| p.is_punct(b'.')) {
        return None;
    }
    let mut probe = lx.clone();
    let end = if is_name(&t, b"information_schema") {
        probe.next_token().filter(|d| d.is_punct(b'.'))?;
        probe
            .next_token()
            .filter(|n| is_name(n, b"PROCESSLIST"))?
            .end
    } else if bare && in_from && is_name(&t, b"PROCESSLIST") {
        let after_list_start = prev.is_some_and(|p| {
            p.is(b"FROM") || p.is(b"JOIN") || p.is_punct(b',') || p.is_punct(b'(')
        });
        if !after_list_start {
            return None;
        }
        t.end
    } else {
        return None;
    };
    *lx = probe.clone();
    let role = match probe.next_token() {
        Some(n) if n.is_punct(b'.') => RefRole::ColumnQualifier,
        Some(n) if n.is(b"AS") => RefRole::AliasedTable,
        Some(n) if n.kind == Tok::Quoted => RefRole::AliasedTable,
        Some(n) if n.word().is_some_and(|w| !follows_table(w)) => RefRole::AliasedTable,
        _ => RefRole::Table,
    };
    Some(ProcesslistRef {
        start: t.start,
        end,
        role,
    })
}

/// Words that may follow a table reference without being its alias.
fn follows_table(w: &[u8]) -> bool {
    const AFTER: &[&[u8]] = &[
        b"WHERE",
        b"GROUP",
        b"HAVING",
        b"ORDER",
        b"LIMIT",
        b"ON",
        b"USING",
        b"UNION",
        b"EXCEPT",
        b"INTERSECT",
        b"WINDOW",
        b"FOR",
        b"LOCK",
        b"INTO",
        b"JOIN",
        b"INNER",
        b"CROSS",
        b"LEFT",
        b"RIGHT",
        b"NATURAL",
        b"STRAIGHT_JOIN",
        b"FULL",
        b"OUTER",
        b"USE",
        b"IGNORE",
        b"FORCE",
        b"PARTITION",
        b"PROCEDURE",
        b"OFFSET",
        b"FETCH",
        b"RETURNING",
    ];
    AFTER.iter().any(|a| w.eq_ignore_ascii_case(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of each reference with its role.
    fn spans(sql: &str, bare: bool) -> Option<Vec<(&str, RefRole)>> {
        processlist_refs(sql.as_bytes(), bare).map(|v| {
            v.iter()
                .map(|r| (sql.get(r.start..r.end).unwrap_or("?"), r.role))
                .collect()
        })
    }

    use RefRole::{AliasedTable as A, ColumnQualifier as C, Table as T};

    #[test]
    fn show_processlist_forms() {
        for (sql, want) in [
            ("SHOW PROCESSLIST", Some(false)),
            ("show full processlist;", Some(true)),
            ("  /* x */ Show\n FULL\tProcessList ; ", Some(true)),
            ("SHOW PROCESSLIST WHERE 1", None),
            ("SHOW CAUSEWAY PROCESSLIST", None),
            ("SHOW TABLES", None),
            ("SELECT 'SHOW PROCESSLIST'", None),
            ("SHOW `PROCESSLIST`", None),
            ("SHOW", None),
            ("", None),
        ] {
            assert_eq!(show_processlist(sql.as_bytes()), want, "{sql}");
        }
    }

    #[test]
    fn finds_qualified_references_in_many_spellings() {
        let qualified = [
            "SELECT * FROM information_schema.PROCESSLIST",
            "select * from INFORMATION_SCHEMA.processlist where id = 1",
            "SELECT * FROM `information_schema`.`PROCESSLIST` WHERE ID = 1",
            "SELECT * FROM information_schema . /* c */ ProcessList ORDER BY ID",
            "SELECT * FROM `INFORMATION_SCHEMA`.processlist LIMIT 1",
            "SELECT * FROM information_schema.PROCESSLIST;",
        ];
        for sql in qualified {
            let got = spans(sql, false).unwrap_or_else(|| panic!("{sql}"));
            assert_eq!(got.len(), 1, "{sql}");
            assert_eq!(got[0].1, T, "{sql}");
            assert!(
                got[0].0.to_ascii_lowercase().ends_with("processlist`")
                    || got[0].0.to_ascii_lowercase().ends_with("processlist")
            );
            assert!(got[0]
                .0
                .trim_start_matches('`')
                .to_ascii_lowercase()
                .starts_with("information_schema"));
        }
    }

    #[test]
    fn aliases_and_qualifiers() {
        assert_eq!(
            spans(
                "SELECT p.ID FROM information_schema.PROCESSLIST p WHERE p.ID=1",
                false
            ),
            Some(vec![("information_schema.PROCESSLIST", A)])
        );
        assert_eq!(
            spans("SELECT * FROM information_schema.PROCESSLIST AS p", false),
            Some(vec![("information_schema.PROCESSLIST", A)])
        );
        assert_eq!(
            spans("SELECT * FROM information_schema.PROCESSLIST `p`", false),
            Some(vec![("information_schema.PROCESSLIST", A)])
        );
        assert_eq!(
            spans(
                "SELECT information_schema.PROCESSLIST.ID FROM information_schema.PROCESSLIST",
                false
            ),
            Some(vec![
                ("information_schema.PROCESSLIST", C),
                ("information_schema.PROCESSLIST", T)
            ])
        );
        assert_eq!(
            spans(
                "SELECT * FROM information_schema.PROCESSLIST JOIN t ON 1 \
                 LEFT JOIN information_schema.processlist x USING (ID)",
                false
            ),
            Some(vec![
                ("information_schema.PROCESSLIST", T),
                ("information_schema.processlist", A)
            ])
        );
        assert_eq!(
            spans(
                "SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST) AS n",
                false
            ),
            Some(vec![("information_schema.PROCESSLIST", T)])
        );
    }

    #[test]
    fn words_in_strings_comments_and_other_names_are_not_references() {
        for sql in [
            "SELECT 'information_schema.PROCESSLIST'",
            "SELECT \"FROM information_schema.PROCESSLIST\"",
            "SELECT 1 /* FROM information_schema.PROCESSLIST */",
            "SELECT 1 -- FROM information_schema.PROCESSLIST",
            "SELECT 1 # FROM information_schema.PROCESSLIST",
            "SELECT `information_schema.PROCESSLIST` FROM t",
            "SELECT * FROM information_schema.TABLES WHERE TABLE_NAME = 'PROCESSLIST'",
            "SELECT * FROM mydb.processlist",
            "SELECT * FROM processlist",
            "SELECT processlist FROM t",
            "SHOW PROCESSLIST",
            "SELECT 1",
        ] {
            assert_eq!(spans(sql, false), None, "{sql}");
        }
    }

    #[test]
    fn bare_names_count_only_in_information_schema_and_in_from_lists() {
        assert_eq!(
            spans("SELECT * FROM PROCESSLIST WHERE ID = 3", true),
            Some(vec![("PROCESSLIST", T)])
        );
        assert_eq!(
            spans("SELECT * FROM t, `processlist` p", true),
            Some(vec![("`processlist`", A)])
        );
        assert_eq!(spans("SELECT * FROM PROCESSLIST", false), None);
        assert_eq!(spans("SELECT processlist FROM t", true), None);
        assert_eq!(
            spans("SELECT a, processlist FROM t WHERE processlist = 1", true),
            None
        );
    }

    #[test]
    fn only_queries_are_rewritten() {
        for sql in [
            "CREATE VIEW v AS SELECT * FROM information_schema.PROCESSLIST",
            "DESCRIBE information_schema.PROCESSLIST",
            "SHOW COLUMNS FROM information_schema.PROCESSLIST",
            "INSERT INTO t SELECT ID FROM information_schema.PROCESSLIST",
            "SELECT 1; CREATE TABLE t AS SELECT * FROM information_schema.PROCESSLIST",
        ] {
            assert_eq!(spans(sql, false), None, "{sql}");
        }
        assert_eq!(
            spans(
                "SET @a = 1; SELECT * FROM information_schema.PROCESSLIST",
                false
            ),
            Some(vec![("information_schema.PROCESSLIST", T)])
        );
        assert_eq!(
            spans(
                "WITH x AS (SELECT * FROM information_schema.PROCESSLIST) SELECT * FROM x",
                false
            ),
            Some(vec![("information_schema.PROCESSLIST", T)])
        );
        assert_eq!(
            spans("(SELECT ID FROM information_schema.PROCESSLIST)", false),
            Some(vec![("information_schema.PROCESSLIST", T)])
        );
    }

    #[test]
    fn readings_that_disagree_are_not_rewritten() {
        // Under NO_BACKSLASH_ESCAPES the string ends at the backslash and
        // the reference is SQL; by default it is inside the string.
        assert_eq!(
            spans(
                "SELECT 'a\\' FROM information_schema.PROCESSLIST -- '",
                false
            ),
            None
        );
        // By default the reference follows a string; without backslash
        // escapes it is inside one.
        assert_eq!(
            spans("SELECT 'it\\'s' FROM information_schema.PROCESSLIST", false),
            None
        );
        // No backslash: every reading agrees.
        assert!(spans("SELECT 'it''s' FROM information_schema.PROCESSLIST", false).is_some());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let words: &[&[u8]] = &[
            b"information_schema",
            b".",
            b"PROCESSLIST",
            b" ",
            b"`",
            b"'",
            b"FROM",
            b"(",
            b")",
            b";",
            b"SELECT",
            b"/*",
            b"*/",
            b"\\",
            b"\xff",
            b"AS",
        ];
        for _ in 0..5000 {
            let mut s = Vec::new();
            for _ in 0..(x % 12) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.extend_from_slice(words[(x % words.len() as u64) as usize]);
            }
            for r in processlist_refs(&s, x.is_multiple_of(2)).unwrap_or_default() {
                assert!(r.start < r.end && r.end <= s.len());
            }
            let _ = show_processlist(&s);
        }
    }
}
