//! Running SQL through the `mariadb` CLI, and comparing MariaDB GTID
//! positions (a deliberately tiny copy: the playground must not depend on
//! the proxy's own `position` module, which is what it helps to test).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::error::{io_err, PlaygroundError};
use super::server::Server;

/// Runs `sql` on `server` as `user` over TCP in batch mode (`-N -B`): SQL
/// goes in on stdin (no argv length limit), stdout comes back.
pub(crate) async fn run(
    mariadb: &Path,
    server: &Server,
    user: &str,
    password: &str,
    sql: &str,
) -> Result<String, PlaygroundError> {
    run_with(mariadb, server, user, password, sql, false).await
}

/// Like [`run`]; `column_names` keeps the names (needed for `\G` output,
/// where `-N` would drop the field names).
pub(crate) async fn run_with(
    mariadb: &Path,
    server: &Server,
    user: &str,
    password: &str,
    sql: &str,
    column_names: bool,
) -> Result<String, PlaygroundError> {
    let mut cmd = tokio::process::Command::new(mariadb);
    cmd.arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={}", server.addr.port()))
        .arg(format!("--user={user}"))
        .args(["--batch", "--connect-timeout=10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !column_names {
        cmd.arg("--skip-column-names");
    }
    if !password.is_empty() {
        // Not on argv (visible in ps); the CLI reads MYSQL_PWD.
        cmd.env("MYSQL_PWD", password);
    } else {
        cmd.env_remove("MYSQL_PWD");
    }
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("spawning {}", mariadb.display())))?;
    let mut stdin = child.stdin.take();
    let input = sql.as_bytes().to_vec();
    let write = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A write error means the CLI exited early; its stderr says why.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.write_all(b"\n").await;
        }
        drop(stdin);
    };
    let (_, output) = tokio::join!(write, child.wait_with_output());
    let output = output.map_err(io_err(format!("running {}", mariadb.display())))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = format!("mariadb exited with {}", output.status);
        }
        Err(PlaygroundError::Sql {
            server: server.name.clone(),
            stderr,
        })
    }
}

/// Parses `domain-server-seq[,...]` into domain -> seq (the server id does
/// not matter for "has this replica applied that far").
pub(crate) fn parse_gtid_list(text: &str) -> HashMap<u32, u64> {
    let mut map = HashMap::new();
    for gtid in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = gtid.split('-');
        let (Some(domain), Some(_server), Some(seq)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if let (Ok(domain), Ok(seq)) = (domain.parse::<u32>(), seq.parse::<u64>()) {
            let entry = map.entry(domain).or_insert(seq);
            *entry = (*entry).max(seq);
        }
    }
    map
}

/// True when `have` has reached `want` in every domain `want` mentions.
pub(crate) fn covers(have: &str, want: &str) -> bool {
    let have = parse_gtid_list(have);
    parse_gtid_list(want)
        .iter()
        .all(|(domain, seq)| have.get(domain).is_some_and(|h| h >= seq))
}

/// Escapes a string for a single-quoted SQL literal.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_compares_per_domain() {
        assert!(covers("0-1-5", "0-1-5"));
        assert!(covers("0-1-6", "0-1-5"));
        assert!(!covers("0-1-4", "0-1-5"));
        assert!(covers("0-1-5,1-2-9", "1-2-9,0-1-3"));
        assert!(!covers("0-1-5", "0-1-5,1-1-1"));
        assert!(covers("", ""));
        assert!(covers("0-1-1", ""));
        assert!(!covers("", "0-1-1"));
        // A different server id in the same domain still counts by seq.
        assert!(covers("0-2-10", "0-1-10"));
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a'b\\c"), "'a''b\\\\c'");
    }
}
