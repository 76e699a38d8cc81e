//! Facts the session keeps about statements that change connection state:
//! the temporary tables a statement creates or drops, the collation of
//! `SET NAMES .. COLLATE`, the scope and level of `SET TRANSACTION`, the
//! names of text prepares and `HANDLER`s, and whether a user-variable `SET`
//! can be replayed on another connection.
//!
//! Everything works on the statement's bytes as the client sent them (in
//! the client's character set, which need not be UTF-8), through the
//! lexer: names in comments or strings are never taken for names, and no
//! input can make these functions panic. Names are returned as bytes.

use super::lexer::{Lexer, Reading, Tok, Token, Upper};

/// One temporary table a statement creates or drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempTableChange {
    pub create: bool,
    /// The table's name without its database, unquoted, in the client's
    /// bytes.
    pub name: Vec<u8>,
}

/// The temporary tables `sql` creates (`CREATE [OR REPLACE] TEMPORARY
/// TABLE|SEQUENCE [IF NOT EXISTS] [db.]name`) and drops (`DROP TEMPORARY
/// TABLE|SEQUENCE [IF EXISTS] a, db.b ..`), in order, over every statement
/// of a multi-statement. Stops at a statement that may be a compound body
/// (its `;` do not end it).
pub fn temp_table_changes(sql: impl AsRef<[u8]>) -> Vec<TempTableChange> {
    let mut out = Vec::new();
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    while let Some(first) = lx.next_token() {
        if first.is_punct(b';') {
            continue;
        }
        if may_be_compound(&first, &lx) {
            break;
        }
        if first.is(b"CREATE") {
            create(&mut lx, &mut out);
        } else if first.is(b"DROP") {
            drop(&mut lx, &mut out);
        }
        skip_statement(&mut lx);
    }
    out
}

/// Statements whose body may hold `;`: stored programs, compound
/// statements, labels. Whatever follows them is theirs.
fn may_be_compound(first: &Token<'_>, lx: &Lexer<'_>) -> bool {
    let next = lx.peek();
    if first.is(b"CREATE") || first.is(b"ALTER") {
        // Only `CREATE [OR REPLACE] TEMPORARY` is known not to have a body.
        let mut probe = lx.clone();
        if probe.peek().is_some_and(|t| t.is(b"OR")) {
            probe.next_token();
            probe.next_token();
        }
        return !(first.is(b"CREATE") && probe.peek().is_some_and(|t| t.is(b"TEMPORARY")));
    }
    if first.is(b"BEGIN") {
        // `BEGIN`, `BEGIN WORK` start a transaction; `BEGIN NOT ATOMIC` a block.
        return next.is_some_and(|n| !(n.is_punct(b';') || n.is(b"WORK")));
    }
    const COMPOUND: [&[u8]; 8] = [
        b"IF",
        b"LOOP",
        b"WHILE",
        b"REPEAT",
        b"CASE",
        b"DECLARE",
        b"FOR",
        b"DELIMITER",
    ];
    COMPOUND.iter().any(|k| first.is(k)) || next.is_some_and(|n| n.is_punct(b':'))
}

/// Moves `lx` past the `;` that ends the current statement.
fn skip_statement(lx: &mut Lexer<'_>) {
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            return;
        }
    }
}

fn eat(lx: &mut Lexer<'_>, kw: &[u8]) -> bool {
    if lx.peek().is_some_and(|t| t.is(kw)) {
        lx.next_token();
        true
    } else {
        false
    }
}

/// After `CREATE`.
fn create(lx: &mut Lexer<'_>, out: &mut Vec<TempTableChange>) {
    if eat(lx, b"OR") && !eat(lx, b"REPLACE") {
        return;
    }
    if !eat(lx, b"TEMPORARY") || !(eat(lx, b"TABLE") || eat(lx, b"SEQUENCE")) {
        return;
    }
    if eat(lx, b"IF") && !(eat(lx, b"NOT") && eat(lx, b"EXISTS")) {
        return;
    }
    if let Some(name) = table_name(lx) {
        out.push(TempTableChange { create: true, name });
    }
}

