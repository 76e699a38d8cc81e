//! The playground's error type: every variant says what failed and carries
//! the cause (an io error, the server's error-log tail, the CLI's stderr).

use std::path::PathBuf;
use std::time::Duration;

/// The one command that installs everything the playground needs.
pub const INSTALL_HINT: &str = "apt-get install -y mariadb-server mariadb-client";

#[derive(thiserror::Error, Debug)]
pub enum PlaygroundError {
    /// A MariaDB program is not installed.
    #[error("{binary} not found in PATH, /usr/sbin or /usr/bin: install it with `{hint}` (or run scripts/install-deps --minimal)", hint = INSTALL_HINT)]
    MissingBinary { binary: &'static str },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A server directory inside a given cluster dir cannot be (re)used.
    #[error("cannot use {dir}: {reason}")]
    DirUnusable { dir: PathBuf, reason: String },

    /// `mariadb-install-db` (building the data-dir template) failed.
    #[error("mariadb-install-db into {datadir} failed ({status}):\n{output}")]
    InstallDb {
        datadir: PathBuf,
        status: String,
        output: String,
    },

    /// A server exited or did not accept connections in time.
    #[error("{server} (mariadbd on 127.0.0.1:{port}) failed to start: {reason}; tail of {log}:\n{log_tail}")]
    StartFailed {
        server: String,
        port: u16,
        reason: String,
        log: PathBuf,
        log_tail: String,
    },

    /// The `mariadb` CLI reported an error (or could not connect).
    #[error("SQL on {server} failed: {stderr}")]
    Sql { server: String, stderr: String },

    /// A replica did not reach the primary's position in time.
    #[error("{replica} did not catch up with the primary ({target}) within {timeout:?}: {detail}")]
    ReplicationTimeout {
        replica: String,
        target: String,
        timeout: Duration,
        detail: String,
    },
}

impl PlaygroundError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PlaygroundError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `map_err` helper: `.map_err(io_err("reading x"))`.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PlaygroundError {
    let context = context.into();
    move |source| PlaygroundError::io(context, source)
}
