//! Finding the MariaDB programs, building the initial data directory once
//! per MariaDB version (the template), and copying it for each server.
//!
//! `mariadb-install-db` costs ~0.6 s of CPU; a sparse copy of its result
//! costs ~30 ms, which is what makes one cluster per test affordable.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{io_err, PlaygroundError};

/// Absolute paths of the programs the playground runs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    pub mariadb: PathBuf,
}

/// What every cluster start needs: the programs and a ready template.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub bins: Arc<Binaries>,
    /// `<template>/data`, a freshly installed data directory.
    pub template_data: PathBuf,
    /// True when running as root (then `--user=root` / `user=root`).
    pub as_root: bool,
}

const TEMPLATE_MARKER: &str = "causeway-template-complete";

/// Serialises preparation inside one process; other processes are handled
/// by the build-then-rename protocol in [`ensure_template`].
static PREPARED: tokio::sync::Mutex<Option<Prepared>> = tokio::sync::Mutex::const_new(None);

/// Finds the programs and makes sure the template exists (cached).
pub(crate) async fn prepare() -> Result<Prepared, PlaygroundError> {
    let mut cached = PREPARED.lock().await;
    if let Some(p) = cached.as_ref() {
        // /tmp cleaners may remove the template while we run: re-check.
        if p.template_data
            .parent()
            .is_some_and(|t| t.join(TEMPLATE_MARKER).exists())
        {
            return Ok(p.clone());
        }
    }
    let bins = Arc::new(find_binaries()?);
    let as_root = current_uid() == Some(0);
    let version = server_version(&bins.mariadbd).await?;
    let uid = current_uid().unwrap_or(u32::MAX);
    let template = std::env::temp_dir().join(format!("causeway-mariadb-template-{version}-u{uid}"));
    ensure_template(&bins, &template, as_root).await?;
    let prepared = Prepared {
        bins,
        template_data: template.join("data"),
        as_root,
    };
    *cached = Some(prepared.clone());
    Ok(prepared)
}

fn find_binaries() -> Result<Binaries, PlaygroundError> {
    Ok(Binaries {
        mariadbd: find_binary("mariadbd")?,
        install_db: find_binary("mariadb-install-db")?,
        mariadb: find_binary("mariadb")?,
    })
}

/// `$PATH`, then /usr/sbin and /usr/bin (root's PATH lacks nothing, but a
/// user's PATH usually lacks /usr/sbin, where Debian puts mariadbd).
pub(crate) fn find_binary(name: &'static str) -> Result<PathBuf, PlaygroundError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/bin".into()]);
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(PlaygroundError::MissingBinary { binary: name })
}

/// The effective uid, read from the owner of /proc/self (no libc needed).
fn current_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// `10.11.19-MariaDB-0+deb12u1`, sanitised for use in a file name.
async fn server_version(mariadbd: &Path) -> Result<String, PlaygroundError> {
    let out = tokio::process::Command::new(mariadbd)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io_err(format!("running {} --version", mariadbd.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .unwrap_or("unknown");
    Ok(version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect())
}

/// Builds the template into a private directory and renames it into place,
/// so concurrent test processes never see (or use) a half-built template.
async fn ensure_template(
    bins: &Binaries,
    template: &Path,
    as_root: bool,
) -> Result<(), PlaygroundError> {
    if template.join(TEMPLATE_MARKER).exists() {
        return Ok(());
    }
    let parent = template.parent().unwrap_or(Path::new("/tmp"));
    let build = tempfile::Builder::new()
        .prefix("causeway-mariadb-template-build-")
        .tempdir_in(parent)
        .map_err(io_err(format!(
            "creating a build dir in {}",
            parent.display()
        )))?;
    let datadir = build.path().join("data");
    let mut cmd = tokio::process::Command::new(&bins.install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            // Same redo log size as the servers use: no resize at first start.
            "--innodb-log-file-size=48M",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if as_root {
        cmd.arg("--user=root");
    }
    let out = cmd
        .output()
        .await
        .map_err(io_err(format!("running {}", bins.install_db.display())))?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(PlaygroundError::InstallDb {
            datadir,
            status: out.status.to_string(),
            output: tail(&output, 40),
        });
    }
    fs::write(build.path().join(TEMPLATE_MARKER), b"ok\n")
        .map_err(io_err("writing the template marker"))?;
    if template.exists() && !template.join(TEMPLATE_MARKER).exists() {
        // A leftover without the marker cannot come from a completed rename
        // (the marker is written before it): it is debris, replace it.
        let _ = fs::remove_dir_all(template);
    }
    match fs::rename(build.path(), template) {
        Ok(()) => {
            let _ = build.keep();
            Ok(())
        }
        // Another process won the race: use its template, drop ours.
        Err(_) if template.join(TEMPLATE_MARKER).exists() => Ok(()),
        Err(e) => Err(PlaygroundError::io(
            format!("renaming the template to {}", template.display()),
            e,
        )),
    }
}

/// Recursive copy; big files are copied sparsely (a fresh redo log is 48 MiB
/// of mostly zeros).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &to)?;
        } else if kind.is_file() {
            copy_file_sparse(&entry.path(), &to)?;
        }
    }
    fs::set_permissions(dst, fs::metadata(src)?.permissions())
}

fn copy_file_sparse(src: &Path, dst: &Path) -> std::io::Result<()> {
    const BLOCK: usize = 64 * 1024;
    let meta = fs::metadata(src)?;
    if meta.len() < 4 * BLOCK as u64 {
        fs::copy(src, dst)?;
        return Ok(());
    }
    let mut input = File::open(src)?;
    let mut output = File::create(dst)?;
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if chunk.iter().all(|b| *b == 0) {
            output.seek(SeekFrom::Current(n as i64))?;
        } else {
            output.write_all(chunk)?;
        }
    }
    // Materialises a trailing hole (and fixes the size).
    output.set_len(meta.len())?;
    output.set_permissions(meta.permissions())
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_copy_preserves_content_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        let mut big = vec![0u8; 1024 * 1024];
        big[0] = 1;
        big[300_000] = 7;
        fs::write(src.join("big"), &big).unwrap();
        fs::write(src.join("sub/small"), b"hello").unwrap();
        copy_tree(&src, &dir.path().join("dst")).unwrap();
        assert_eq!(fs::read(dir.path().join("dst/big")).unwrap(), big);
        assert_eq!(
            fs::read(dir.path().join("dst/sub/small")).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn missing_binary_says_what_to_install() {
        let err = find_binary("definitely-not-a-mariadb-binary").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("apt-get install -y mariadb-server mariadb-client"),
            "{text}"
        );
    }
}