/// After `DROP`.
fn drop(lx: &mut Lexer<'_>, out: &mut Vec<TempTableChange>) {
    if !eat(lx, b"TEMPORARY") {
        return;
    }
    if !(eat(lx, b"TABLE") || eat(lx, b"TABLES") || eat(lx, b"SEQUENCE")) {
        return;
    }
    if eat(lx, b"IF") && !eat(lx, b"EXISTS") {
        return;
    }
    while let Some(name) = table_name(lx) {
        out.push(TempTableChange {
            create: false,
            name,
        });
        if !lx.peek().is_some_and(|t| t.is_punct(b',')) {
            return;
        }
        lx.next_token();
    }
}

/// `name`, `` `name` ``, `"name"` (`ANSI_QUOTES`) or any of them qualified
/// by a database: the last part, unquoted.
fn table_name(lx: &mut Lexer<'_>) -> Option<Vec<u8>> {
    let mut name = ident(lx.next_token()?)?;
    while lx.peek().is_some_and(|t| t.is_punct(b'.')) {
        lx.next_token();
        name = ident(lx.next_token()?)?;
    }
    (!name.is_empty()).then_some(name)
}

/// An identifier token's name: unquoted, doubled quotes undone.
fn ident(t: Token<'_>) -> Option<Vec<u8>> {
    match t.kind {
        Tok::Word => Some(t.text.to_vec()),
        Tok::Quoted => Some(undouble(t.text, b'`')),
        // `"name"` is a name under `ANSI_QUOTES` (and a syntax error
        // otherwise, so nothing is recorded wrongly).
        Tok::Str => Some(undouble(t.text, b'"')),
        _ => None,
    }
}

/// `text` with every doubled `q` made single.
pub(crate) fn undouble(text: &[u8], q: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        out.push(b);
        i += if b == q && text.get(i + 1) == Some(&q) {
            2
        } else {
            1
        };
    }
    out
}

/// Whether two table names are the same table for routing: equal, or equal
/// but for case (ASCII, or Unicode when both are UTF-8). The server
/// compares names exactly under `lower_case_table_names=0` and folded
/// otherwise; reporting a match where the server sees two tables only
/// sends a statement to the primary.
pub fn same_table_name(a: &[u8], b: &[u8]) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return false;
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(x), Ok(y)) => x
            .chars()
            .flat_map(char::to_lowercase)
            .eq(y.chars().flat_map(char::to_lowercase)),
        _ => false,
    }
}

/// The collation of `SET NAMES cs COLLATE c` (lower-case), wherever it
/// stands in the `SET` list of the first statement.
pub fn names_collation(sql: impl AsRef<[u8]>) -> Option<String> {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    if !lx.next_token()?.is(b"SET") {
        return None;
    }
    let mut depth = 0u32;
    let mut prev_top: Option<Token<'_>> = None;
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            return None;
        }
        if t.is_punct(b'(') {
            depth += 1;
        } else if t.is_punct(b')') {
            depth = depth.saturating_sub(1);
        }
        let starts_item = prev_top.is_none_or(|p| p.is_punct(b','));
        if depth == 0 && starts_item && t.is(b"NAMES") {
            lx.next_token()?; // the character set
            if !lx.next_token()?.is(b"COLLATE") {
                return None;
            }
            let c = lx.next_token()?;
            let name = match c.kind {
                Tok::Word | Tok::Str | Tok::Quoted => String::from_utf8_lossy(c.text),
                _ => return None,
            };
            return (!name.is_empty()).then(|| name.to_ascii_lowercase());
        }
        if depth == 0 {
            prev_top = Some(t);
        }
    }
    None
}

/// What `SET [SESSION | LOCAL | GLOBAL] TRANSACTION ..` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetTransaction {
    /// `SESSION` or `LOCAL` before `TRANSACTION`: for every later
    /// transaction, not only the next.
    pub session: bool,
    /// `ISOLATION LEVEL ..` as the `tx_isolation` value (`READ-COMMITTED`).
    pub isolation: Option<&'static str>,
}

