//! Consistency levels and what they demand of a replica.
//!
//! A read at a given [`Level`] needs a replica whose replication position
//! covers some position: the session's own writes and reads (session), the
//! primary's position when the read started (global), or the primary's
//! position some time ago (bounded staleness). [`positions`] keeps what
//! Causeway knows about every backend's position; [`Flavor`] is the SQL each
//! server flavour speaks to report and wait for positions; causal tokens
//! carry a session's position to another connection.
//!
//! May import `error`, `position`, `protocol`, `metrics`; never `config`
//! (which reads [`Level`] from policy files) or anything above it.

pub mod positions;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use crate::position::{MariaPosition, Position};

pub use positions::{FreshTicket, LeadGuard, Positions, Sample, WaitShare};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// Any healthy replica within the policy's maximum lag.
    Eventual,
    /// Read-your-writes and monotonic reads within a client session.
    #[default]
    Session,
    /// Every write committed anywhere before the read started.
    Global,
    /// Every write committed at least this long before the read started.
    Bounded(Duration),
}

impl Level {
    /// Parses `eventual`, `session`, `global`, `bounded:200ms`, `bounded:2s`
    /// (case-insensitive; a bare number after `bounded:` is milliseconds).
    pub fn parse(text: &str) -> Option<Level> {
        let t = text.trim().trim_matches(['\'', '"']).to_ascii_lowercase();
        Some(match t.as_str() {
            "eventual" => Level::Eventual,
            "session" => Level::Session,
            "global" => Level::Global,
            _ => {
                let rest = t
                    .strip_prefix("bounded:")
                    .or_else(|| t.strip_prefix("bounded="))?;
                let rest = rest.trim();
                let (num, unit) = match rest.find(|c: char| !c.is_ascii_digit()) {
                    Some(i) => rest.split_at(i),
                    None => (rest, "ms"),
                };
                let n: u64 = num.parse().ok()?;
                let ms = match unit.trim() {
                    "ms" => n,
                    "s" => n.checked_mul(1000)?,
                    _ => return None,
                };
                Level::Bounded(Duration::from_millis(ms))
            }
        })
    }

    /// The metric label: `eventual`, `session`, `global`, `bounded`.
    pub fn label(self) -> &'static str {
        match self {
            Level::Eventual => "eventual",
            Level::Session => "session",
            Level::Global => "global",
            Level::Bounded(_) => "bounded",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Bounded(d) => write!(f, "bounded:{}ms", d.as_millis()),
            other => f.write_str(other.label()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Level, D::Error> {
        let s = String::deserialize(d)?;
        Level::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown consistency level '{s}': expected eventual, session, global or bounded:<N>ms"
            ))
        })
    }
}

/// The server flavour: which SQL reports and waits for positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// MariaDB: GTID positions, `MASTER_GTID_WAIT`, `last_gtid` tracking.
    #[default]
    MariaDb,
    /// MySQL: GTID sets, `WAIT_FOR_EXECUTED_GTID_SET`,
    /// `session_track_gtids=OWN_GTID`. Not yet tested against a real MySQL
    /// server.
    Mysql,
}

impl Flavor {
    /// From a server's version string (`10.11.6-MariaDB-...`, `8.0.36`).
    pub fn from_version(version: &str) -> Flavor {
        if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::Mysql
        }
    }

    /// The statement a backend answers with its position, one row, one
    /// column. The primary reports what it has committed (binlogged); a
    /// replica what it has applied (what the wait function waits for).
    pub fn position_query(self, primary: bool) -> &'static str {
        match (self, primary) {
            (Flavor::MariaDb, true) => "SELECT @@gtid_binlog_pos",
            (Flavor::MariaDb, false) => "SELECT @@gtid_slave_pos",
            (Flavor::Mysql, _) => "SELECT @@GLOBAL.gtid_executed",
        }
    }

    /// What backend connections turn on so that every write's position
    /// arrives in its OK packet (MariaDB reports `last_gtid` through
    /// `session_track_system_variables`, set up with the other tracking).
    pub fn tracking_setup(self) -> Option<&'static str> {
        match self {
            Flavor::MariaDb => None,
            Flavor::Mysql => Some("SET SESSION session_track_gtids = OWN_GTID"),
        }
    }

    /// Parses a position as this flavour reports it.
    pub fn parse(self, text: &str) -> Option<Position> {
        match self {
            Flavor::MariaDb => Position::parse_maria(text).ok(),
            Flavor::Mysql => Position::parse_mysql(text).ok(),
        }
    }

    /// A statement that waits until the server has applied `pos`, at most
    /// `timeout`, and returns one row whose value [`Flavor::wait_reached`]
    /// reads.
    pub fn wait_statement(self, pos: &Position, timeout: Duration) -> String {
        let secs = format!("{:.3}", timeout.as_secs_f64());
        match self {
            Flavor::MariaDb => format!("SELECT MASTER_GTID_WAIT('{pos}', {secs})"),
            Flavor::Mysql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{pos}', {secs})"),
        }
    }

    /// Whether the value the wait statement returned means "reached":
    /// MariaDB returns 0 (reached) or -1 (timed out); MySQL 0 or 1. NULL
    /// (an error, e.g. not a replica) is never reached.
    pub fn wait_reached(self, value: Option<&str>) -> bool {
        value.is_some_and(|v| v.trim() == "0")
    }
}

/// A causal token: an opaque, comment-safe text carrying a position.
/// `cw1m` + hex of a MariaDB position, `cw1y` + hex of a MySQL GTID set.
pub fn encode_token(pos: &Position) -> String {
    let (tag, text) = match pos {
        Position::Maria(p) => ('m', p.to_string()),
        Position::Mysql(p) => ('y', p.to_string()),
    };
    let mut out = format!("cw1{tag}");
    for b in text.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The position in a token made by [`encode_token`].
pub fn decode_token(token: &str) -> Option<Position> {
    let t = token.trim();
    let rest = t.strip_prefix("cw1")?;
    let tag = rest.chars().next()?;
    let hex = &rest[1..];
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    match tag {
        'm' => text.parse::<MariaPosition>().ok().map(Position::Maria),
        'y' => Position::parse_mysql(&text).ok(),
        _ => None,
    }
}

/// How far `have` is from covering `need`: 0 when it covers it; otherwise
/// the number of transactions missing as far as positions can tell. Picks
/// the most promising replica to wait on.
pub fn distance(have: &Position, need: &Position) -> u64 {
    if have.covers(need) {
        return 0;
    }
    match (have, need) {
        (Position::Maria(h), Position::Maria(n)) => h.missing(n),
        (Position::Mysql(h), Position::Mysql(n)) => h.missing(n),
        _ => u64::MAX,
    }
}
