//! The slow path: `sqlparser` (MySQL dialect) for the statements whose
//! leading tokens do not decide, mapped onto the few kinds it can settle.
//! Whatever it cannot parse, or parses into something not mapped here, is
//! `None`: the caller makes it `Unknown` (routed like a write).

use sqlparser::ast::{Query, SetExpr, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::Kind;

/// Statements longer than this are not handed to `sqlparser`: its trees
/// are recursive (deep ones cost stack to build and to drop), and a
/// statement the fast path could not place is not worth the time.
const MAX_PARSE_LEN: usize = 16 * 1024;

/// The kind of one statement (no `;` inside), if `sqlparser` can tell.
pub(crate) fn classify(text: &str) -> Option<Kind> {
    if text.len() > MAX_PARSE_LEN {
        return None;
    }
    let statements = Parser::parse_sql(&MySqlDialect {}, text).ok()?;
    match statements.as_slice() {
        [one] => statement(one),
        _ => None,
    }
}

fn statement(s: &Statement) -> Option<Kind> {
    match s {
        Statement::Query(q) => Some(query(q)),
        Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_)
        | Statement::Merge { .. } => Some(Kind::Write),
        _ => None,
    }
}

/// A query is a read unless it holds a data-changing body anywhere (a
/// writable CTE's main statement); locking clauses make it a locking read.
fn query(q: &Query) -> Kind {
    let mut locks = !q.locks.is_empty();
    // An explicit stack: set operations nest as deep as the input wants.
    let mut stack: Vec<&SetExpr> = vec![&q.body];
    while let Some(body) = stack.pop() {
        match body {
            SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => {}
            SetExpr::Query(inner) => {
                locks |= !inner.locks.is_empty();
                stack.push(&inner.body);
            }
            SetExpr::SetOperation { left, right, .. } => {
                stack.push(left);
                stack.push(right);
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                return Kind::Write
            }
        }
    }
    if locks {
        Kind::LockingRead
    } else {
        Kind::Read
    }
}
