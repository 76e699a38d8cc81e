//! What a statement does with state that belongs to a client connection
//! rather than to the server: the user variables it names, whether it reads
//! `LAST_INSERT_ID()`, the `ROW_COUNT()` calls to answer from the session's
//! own last statement, and the user-level locks it takes and releases.
//! The transaction-level pool needs these to move a session between
//! backend connections. Pure and allocation-light, like the rest of
//! `classify`.

use super::lexer::{Lexer, Reading, Tok, Token};

/// The user variables `sql` names (lower-case, each once, in order).
pub fn user_var_names(sql: impl AsRef<[u8]>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
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
pub fn reads_last_insert_id(sql: impl AsRef<[u8]>) -> bool {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
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
/// that read the column by name see no difference. Works on the client's
/// bytes: everything but the calls is sent as it came.
pub fn substitute_row_count(sql: impl AsRef<[u8]>, value: i64) -> Option<Vec<u8>> {
    // A BIGINT, as the function's own result is: the server types an
    // integer literal by its digits, zeros included.
    let sign = if value < 0 { "-" } else { "" };
    let lit = format!("CAST({sign}{:020} AS SIGNED)", value.unsigned_abs());
    substitute_calls(sql.as_ref(), b"ROW_COUNT", &lit, Scope::FirstStatement)
}

/// `sql` with every `CONNECTION_ID()` replaced by `id`, the session's own
/// id (a backend connection's thread id means nothing to the client); `None`
/// if there is none. Calls in strings and comments stay; so do calls in
/// `CREATE` and `ALTER` statements (a view, a default or a stored program
/// body must call the function when it runs) and everything after one
/// (a stored program's body may hold `;`). `CONNECTION_ID ()` with spaces
/// is a call too, as the server reads it. The literal has the function's
/// type, `INT(10) UNSIGNED`.
pub fn substitute_connection_id(sql: impl AsRef<[u8]>, id: u32) -> Option<Vec<u8>> {
    let sql = sql.as_ref();
    // Most statements do not call it: no lexing for them.
    const NAME: &[u8] = b"CONNECTION_ID";
    if !sql
        .windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
    {
        return None;
    }
    let lit = format!("CAST({id:010} AS UNSIGNED)");
    if let Some(done) = in_prepare_text(sql, NAME, &lit) {
        return Some(done);
    }
    substitute_calls(sql, NAME, &lit, Scope::RunsNow)
}

/// `PREPARE s FROM '<sql>'`: the calls in the prepared text. Only a plain
/// string (no escapes, no doubled quotes) is edited; the text of `PREPARE
/// s FROM @var` is not known before it runs.
fn in_prepare_text(sql: &[u8], name: &[u8], lit: &str) -> Option<Vec<u8>> {
    let mut lx = Lexer::new(sql, Reading::DEFAULT);
    if !lx.next_token()?.is(b"PREPARE") {
        return None;
    }
    lx.next_token()?;
    if !lx.next_token()?.is(b"FROM") {
        return None;
    }
    let s = lx.next_token().filter(|t| t.kind == Tok::Str)?;
    let quote = *sql.get(s.start)?;
    let plain = !s.text.iter().any(|&b| b == b'\\' || b == quote);
    let body = substitute_calls(s.text, name, lit, Scope::RunsNow).filter(|_| plain)?;
    let open = s.start + 1;
    let close = open + s.text.len();
    let mut out = Vec::with_capacity(sql.len() + body.len());
    out.extend_from_slice(sql.get(..open)?);
    out.extend_from_slice(&body);
    out.extend_from_slice(sql.get(close..)?);
    Some(out)
}

/// `sql` with every read of `@@socket` (any scope, any case) replaced by
/// `NULL`, keeping the column name of a read that is a whole select item;
/// `None` if it reads none. Connectors ask for the server's socket at
/// connect time and, when the server looks local, reconnect to it, which
/// would bypass the proxy: it has no socket to offer.
pub fn hide_socket(sql: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    let src = sql.as_ref();
    const NAME: &[u8] = b"@@";
    if !src.windows(6).any(|w| w.eq_ignore_ascii_case(b"socket")) {
        return None;
    }
    let mut lx = Lexer::new(src, Reading::DEFAULT);
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut prev: Option<Token<'_>> = None;
    while let Some(t) = lx.next_token() {
        if t.kind == Tok::SysVar && src.get(t.start..t.start + 2) == Some(NAME) {
            let name = t.text.rsplit(|&b| b == b'.').next().unwrap_or(t.text);
            if name.eq_ignore_ascii_case(b"socket") {
                edits.push((t.start, t.end, call_text(src, &t, t.end, prev, &lx, "NULL")));
            }
        }
        prev = Some(t);
    }
    name_items(src, &mut edits);
    splice(src, edits)
}

/// Keeps the column names of select items that an edit changes: the server
/// names an item without an alias after its text as written, so an item
/// that holds an edit (and is not the edited call alone, which
/// [`call_text`] names) gets `AS` its original text. Items of each
/// statement's top-level select list only.
fn name_items(src: &[u8], edits: &mut Vec<(usize, usize, Vec<u8>)>) {
    if edits.is_empty() {
        return;
    }
    let mut aliases = Vec::new();
    for (start, end) in unnamed_items(src) {
        let inside = |&(s, e, _): &(usize, usize, Vec<u8>)| s >= start && e <= end;
        let whole = edits.iter().any(|(s, e, _)| *s == start && *e == end);
        if whole || !edits.iter().any(inside) {
            continue;
        }
        let mut text = b" AS `".to_vec();
        for &b in src.get(start..end).unwrap_or(&[]) {
            if b == b'`' {
                text.push(b'`');
            }
            text.push(b);
        }
        text.push(b'`');
        aliases.push((end, end, text));
    }
    edits.extend(aliases);
    edits.sort_by_key(|(s, e, _)| (*s, *e));
}

/// The spans of the items without an alias in each statement's top-level
/// `SELECT` list.
fn unnamed_items(src: &[u8]) -> Vec<(usize, usize)> {
    const ENDS: &[&[u8]] = &[
        b"FROM",
        b"INTO",
        b"WHERE",
        b"GROUP",
        b"HAVING",
        b"ORDER",
        b"LIMIT",
        b"UNION",
        b"EXCEPT",
        b"INTERSECT",
        b"FOR",
        b"LOCK",
        b"WINDOW",
        b"PROCEDURE",
    ];
    let mut out = Vec::new();
    let mut lx = Lexer::new(src, Reading::DEFAULT);
    let mut first = true;
    while let Some(t) = lx.next_token() {
        let starts_select = first && t.is(b"SELECT");
        first = t.is_punct(b';');
        if !starts_select {
            continue;
        }
        while lx
            .peek()
            .is_some_and(|n| n.is(b"DISTINCT") || n.is(b"ALL") || n.is(b"DISTINCTROW"))
        {
            lx.next_token();
        }
        let mut item: Vec<Token<'_>> = Vec::new();
        let mut depth = 0i32;
        loop {
            let next = lx.peek();
            let done = match next {
                None => true,
                Some(n) if depth == 0 => {
                    n.is_punct(b';') || n.is_punct(b')') || ENDS.iter().any(|w| n.is(w))
                }
                _ => false,
            };
            if done || next.is_some_and(|n| depth == 0 && n.is_punct(b',')) {
                if let (Some(a), Some(b)) = (item.first(), item.last()) {
                    if !has_alias(&item) {
                        out.push((a.start, b.end));
                    }
                }
                item.clear();
                if done {
                    break;
                }
                lx.next_token();
                continue;
            }
            let Some(n) = lx.next_token() else { break };
            if n.is_punct(b'(') {
                depth += 1;
            } else if n.is_punct(b')') {
                depth -= 1;
            }
            item.push(n);
        }
    }
    out
}

/// Whether a select item ends in an alias: `.. AS x`, or `expr x` where
/// `x` is a name after the end of an expression.
fn has_alias(item: &[Token<'_>]) -> bool {
    const NOT_NAMES: &[&[u8]] = &[b"NULL", b"TRUE", b"FALSE", b"UNKNOWN", b"END"];
    const OPERATORS: &[&[u8]] = &[
        b"IS",
        b"NOT",
        b"AND",
        b"OR",
        b"XOR",
        b"LIKE",
        b"IN",
        b"BETWEEN",
        b"REGEXP",
        b"RLIKE",
        b"DIV",
        b"MOD",
        b"BINARY",
        b"COLLATE",
        b"INTERVAL",
        b"CASE",
        b"WHEN",
        b"THEN",
        b"ELSE",
        b"ESCAPE",
        b"SOUNDS",
        b"SELECT",
        b"DISTINCT",
    ];
    let [.., before, last] = item else {
        return false;
    };
    if before.is(b"AS") {
        return true;
    }
    let name = match last.kind {
        Tok::Quoted | Tok::Str => true,
        Tok::Word => !NOT_NAMES.iter().any(|w| last.is(w)) && !last.text[0].is_ascii_digit(),
        _ => false,
    };
    let after_expr = match before.kind {
        Tok::Punct => before.is_punct(b')'),
        Tok::Word => !OPERATORS.iter().any(|w| before.is(w)),
        Tok::Quoted | Tok::Str | Tok::SysVar | Tok::UserVar => true,
        _ => false,
    };
    name && after_expr
}

/// `src` with each `(start, end, text)` edit (in order, not overlapping)
/// applied; `None` without edits.
fn splice(src: &[u8], edits: Vec<(usize, usize, Vec<u8>)>) -> Option<Vec<u8>> {
    if edits.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(src.len() + 32 * edits.len());
    let mut at = 0;
    for (s, e, text) in edits {
        out.extend_from_slice(src.get(at..s).unwrap_or(&[]));
        out.extend_from_slice(&text);
        at = e;
    }
    out.extend_from_slice(src.get(at..).unwrap_or(&[]));
    Some(out)
}

/// Which statements of a text [`substitute_calls`] edits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The first statement only.
    FirstStatement,
    /// Every statement up to the first `CREATE` or `ALTER`.
    RunsNow,
}

/// `src` with every argument-less call of the function `name` replaced
/// by the SQL expression `lit`, keeping the column name of a call that is a
/// whole select item.
fn substitute_calls(src: &[u8], name: &[u8], lit: &str, scope: Scope) -> Option<Vec<u8>> {
    let mut lx = Lexer::new(src, Reading::DEFAULT);
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut prev: Option<Token<'_>> = None;
    let mut depth = 0i32;
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') && depth == 0 {
            if scope == Scope::FirstStatement {
                break;
            }
            prev = None;
            continue;
        }
        if prev.is_none() && (t.is(b"CREATE") || t.is(b"ALTER")) && scope == Scope::RunsNow {
            break;
        }
        if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth -= 1;
        }
        // `db.f()` is a stored function of that name.
        let qualified = prev.is_some_and(|p| p.is_punct(b'.'));
        if t.is(name) && !qualified {
            if let Some(end) = is_empty_call(&mut lx) {
                edits.push((t.start, end, call_text(src, &t, end, prev, &lx, lit)));
                prev = Some(t);
                continue;
            }
        }
        prev = Some(t);
    }
    name_items(src, &mut edits);
    splice(src, edits)
}

