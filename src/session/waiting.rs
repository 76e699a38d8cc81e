//! What a relay watches besides the backend while it waits for the reply:
//! the session's kill signal, the client going away, and a backend that
//! stays silent (`timeouts.read_ms`, then a liveness check).

use super::ClientStream;
use crate::pool::conn::BackendConn;

/// What a relay watches besides the backend while it waits for it.
#[derive(Clone, Copy, Default)]
pub struct Watch<'a> {
    /// The session's kill signal.
    pub kill: Option<&'a tokio::sync::Notify>,
    /// Notice a client that closes its connection (its socket reads EOF);
    /// bytes it sends meanwhile stay in its stream's buffer.
    pub client_eof: bool,
    /// Check a backend that stays silent (`timeouts.read_ms`).
    pub silence: Option<Silence<'a>>,
}

/// A backend that has sent nothing for `after` is checked: while it answers
/// a new connection (see [`crate::cluster::Cluster::greets`]) it is only
/// slow and the wait goes on; otherwise the reply is given up.
#[derive(Clone, Copy)]
pub struct Silence<'a> {
    pub after: std::time::Duration,
    pub cluster: &'a crate::cluster::Cluster,
    pub index: usize,
}

impl<'a> Silence<'a> {
    /// The check of backend `index`, when `timeouts.read_ms` asks for one.
    pub fn of(cluster: &'a crate::cluster::Cluster, index: usize) -> Option<Silence<'a>> {
        cluster.config().timeouts.read().map(|after| Silence {
            after,
            cluster,
            index,
        })
    }

    /// Resolves when the backend has been silent for `after` and then
    /// failed its check; never while it passes them.
    pub(super) async fn hung(self) {
        loop {
            tokio::time::sleep(self.after).await;
            if !self.cluster.answers(self.index).await {
                return;
            }
        }
    }
}

/// What happened first while waiting for the backend.
pub(super) enum Woke {
    Backend(std::io::Result<usize>),
    Killed,
    /// The client sent bytes (kept in its buffer) or closed (`true`).
    Client(bool),
    /// The backend stayed silent and failed its check.
    Hung,
}

/// Waits for more of the backend's reply, or a kill, or the client going
/// away. Reading the client here is cancel-safe: what it sends stays in
/// its stream's buffer for the command loop.
pub(super) async fn wait_backend(
    client: &mut ClientStream,
    backend: &mut BackendConn,
    kill: Option<&tokio::sync::Notify>,
    watch_client: bool,
    silence: Option<Silence<'_>>,
) -> Woke {
    let killed = async {
        match kill {
            Some(k) => k.notified().await,
            None => std::future::pending().await,
        }
    };
    let client_read = async {
        if watch_client {
            client.fill().await
        } else {
            std::future::pending().await
        }
    };
    let hung = async {
        match silence {
            Some(s) => s.hung().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = backend.stream.fill() => Woke::Backend(r),
        _ = killed => Woke::Killed,
        r = client_read => Woke::Client(!matches!(r, Ok(n) if n > 0)),
        _ = hung => Woke::Hung,
    }
}

/// Why a silent backend's reply was given up.
pub fn hung_reason(silence: Option<Silence<'_>>) -> String {
    match silence {
        Some(s) => format!(
            "the backend sent nothing for {:?} and did not answer a new connection within {:?}",
            s.after,
            s.cluster.config().timeouts.probe()
        ),
        None => "the backend stopped answering".into(),
    }
}
