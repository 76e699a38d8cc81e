//! Routing hints from the statement's leading comments.
//!
//! Only block comments before the first token count; a hint inside a
//! string or after the first token is text, not a hint. Recognised:
//! `/*FORCE_MASTER*/` and `/*FORCE_SLAVE*/` (PolarDB syntax, any case,
//! spaces allowed) and `/* causeway: key=value ... */` with the keys
//! `route`, `consistency` and `after`, pairs separated by spaces or
//! commas. Unknown keys and malformed pairs are ignored. When several
//! comments set the same hint the last one wins.
//!
//! The common case (no leading comment) allocates nothing; a value is
//! copied only when a hint carries one.

use super::{Hints, RouteHint};

/// Hints from the leading comments of `sql`.
pub(crate) fn leading(sql: &str) -> Hints {
    let mut hints = Hints::default();
    // The common case: the statement starts with a keyword.
    let first = sql
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    if !matches!(first, Some(b'/' | b'#' | b'-')) {
        return hints;
    }
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}', '\u{c}']);
        if let Some(body) = rest.strip_prefix("/*") {
            if body.starts_with('!') || body.starts_with("M!") || body.starts_with("m!") {
                return hints; // an executable comment is SQL: the first token
            }
            let (content, after) = match body.find("*/") {
                Some(i) => (body.get(..i).unwrap_or(""), body.get(i + 2..).unwrap_or("")),
                None => (body, ""),
            };
            apply_comment(content, &mut hints);
            rest = after;
        } else if rest.starts_with('#') || is_dash_comment(rest) {
            rest = match rest.find('\n') {
                Some(i) => rest.get(i + 1..).unwrap_or(""),
                None => "",
            };
        } else {
            return hints;
        }
    }
}

fn is_dash_comment(s: &str) -> bool {
    let b = s.as_bytes();
    b.starts_with(b"--") && b.get(2).is_none_or(|c| *c <= b' ')
}

/// Applies one comment's content, if it is a hint.
fn apply_comment(content: &str, hints: &mut Hints) {
    let c = content.trim();
    if c.eq_ignore_ascii_case("FORCE_MASTER") {
        hints.route = Some(RouteHint::Primary);
        return;
    }
    if c.eq_ignore_ascii_case("FORCE_SLAVE") {
        hints.route = Some(RouteHint::Replica);
        return;
    }
    let Some(prefix) = c.get(..8) else { return };
    if !prefix.eq_ignore_ascii_case("causeway") {
        return;
    }
    let Some(pairs) = c.get(8..).unwrap_or("").trim_start().strip_prefix(':') else {
        return;
    };
    apply_pairs(pairs, hints);
}

fn is_sep(c: char) -> bool {
    c.is_whitespace() || c == ','
}

/// `key=value` pairs separated by spaces or commas; `key = value` works too.
fn apply_pairs(mut rest: &str, hints: &mut Hints) {
    loop {
        rest = rest.trim_start_matches(is_sep);
        if rest.is_empty() {
            return;
        }
        let key_end = rest
            .find(|c: char| c == '=' || is_sep(c))
            .unwrap_or(rest.len());
        let key = rest.get(..key_end).unwrap_or("");
        rest = rest.get(key_end..).unwrap_or("");
        let Some(v) = rest.trim_start().strip_prefix('=') else {
            continue; // a bare word: ignore it
        };
        let v = v.trim_start();
        let value_end = v.find(is_sep).unwrap_or(v.len());
        let value = unquote(v.get(..value_end).unwrap_or(""));
        rest = v.get(value_end..).unwrap_or("");
        if !value.is_empty() && !value.contains('=') {
            apply_pair(key, value, hints);
        }
    }
}

fn unquote(v: &str) -> &str {
    for q in ['\'', '"', '`'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn apply_pair(key: &str, value: &str, hints: &mut Hints) {
    if key.eq_ignore_ascii_case("route") {
        hints.route = Some(if value.eq_ignore_ascii_case("primary") {
            RouteHint::Primary
        } else if value.eq_ignore_ascii_case("replica") {
            RouteHint::Replica
        } else {
            RouteHint::Backend(value.to_owned())
        });
    } else if key.eq_ignore_ascii_case("consistency") {
        hints.consistency = Some(value.to_ascii_lowercase());
    } else if key.eq_ignore_ascii_case("after") {
        hints.after = Some(value.to_owned());
    }
}
