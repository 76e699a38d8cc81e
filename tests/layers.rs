//! The module order stated in `src/lib.rs` holds: every `crate::` path in a
//! module of `src/` names itself or a module after it in the `layers:` line
//! of the crate's doc comment, and every module is in that line. So an
//! upward import fails here instead of rotting the stated order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The order stated in `src/lib.rs`, top first.
fn stated_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let line = lib
        .lines()
        .find_map(|l| l.strip_prefix("//! layers:"))
        .expect("src/lib.rs states the order in a `//! layers:` line");
    line.split(',').map(|m| m.trim().to_string()).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate module a file of `src/` belongs to (None for the crate roots).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first.to_string()),
    }
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named by `crate::` paths in `code`, including
/// each branch of `crate::{a, b::c}`. Comment lines are skipped.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let text: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `my_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        start = true;
                        continue;
                    }
                    c if c.is_whitespace() => continue,
                    _ if start && depth == 0 => {
                        let id = ident_at(&group[i..]);
                        if !id.is_empty() {
                            found.insert(id.to_string());
                        }
                    }
                    _ => {}
                }
                start = false;
            }
        } else {
            let id = ident_at(rest);
            if !id.is_empty() {
                found.insert(id.to_string());
            }
        }
    }
    found
}

#[test]
fn imports_point_down_the_stated_order() {
    let order = stated_order();
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut modules = BTreeSet::new();
    for f in &files {
        let Some(module) = module_of(f) else { continue };
        modules.insert(module.clone());
        let Some(own) = rank(&module) else { continue };
        let code = std::fs::read_to_string(f).expect("readable source");
        for used in crate_paths(&code) {
            match rank(&used) {
                Some(r) if r > own => {}
                _ if used == module => {}
                // `crate::Error` and the like: items of the crate root.
                None if used.starts_with(|c: char| c.is_ascii_uppercase()) => {}
                _ => wrong.push(format!(
                    "{}: `{module}` uses `crate::{used}`",
                    f.strip_prefix(src()).unwrap_or(f).display()
                )),
            }
        }
    }
    let missing: Vec<_> = modules.iter().filter(|m| rank(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules missing from the `layers:` line of src/lib.rs: {missing:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports against the order stated in src/lib.rs ({}):\n{}",
        order.join(" > "),
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths() {
    let code = "use crate::{config::Config, error::Error};\n\
                use crate::{\n    pool::{conn, txn_pool},\n    metrics as m,\n};\n\
                fn f() { crate::router::route(); }\n\
                // use crate::session;\n\
                macro_rules! x { () => { $crate::nothing } }";
    let got: Vec<_> = crate_paths(code).into_iter().collect();
    assert_eq!(got, ["config", "error", "metrics", "pool", "router"]);
}