/// Reads a `SET .. TRANSACTION` statement (the first statement of `sql`).
pub fn set_transaction(sql: impl AsRef<[u8]>) -> SetTransaction {
    let mut out = SetTransaction::default();
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    if !lx.next_token().is_some_and(|t| t.is(b"SET")) {
        return out;
    }
    match lx.next_token() {
        Some(t) if t.is(b"SESSION") || t.is(b"LOCAL") => out.session = true,
        Some(t) if t.is(b"TRANSACTION") => {}
        _ => return out,
    }
    if out.session && !eat(&mut lx, b"TRANSACTION") {
        return SetTransaction::default();
    }
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            break;
        }
        if !(t.is(b"LEVEL") && out.isolation.is_none()) {
            continue;
        }
        let a = lx.next_token();
        let b = lx.peek();
        let is = |t: Option<Token<'_>>, kw: &[u8]| t.is_some_and(|t| t.is(kw));
        out.isolation = if is(a, b"SERIALIZABLE") {
            Some("SERIALIZABLE")
        } else if is(a, b"REPEATABLE") && is(b, b"READ") {
            Some("REPEATABLE-READ")
        } else if is(a, b"READ") && is(b, b"COMMITTED") {
            Some("READ-COMMITTED")
        } else if is(a, b"READ") && is(b, b"UNCOMMITTED") {
            Some("READ-UNCOMMITTED")
        } else {
            None
        };
    }
    out
}

/// Whether a `SET @v = ..` statement can be replayed on another
/// connection with the same result: one statement, user variables only,
/// each set to a literal (a string, with an optional `_charset`
/// introducer, a number with an optional sign, `X'..'`, `B'..'`, `NULL`,
/// `TRUE`, `FALSE`). Functions, subqueries, other variables, names and
/// `COLLATE` are not replayable.
pub fn replayable_user_var_set(sql: impl AsRef<[u8]>) -> bool {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    if !lx.next_token().is_some_and(|t| t.is(b"SET")) {
        return false;
    }
    loop {
        // `@v` then `=` or `:=`.
        if !lx.next_token().is_some_and(|t| t.kind == Tok::UserVar) {
            return false;
        }
        if !lx
            .next_token()
            .is_some_and(|t| t.is_punct(b'=') || t.kind == Tok::Assign)
        {
            return false;
        }
        if !literal(&mut lx) {
            return false;
        }
        match lx.next_token() {
            None => return true,
            Some(t) if t.is_punct(b',') => continue,
            Some(t) if t.is_punct(b';') => return lx.next_token().is_none(),
            Some(_) => return false,
        }
    }
}

/// For a multi-statement: the statements in it that assign user variables,
/// when each is a `SET` of literals ([`replayable_user_var_set`]), as byte
/// ranges of `sql`; `None` when any statement assigns user variables
/// otherwise, or the text may hold a compound statement.
pub fn replayable_user_var_sets(sql: impl AsRef<[u8]>) -> Option<Vec<std::ops::Range<usize>>> {
    let sql = sql.as_ref();
    let mut lx = Lexer::new(sql, Reading::DEFAULT);
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    loop {
        let t = lx.next_token();
        match t {
            Some(t) if !t.is_punct(b';') => {
                if start.is_none() {
                    if may_be_compound(&t, &lx) {
                        return None;
                    }
                    start = Some(t.start);
                }
                end = t.end;
            }
            _ => {
                if let Some(s) = start.take() {
                    let stmt = sql.get(s..end)?;
                    let class = super::classify(&String::from_utf8_lossy(stmt));
                    let assigns = class.kind == super::Kind::SetUserVar
                        || class
                            .flags
                            .intersects(super::Flags::USER_VAR_ASSIGN | super::Flags::SELECT_INTO);
                    if assigns {
                        if !replayable_user_var_set(stmt) {
                            return None;
                        }
                        out.push(s..end);
                    }
                }
                if t.is_none() {
                    return Some(out);
                }
            }
        }
    }
}

