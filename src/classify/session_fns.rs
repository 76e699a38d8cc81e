//! What a statement does with state that belongs to a client connection
//! rather than to the server: the user variables it names, whether it reads
//! `LAST_INSERT_ID()`, the `ROW_COUNT()` calls to answer from the session's
//! own last statement, and the user-level locks it takes and releases.
//! The transaction-level pool needs these to move a session between
//! backend connections. Pure and allocation-light, like the rest of
//! `classify`.

use super::lexer::{Lexer, Reading, Tok, Token};

/// The user variables `sql` names (lower-case, each once, in order).
pub fn user_var_names(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    while let Some(t) = lx.next_token() {
        if t.kind != Tok::UserVar || t.text.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(t.text).to_lowercase();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Whether `sql` reads the connection's last insert id:
/// `LAST_INSERT_ID()` without an argument, `@@last_insert_id`, `@@identity`.
pub fn reads_last_insert_id(sql: &str) -> bool {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    while let Some(t) = lx.next_token() {
        match t.kind {
            Tok::Word if t.is(b"LAST_INSERT_ID") && is_empty_call(&mut lx).is_some() => {
                return true;
            }
            Tok::SysVar => {
                let name = t.text.rsplit(|&b| b == b'.').next().unwrap_or(t.text);
                if name.eq_ignore_ascii_case(b"last_insert_id")
                    || name.eq_ignore_ascii_case(b"identity")
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// If the next tokens are `(` `)`, consumes them and returns the end of `)`.
fn is_empty_call(lx: &mut Lexer<'_>) -> Option<usize> {
    let open = lx.peek().filter(|t| t.is_punct(b'('))?;
    let mut probe = lx.clone();
    probe.next_token();
    let close = probe.next_token().filter(|t| t.is_punct(b')'))?;
    let _ = open;
    *lx = probe;
    Some(close.end)
}

/// `sql` with every `ROW_COUNT()` of its first statement replaced by
/// `value`; `None` if there is none. A call that makes up a whole item of a
/// select list keeps its column name (`3 AS `ROW_COUNT()``), so clients
/// that read the column by name see no difference.
pub fn substitute_row_count(sql: &str, value: i64) -> Option<String> {
    let src = sql.as_bytes();
    let mut lx = Lexer::new(src, Reading::DEFAULT);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut prev: Option<Token<'_>> = None;
    let mut depth = 0i32;
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') && depth == 0 {
            break;
        }
        if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth -= 1;
        }
        if t.is(b"ROW_COUNT") {
            if let Some(end) = is_empty_call(&mut lx) {
                let item_start = prev.is_none_or(|p| p.is(b"SELECT") || p.is_punct(b','));
                let item_end = lx.peek().is_none_or(|n| {
                    n.is_punct(b',')
                        || n.is_punct(b';')
                        || n.is_punct(b')')
                        || n.is(b"FROM")
                        || n.is(b"WHERE")
                        || n.is(b"UNION")
                        || n.is(b"ORDER")
                        || n.is(b"LIMIT")
                        || n.is(b"INTO")
                        || n.is(b"FOR")
                });
                let written = String::from_utf8_lossy(&src[t.start..end]).replace('`', "``");
                // A BIGINT, as the function's own result is: the server
                // types an integer literal by its digits, zeros included.
                let sign = if value < 0 { "-" } else { "" };
                let lit = format!("CAST({sign}{:020} AS SIGNED)", value.unsigned_abs());
                let text = if item_start && item_end {
                    format!("{lit} AS `{written}`")
                } else {
                    lit
                };
                edits.push((t.start, end, text));
                prev = None;
                continue;
            }
        }
        prev = Some(t);
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut at = 0;
    for (s, e, text) in edits {
        out.push_str(&sql[at..s]);
        out.push_str(&text);
        at = e;
    }
    out.push_str(&sql[at..]);
    Some(out)
}

/// The user-level locks a statement takes and releases, by literal name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LockCalls {
    pub get: Vec<String>,
    pub release: Vec<String>,
    pub release_all: bool,
    /// A lock named by something other than a string literal.
    pub opaque: bool,
}

pub fn lock_calls(sql: &str) -> LockCalls {
    let mut calls = LockCalls::default();
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    while let Some(t) = lx.next_token() {
        let get = t.is(b"GET_LOCK");
        let release = t.is(b"RELEASE_LOCK");
        if t.is(b"RELEASE_ALL_LOCKS") {
            calls.release_all = true;
            continue;
        }
        if !(get || release) || !lx.peek().is_some_and(|n| n.is_punct(b'(')) {
            continue;
        }
        lx.next_token();
        match lx.next_token() {
            Some(arg) if arg.kind == Tok::Str => {
                let name = String::from_utf8_lossy(arg.text).into_owned();
                if get {
                    calls.get.push(name);
                } else {
                    calls.release.push(name);
                }
            }
            _ => calls.opaque = true,
        }
    }
    calls
}

#[cfg(test)]
mod tests {

    #[test]
    fn reads_of_tables_are_told_from_reads_of_values() {
        use super::reads_a_table;
        assert!(reads_a_table("SELECT COUNT(*) FROM t"));
        assert!(reads_a_table("select a from (select 1 a) x"));
        assert!(!reads_a_table("SELECT @@tx_read_only, 'FROM t'"));
        assert!(!reads_a_table("SELECT 1 FROM DUAL"));
    }

    #[test]
    fn writes_in_a_read_only_transaction_are_told_apart() {
        use super::{in_read_only, InReadOnly::*};
        for sql in [
            "INSERT INTO t VALUES (1)",
            "/* note */ update t set a = 1",
            "REPLACE INTO t VALUES (1)",
            "DELETE FROM t WHERE a = 1",
            "LOAD DATA INFILE 'x' INTO TABLE t",
            "UPDATE t SET a = 1; SELECT ROW_COUNT()",
        ] {
            assert_eq!(in_read_only(sql), DataChange, "{sql}");
        }
        for sql in [
            "CREATE TABLE t (a INT)",
            "drop table t",
            "TRUNCATE t",
            "ALTER TABLE t ADD b INT",
        ] {
            assert_eq!(in_read_only(sql), ImplicitCommit, "{sql}");
        }
        for sql in ["SELECT 1", "DO 1", "SET @a = 1", "", "  ;"] {
            assert_eq!(in_read_only(sql), Other, "{sql}");
        }
    }
    use super::*;

    #[test]
    fn names_user_variables() {
        assert_eq!(
            user_var_names("SELECT @a := 1, @`B c`, @'d' INTO @A FROM t -- @e"),
            vec!["a", "b c", "d"]
        );
        assert!(user_var_names("SELECT @@x, 'a@b'").is_empty());
    }

    #[test]
    fn finds_last_insert_id_reads() {
        assert!(reads_last_insert_id("SELECT LAST_INSERT_ID()"));
        assert!(reads_last_insert_id(
            "insert into t values (last_insert_id ( ))"
        ));
        assert!(reads_last_insert_id("SELECT @@identity"));
        assert!(reads_last_insert_id("SELECT @@session.last_insert_id"));
        assert!(!reads_last_insert_id("SELECT LAST_INSERT_ID(5)"));
        assert!(!reads_last_insert_id("SELECT 'LAST_INSERT_ID()'"));
    }

    #[test]
    fn row_count_keeps_column_names() {
        assert_eq!(
            substitute_row_count("SELECT ROW_COUNT()", 3).as_deref(),
            Some("SELECT CAST(00000000000000000003 AS SIGNED) AS `ROW_COUNT()`")
        );
        assert_eq!(
            substitute_row_count("select row_count() as n, 1", -1).as_deref(),
            Some("select CAST(-00000000000000000001 AS SIGNED) as n, 1")
        );
        assert_eq!(
            substitute_row_count("SELECT x FROM t WHERE ROW_COUNT() > 0", 2).as_deref(),
            Some("SELECT x FROM t WHERE CAST(00000000000000000002 AS SIGNED) > 0")
        );
        assert_eq!(
            substitute_row_count("SELECT 1, ROW_COUNT(), 2", 0).as_deref(),
            Some("SELECT 1, CAST(00000000000000000000 AS SIGNED) AS `ROW_COUNT()`, 2")
        );
        // Only the first statement: a later one follows its own predecessor.
        assert_eq!(
            substitute_row_count("UPDATE t SET a=1; SELECT ROW_COUNT()", 9),
            None
        );
        assert_eq!(substitute_row_count("SELECT 'ROW_COUNT()'", 1), None);
    }

    #[test]
    fn lock_names() {
        let c = lock_calls("SELECT GET_LOCK('a', 1), RELEASE_LOCK(\"b\"), GET_LOCK(@n, 0)");
        assert_eq!(c.get, vec!["a"]);
        assert_eq!(c.release, vec!["b"]);
        assert!(c.opaque);
        assert!(lock_calls("DO RELEASE_ALL_LOCKS()").release_all);
    }
}

/// Whether a read names a table (has a `FROM` other than `FROM DUAL`).
pub fn reads_a_table(sql: &str) -> bool {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    while let Some(t) = lx.next_token() {
        if t.kind == Tok::Word && t.is(b"FROM") {
            return !lx
                .peek()
                .is_some_and(|n| n.kind == Tok::Word && n.is(b"DUAL"));
        }
    }
    false
}

/// What a write does to an open `READ ONLY` transaction, by its first
/// keyword: data changes fail in it (`ERROR 1792`), DDL commits it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InReadOnly {
    /// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `LOAD`.
    DataChange,
    /// `CREATE`, `ALTER`, `DROP`, `RENAME`, `TRUNCATE` (not of temporary
    /// tables, which are their own kind).
    ImplicitCommit,
    Other,
}

pub fn in_read_only(sql: &str) -> InReadOnly {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    let first = loop {
        match lx.next_token() {
            Some(t) if t.is_punct(b'(') => continue,
            Some(t) if t.kind == Tok::Word => break t,
            _ => return InReadOnly::Other,
        }
    };
    const DATA: [&[u8]; 5] = [b"INSERT", b"UPDATE", b"DELETE", b"REPLACE", b"LOAD"];
    const DDL: [&[u8]; 5] = [b"CREATE", b"ALTER", b"DROP", b"RENAME", b"TRUNCATE"];
    if DATA.iter().any(|k| first.is(k)) {
        InReadOnly::DataChange
    } else if DDL.iter().any(|k| first.is(k)) {
        InReadOnly::ImplicitCommit
    } else {
        InReadOnly::Other
    }
}