/// The replacement of the call at `t..end`: `lit`, named as the call was
/// written when the call is a whole select item.
fn call_text(
    src: &[u8],
    t: &Token<'_>,
    end: usize,
    prev: Option<Token<'_>>,
    lx: &Lexer<'_>,
    lit: &str,
) -> Vec<u8> {
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
    let mut text = lit.as_bytes().to_vec();
    if item_start && item_end {
        text.extend_from_slice(b" AS `");
        for &b in src.get(t.start..end).unwrap_or(&[]) {
            if b == b'`' {
                text.push(b'`');
            }
            text.push(b);
        }
        text.push(b'`');
    }
    text
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

pub fn lock_calls(sql: impl AsRef<[u8]>) -> LockCalls {
    let mut calls = LockCalls::default();
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
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

    /// The substitution as text, for the tables below.
    fn rc(sql: &str, v: i64) -> Option<String> {
        substitute_row_count(sql, v).map(|b| String::from_utf8(b).unwrap())
    }

    fn cid(sql: &str, id: u32) -> Option<String> {
        substitute_connection_id(sql, id).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn row_count_keeps_column_names() {
        assert_eq!(
            rc("SELECT ROW_COUNT()", 3).as_deref(),
            Some("SELECT CAST(00000000000000000003 AS SIGNED) AS `ROW_COUNT()`")
        );
        assert_eq!(
            rc("select row_count() as n, 1", -1).as_deref(),
            Some("select CAST(-00000000000000000001 AS SIGNED) as n, 1")
        );
        assert_eq!(
            rc("SELECT x FROM t WHERE ROW_COUNT() > 0", 2).as_deref(),
            Some("SELECT x FROM t WHERE CAST(00000000000000000002 AS SIGNED) > 0")
        );
        assert_eq!(
            rc("SELECT 1, ROW_COUNT(), 2", 0).as_deref(),
            Some("SELECT 1, CAST(00000000000000000000 AS SIGNED) AS `ROW_COUNT()`, 2")
        );
        // Only the first statement: a later one follows its own predecessor.
        assert_eq!(rc("UPDATE t SET a=1; SELECT ROW_COUNT()", 9), None);
        assert_eq!(rc("SELECT 'ROW_COUNT()'", 1), None);
    }

    #[test]
    fn substitutions_keep_every_other_byte() {
        // latin1 and invalid UTF-8 around the call arrive as they came.
        let sql = b"SELECT ROW_COUNT(), '\xe9\xff' /* \x80 */, CONNECTION_ID()";
        let out = substitute_row_count(sql, 1).unwrap();
        assert!(out.windows(4).any(|w| w == b"'\xe9\xff'"));
        assert!(out.windows(7).any(|w| w == b"/* \x80 */"));
        let out = substitute_connection_id(&out, 7).unwrap();
        assert!(out.ends_with(b", CAST(0000000007 AS UNSIGNED) AS `CONNECTION_ID()`"));
    }

    #[test]
    fn socket_reads_are_null() {
        let h = |sql: &str| hide_socket(sql).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(
            h("SELECT @@max_allowed_packet, @@socket").as_deref(),
            Some("SELECT @@max_allowed_packet, NULL AS `@@socket`")
        );
        assert_eq!(
            h("select @@SESSION.socket IS NULL").as_deref(),
            Some("select NULL IS NULL AS `@@SESSION.socket IS NULL`")
        );
        // An item with an alias keeps it; one without is named as written.
        assert_eq!(
            h("SELECT @@socket IS NOT NULL s, @@socket = 'x' AS t, COALESCE(@@socket, 'tcp')").as_deref(),
            Some("SELECT NULL IS NOT NULL s, NULL = 'x' AS t, COALESCE(NULL, 'tcp') AS `COALESCE(@@socket, 'tcp')`")
        );
        assert_eq!(h("SELECT '@@socket', @@socket_x"), None);
        assert_eq!(h("SELECT 1 /* @@socket */"), None);
    }

    #[test]
    fn connection_id_is_the_sessions() {
        let lit = "CAST(0000000042 AS UNSIGNED)";
        assert_eq!(
            cid("SELECT CONNECTION_ID()", 42).unwrap(),
            format!("SELECT {lit} AS `CONNECTION_ID()`")
        );
        assert_eq!(
            cid("select connection_id ( ) + 1", 42).unwrap(),
            format!("select {lit} + 1 AS `connection_id ( ) + 1`")
        );
        assert_eq!(
            cid(
                "SELECT CONNECTION_ID() > 0, USER() FROM t WHERE a = CONNECTION_ID()",
                42
            )
            .unwrap(),
            format!("SELECT {lit} > 0 AS `CONNECTION_ID() > 0`, USER() FROM t WHERE a = {lit}")
        );
        assert_eq!(
            cid("SELECT CASE WHEN CONNECTION_ID() THEN 1 END", 42).unwrap(),
            format!("SELECT CASE WHEN {lit} THEN 1 END AS `CASE WHEN CONNECTION_ID() THEN 1 END`")
        );
        assert_eq!(
            cid(
                "SELECT * FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
                42
            )
            .unwrap(),
            format!("SELECT * FROM information_schema.PROCESSLIST WHERE ID = {lit}")
        );
        // Every statement that runs now, none in strings, comments or
        // definitions.
        assert_eq!(
            cid("DO 1; SELECT `c`.CONNECTION_ID(), CONNECTION_ID() x", 42).unwrap(),
            format!("DO 1; SELECT `c`.CONNECTION_ID(), {lit} x")
        );
        assert_eq!(cid("SELECT 'CONNECTION_ID()' -- CONNECTION_ID()", 1), None);
        assert_eq!(cid("SELECT /* CONNECTION_ID() */ 1", 1), None);
        assert_eq!(cid("SELECT connection_id FROM t", 1), None);
        assert_eq!(cid("CREATE VIEW v AS SELECT CONNECTION_ID()", 1), None);
        assert_eq!(
            cid(
                "CREATE PROCEDURE p() BEGIN SELECT 1; SELECT CONNECTION_ID(); END",
                1
            ),
            None
        );
        // Text prepares: the prepared text.
        assert_eq!(
            cid("PREPARE s FROM 'SELECT CONNECTION_ID()'", 5).unwrap(),
            "PREPARE s FROM 'SELECT CAST(0000000005 AS UNSIGNED) AS `CONNECTION_ID()`'"
        );
        assert_eq!(
            cid("PREPARE s FROM 'SELECT \\'a\\', CONNECTION_ID()'", 5),
            None
        );
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
pub fn reads_a_table(sql: impl AsRef<[u8]>) -> bool {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
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

/// Whether the statement is a `LOAD DATA` / `LOAD XML` (its first
/// keyword, past opening parentheses).
pub fn starts_with_load(sql: impl AsRef<[u8]>) -> bool {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    loop {
        match lx.next_token() {
            Some(t) if t.is_punct(b'(') => continue,
            Some(t) if t.kind == Tok::Word => return t.is(b"LOAD"),
            _ => return false,
        }
    }
}

pub fn in_read_only(sql: impl AsRef<[u8]>) -> InReadOnly {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
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