/// One literal value; `lx` is left after it.
fn literal(lx: &mut Lexer<'_>) -> bool {
    while lx
        .peek()
        .is_some_and(|t| t.is_punct(b'-') || t.is_punct(b'+'))
    {
        lx.next_token();
    }
    let Some(t) = lx.next_token() else {
        return false;
    };
    match t.kind {
        Tok::Str => true,
        Tok::Word => {
            let w = Upper::new(t.text);
            let w = w.as_bytes();
            if matches!(w, b"NULL" | b"TRUE" | b"FALSE") {
                return true;
            }
            // X'..', B'..', N'..', _latin1'..': a prefix glued to a string.
            let glued_str = lx
                .peek()
                .is_some_and(|n| n.kind == Tok::Str && n.start == t.end);
            let prefix =
                matches!(w, b"X" | b"B" | b"N") || (t.text.first() == Some(&b'_') && w.len() > 1);
            if glued_str && prefix {
                lx.next_token();
                return true;
            }
            if t.text.first() == Some(&b'_') && w.len() > 1 {
                // `_latin1 'x'`: an introducer and a string.
                return lx.next_token().is_some_and(|n| n.kind == Tok::Str);
            }
            number_dot(lx, t.text) || number(t.text)
        }
        Tok::Punct if t.is_punct(b'.') => lx
            .next_token()
            .is_some_and(|n| n.kind == Tok::Word && n.start == t.end && number(n.text)),
        _ => false,
    }
}

/// Digits, hex (`0x1F`, `0b01`), or a number with an exponent (`1e5`).
fn number(w: &[u8]) -> bool {
    let Some(first) = w.first() else {
        return false;
    };
    if !first.is_ascii_digit() {
        return false;
    }
    if let Some(rest) = w.strip_prefix(b"0x").or_else(|| w.strip_prefix(b"0X")) {
        return !rest.is_empty() && rest.iter().all(u8::is_ascii_hexdigit);
    }
    if let Some(rest) = w.strip_prefix(b"0b") {
        return !rest.is_empty() && rest.iter().all(|b| *b == b'0' || *b == b'1');
    }
    let mut exp = false;
    w.iter().all(|&b| {
        if b == b'e' || b == b'E' {
            let first_exp = !exp;
            exp = true;
            first_exp
        } else {
            b.is_ascii_digit()
        }
    })
}

/// `1.5`, `1.5e3`, `1.`: digits then `.` and more digits glued.
fn number_dot(lx: &mut Lexer<'_>, int: &[u8]) -> bool {
    if !int.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some(dot) = lx.peek().filter(|t| t.is_punct(b'.')) else {
        return false;
    };
    lx.next_token();
    if let Some(frac) = lx
        .peek()
        .filter(|n| n.start == dot.end && n.kind == Tok::Word)
    {
        if !number(frac.text) {
            return false;
        }
        lx.next_token();
    }
    true
}

/// Whether the statement names one of the server's session-tracking
/// variables (`session_track_system_variables`, `session_track_schema`,
/// `session_track_state_change`, ...) outside strings and comments: it may
/// change what the server reports to Causeway.
pub fn names_session_tracking(sql: impl AsRef<[u8]>) -> bool {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    while let Some(t) = lx.next_token() {
        if t.kind == Tok::Str {
            continue;
        }
        let text = t.text.strip_prefix(b"`").unwrap_or(t.text);
        let name = text.rsplit(|&b| b == b'.').next().unwrap_or(text);
        if name.len() >= 14 && name[..14].eq_ignore_ascii_case(b"session_track_") {
            return true;
        }
    }
    false
}

