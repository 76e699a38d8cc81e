//! `[transaction_replay]`: replay of a transaction interrupted by the loss
//! or a switchover of the primary (see docs/high-availability.md).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Off by default: a replayed transaction runs its statements a second
    /// time on the new primary (accepted only when each returns what it
    /// returned the first time).
    pub enabled: bool,
    /// A transaction whose recorded statements pass this many bytes is not
    /// replayed (its record is dropped).
    pub max_bytes: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            enabled: false,
            max_bytes: 1 << 20,
        }
    }
}
