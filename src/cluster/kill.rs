//! Interrupting a statement a session runs on a backend: Causeway logs in
//! to that backend with the monitor account on a side connection and sends
//! `KILL QUERY <thread>` or `KILL CONNECTION <thread>` for the backend
//! thread the session itself published. The thread id always comes from
//! Causeway, never from a client. Needs `CONNECTION ADMIN` (or `SUPER`)
//! for the monitor account; bounded by a timeout.

use std::time::Duration;

use super::Cluster;
use crate::error::Error;

/// What to end on the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKill {
    /// The statement; the backend connection goes on.
    Query,
    /// The backend connection (and its statement).
    Connection,
}

/// ER_NO_SUCH_THREAD: the backend thread is already gone.
const NO_SUCH_THREAD: u16 = 1094;

impl Cluster {
    /// Sends `KILL QUERY|CONNECTION thread_id` to backend `index` on a
    /// side connection. A thread that is already gone counts as done.
    pub async fn kill_backend_thread(
        &self,
        index: usize,
        thread_id: u32,
        what: BackendKill,
    ) -> Result<(), Error> {
        let sql = match what {
            BackendKill::Query => format!("KILL QUERY {thread_id}"),
            BackendKill::Connection => format!("KILL CONNECTION {thread_id}"),
        };
        let limit = self.config().timeouts.connect() + Duration::from_secs(1);
        let attempt = async {
            let mut conn = self.monitor_connect(index).await?;
            match conn.query_rows(&sql).await {
                Ok(_) => Ok(()),
                Err(Error::Server(e)) if e.code == NO_SUCH_THREAD => Ok(()),
                Err(e) => Err(e),
            }
        };
        let backend = || {
            self.topology()
                .backends
                .get(index)
                .map(|b| b.name.clone())
                .unwrap_or_default()
        };
        // The backend's own error would name its thread id, which means
        // nothing to the client: say what Causeway could not do instead.
        let result = match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::KillFailed {
                backend: backend(),
                reason: e.to_string(),
            }),
            Err(_) => Err(Error::KillFailed {
                backend: backend(),
                reason: format!("no answer within {} ms", limit.as_millis()),
            }),
        };
        if let Err(e) = &result {
            tracing::warn!(backend = index, thread_id, error = %e,
                "could not kill a backend statement from a side connection");
        }
        result
    }
}
