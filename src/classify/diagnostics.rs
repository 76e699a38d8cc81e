//! Statements that read the diagnostics area (the warnings and errors of
//! the connection's previous statement): `SHOW WARNINGS`, `SHOW ERRORS`,
//! `SHOW COUNT(*) WARNINGS|ERRORS`, `GET [CURRENT|STACKED] DIAGNOSTICS`,
//! and reads of `@@warning_count` / `@@error_count`. They must run on the
//! backend connection that ran the session's previous statement.

use super::lexer::{Lexer, Reading, Tok};

/// Whether the first statement of `sql` reads the diagnostics area.
pub fn reads_diagnostics(sql: &str) -> bool {
    let mut lx = Lexer::new(sql.as_bytes(), Reading::DEFAULT);
    let Some(first) = lx.next_token() else {
        return false;
    };
    if first.is(b"SHOW") {
        // `SHOW [COUNT(*)] WARNINGS|ERRORS [LIMIT ..]`.
        let mut next = lx.next_token();
        if next.is_some_and(|t| t.is(b"COUNT")) {
            for p in [b'(', b'*', b')'] {
                if !lx.next_token().is_some_and(|t| t.is_punct(p)) {
                    return false;
                }
            }
            next = lx.next_token();
        }
        return next.is_some_and(|t| t.is(b"WARNINGS") || t.is(b"ERRORS"));
    }
    if first.is(b"GET") {
        let mut next = lx.next_token();
        if next.is_some_and(|t| t.is(b"CURRENT") || t.is(b"STACKED")) {
            next = lx.next_token();
        }
        return next.is_some_and(|t| t.is(b"DIAGNOSTICS"));
    }
    if !first.is(b"SELECT") {
        return false;
    }
    while let Some(t) = lx.next_token() {
        if t.is_punct(b';') {
            return false;
        }
        if t.kind == Tok::SysVar {
            let name = t.text.rsplit(|&b| b == b'.').next().unwrap_or(t.text);
            if name.eq_ignore_ascii_case(b"warning_count")
                || name.eq_ignore_ascii_case(b"error_count")
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::reads_diagnostics;

    #[test]
    fn diagnostics_statements() {
        for sql in [
            "SHOW WARNINGS",
            "show warnings limit 1",
            "/* x */ SHOW ERRORS",
            "SHOW COUNT(*) WARNINGS",
            "show count ( * ) errors;",
            "GET DIAGNOSTICS @n = NUMBER",
            "get current diagnostics condition 1 @m = MESSAGE_TEXT",
            "GET STACKED DIAGNOSTICS @n = NUMBER",
            "SELECT @@warning_count",
            "select @@session.error_count, @@server_id",
            "SELECT @@WARNING_COUNT AS w",
        ] {
            assert!(reads_diagnostics(sql), "{sql}");
        }
        for sql in [
            "SHOW TABLES",
            "SHOW COUNT(x) WARNINGS",
            "SHOW STATUS LIKE 'warnings'",
            "SELECT 'SHOW WARNINGS'",
            "SELECT warning_count FROM t",
            "SELECT 1; SELECT @@warning_count",
            "GET LOCK",
            "",
            "SHOW",
            "SHOW COUNT(*",
            "SELECT @warning_count",
        ] {
            assert!(!reads_diagnostics(sql), "{sql}");
        }
    }
}
