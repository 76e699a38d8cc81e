//! How long a logged-in client may take to send its next whole command:
//! the server's `wait_timeout` rule. A client that logged in with
//! CLIENT_INTERACTIVE starts with `interactive_timeout`; a session's own
//! `SET [SESSION] wait_timeout = N` (reported by the server through session
//! tracking, so known whichever way it was spelt) replaces it. The defaults
//! come from `[timeouts]` in the configuration. A partial packet counts as
//! no command: a client that sends half a packet and stops is closed too.

use std::time::Duration;

use crate::protocol::consts::cap;

impl super::Session {
    /// The session's current `wait_timeout`.
    pub(super) fn wait_timeout(&self) -> Duration {
        let cfg = self.ctx.cluster.config();
        let default = if self.client.caps & cap::INTERACTIVE != 0 {
            cfg.timeouts.interactive_timeout_s
        } else {
            cfg.timeouts.wait_timeout_s
        };
        let secs = self
            .state
            .var("wait_timeout")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(default);
        // The server's own floor is one second.
        Duration::from_secs(secs.max(1))
    }

    /// Ends a session whose client sent no command within `idle`; as the
    /// server does, without a packet.
    pub(super) fn idle_timed_out(&self, idle: Duration) {
        tracing::debug!(
            session = self.id,
            timeout_s = idle.as_secs(),
            "client idle past wait_timeout: closing"
        );
    }
}
