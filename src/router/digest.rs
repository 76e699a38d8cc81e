//! The normalised digest of a statement, for `on = "digest"` rules:
//! comments removed (executable `/*! */` comments keep their content),
//! string and number literals replaced by `?`, whitespace folded to one
//! space, everything outside quoted identifiers upper-case.

/// Computes the digest. Linear in the statement's length.
pub fn digest(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut space = false;
    let push_space = |out: &mut String, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                space = true;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') && b.get(i + 2) != Some(&b'!') => {
                i = find(b, i + 2, b"*/").map_or(b.len(), |e| e + 2);
                space = true;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Executable comment: keep its content, drop the markers and version.
                i += 3;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                space = true;
            }
            b'*' if b.get(i + 1) == Some(&b'/') => {
                i += 2;
                space = true;
            }
            b'#' => {
                i = find(b, i, b"\n").unwrap_or(b.len());
                space = true;
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = find(b, i, b"\n").unwrap_or(b.len());
                space = true;
            }
            b'\'' | b'"' => {
                i = skip_quoted(b, i, c);
                push_space(&mut out, &mut space);
                out.push('?');
            }
            b'`' => {
                let end = skip_quoted(b, i, b'`');
                push_space(&mut out, &mut space);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'0'..=b'9'
                if !out.ends_with(|p: char| p.is_ascii_alphanumeric() || p == '_' || p == '$')
                    || space =>
            {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                push_space(&mut out, &mut space);
                out.push('?');
            }
            _ => {
                push_space(&mut out, &mut space);
                // Keep UTF-8 intact: copy the whole character.
                let len = utf8_len(c);
                let end = (i + len).min(b.len());
                if let Some(s) = sql.get(i..end) {
                    out.push_str(&s.to_ascii_uppercase());
                }
                i = end;
            }
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

/// The index just past a quoted run starting at `start` (backslash and
/// doubled-quote escapes).
fn skip_quoted(b: &[u8], start: usize, q: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn literals_comments_and_case() {
        assert_eq!(
            digest("select c from sbtest1 where id=5033"),
            "SELECT C FROM SBTEST1 WHERE ID=?"
        );
        assert_eq!(
            digest("/* app */ SELECT *\n  FROM t WHERE a = 'x''y' AND b IN (1, 2.5) -- tail\n"),
            "SELECT * FROM T WHERE A = ? AND B IN (?, ?)"
        );
        assert_eq!(
            digest("UPDATE `My Table` SET v = \"a\\\"b\" # c"),
            "UPDATE `My Table` SET V = ?"
        );
        assert_eq!(digest("/*!40101 SET NAMES utf8 */"), "SET NAMES UTF8");
        assert_eq!(digest("SELECT 1"), digest("select   2"));
        assert_eq!(digest("select é from t1"), "SELECT é FROM T1");
        assert_eq!(digest("'unterminated"), "?");
    }
}