/// The session system variables a `SET` statement assigns, lower-case,
/// in order: `SET [SESSION | LOCAL] x = ..`, `SET @@x = ..`, `SET
/// @@session.x = ..`, several separated by commas. User variables and
/// `GLOBAL` assignments are left out; `SET NAMES`, `SET CHARACTER SET` and
/// `SET TRANSACTION` name none. Empty for any other statement.
pub fn set_session_var_names(sql: impl AsRef<[u8]>) -> Vec<String> {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    let mut out = Vec::new();
    if !lx.next_token().is_some_and(|t| t.is(b"SET")) {
        return out;
    }
    // The scope of plain names, set by a leading SESSION / LOCAL / GLOBAL
    // keyword until the next one.
    let mut global = false;
    loop {
        let Some(mut t) = lx.next_token() else {
            return out;
        };
        if t.kind == Tok::Word {
            let w = Upper::new(t.text);
            match w.as_bytes() {
                b"SESSION" | b"LOCAL" => global = false,
                b"GLOBAL" => global = true,
                b"NAMES" | b"CHARACTER" | b"CHARSET" | b"TRANSACTION" | b"PASSWORD" | b"ROLE"
                | b"STATEMENT" | b"DEFAULT" => return out,
                _ => {}
            }
            if matches!(w.as_bytes(), b"SESSION" | b"LOCAL" | b"GLOBAL") {
                match lx.next_token() {
                    Some(n) => t = n,
                    None => return out,
                }
            }
        }
        let name = match t.kind {
            Tok::Word | Tok::Quoted if !global => Some(t.text.to_ascii_lowercase()),
            Tok::SysVar => {
                let lower = t.text.to_ascii_lowercase();
                if lower.starts_with(b"global.") {
                    None
                } else {
                    let bare = lower
                        .strip_prefix(b"session.")
                        .or_else(|| lower.strip_prefix(b"local."))
                        .unwrap_or(&lower);
                    Some(bare.to_vec())
                }
            }
            _ => None,
        };
        if let Some(n) = name {
            out.push(String::from_utf8_lossy(&n).into_owned());
        }
        // Skip `= expr` up to the next comma outside parentheses.
        let mut depth = 0usize;
        loop {
            let Some(t) = lx.next_token() else {
                return out;
            };
            if t.is_punct(b'(') {
                depth += 1;
            } else if t.is_punct(b')') {
                depth = depth.saturating_sub(1);
            } else if t.is_punct(b';') && depth == 0 {
                return out;
            } else if t.is_punct(b',') && depth == 0 {
                break;
            }
        }
    }
}

/// The statement name of `PREPARE s FROM ..`, `EXECUTE s`, `DEALLOCATE
/// PREPARE s` or `DROP PREPARE s`, lower-case (names of prepared
/// statements are not case-sensitive).
pub fn prepared_name(sql: impl AsRef<[u8]>) -> Option<String> {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    let first = lx.next_token()?;
    let name = if first.is(b"PREPARE") || first.is(b"EXECUTE") {
        lx.next_token()?
    } else if first.is(b"DEALLOCATE") || first.is(b"DROP") {
        if !lx.next_token()?.is(b"PREPARE") {
            return None;
        }
        lx.next_token()?
    } else {
        return None;
    };
    let bytes = match name.kind {
        Tok::Word => name.text.to_vec(),
        Tok::Quoted => undouble(name.text, b'`'),
        _ => return None,
    };
    let s = String::from_utf8_lossy(&bytes).to_lowercase();
    (!s.is_empty()).then_some(s)
}

/// What a `HANDLER` statement does to the session's open handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerOp {
    /// `HANDLER t OPEN [[AS] alias]`: the handler's name (the alias if any).
    Open(String),
    /// `HANDLER name CLOSE`.
    Close(String),
}

/// Reads `HANDLER ..` (lower-case names, database dropped).
pub fn handler(sql: impl AsRef<[u8]>) -> Option<HandlerOp> {
    let mut lx = Lexer::new(sql.as_ref(), Reading::DEFAULT);
    if !lx.next_token()?.is(b"HANDLER") {
        return None;
    }
    let name = table_name(&mut lx)?;
    let lower = |b: &[u8]| String::from_utf8_lossy(b).to_lowercase();
    let op = lx.next_token()?;
    if op.is(b"CLOSE") {
        return Some(HandlerOp::Close(lower(&name)));
    }
    if !op.is(b"OPEN") {
        return None;
    }
    eat(&mut lx, b"AS");
    let alias = match lx.next_token() {
        Some(t) if !t.is_punct(b';') => ident(t),
        _ => None,
    };
    Some(HandlerOp::Open(lower(alias.as_deref().unwrap_or(&name))))
}
