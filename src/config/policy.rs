//! Routing/consistency policies: one TOML file each under `policies/`,
//! selected by the configuration (and overridable per user and database).

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::ConfigError;
use crate::consistency::Level;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Shown in /status, EXPLAIN ROUTE and logs.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub routing: Routing,
    /// How fresh reads must be, and what happens when no replica is.
    #[serde(default)]
    pub consistency: Consistency,
    /// Regex routing rules, evaluated in order after hints.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn default_name() -> String {
    "default".into()
}

/// How replicas are chosen among those that qualify.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalance {
    /// The replica with the fewest statements in flight (ties: lowest index).
    #[default]
    LeastOutstanding,
    RoundRobin,
    /// Random, proportional to `weights` (default weight 1).
    Weighted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Send reads to replicas. When false every statement runs on the primary.
    pub read_write_split: bool,
    /// Whether ordinary reads may run on the primary while a replica qualifies.
    /// With `false` the primary serves reads only when no replica qualifies.
    pub primary_accepts_reads: bool,
    pub load_balance: LoadBalance,
    /// Backend name -> weight, for `load_balance = "weighted"`.
    pub weights: BTreeMap<String, u32>,
    /// A replica whose `Seconds_Behind_Master` exceeds this gets no reads.
    pub max_replica_lag_ms: u64,
    /// Reads before a transaction's first write may run on replicas, where
    /// that cannot change what the client sees (READ COMMITTED / READ
    /// UNCOMMITTED).
    pub transaction_split: bool,
    /// Also split REPEATABLE READ (and SERIALIZABLE) transactions: the reads
    /// then do not share the transaction's snapshot. See docs/policies.md.
    pub transaction_split_repeatable_read: bool,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            read_write_split: true,
            primary_accepts_reads: false,
            load_balance: LoadBalance::LeastOutstanding,
            weights: BTreeMap::new(),
            max_replica_lag_ms: 10_000,
            transaction_split: false,
            transaction_split_repeatable_read: false,
        }
    }
}

/// The consistency level of reads and how long they may wait for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Consistency {
    /// `eventual`, `session`, `global` or `bounded:<N>ms`.
    pub level: Level,
    /// How long a read may wait for a replica to reach the position it
    /// needs before `on_timeout` applies.
    pub wait_timeout_ms: u64,
    pub on_timeout: OnTimeout,
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency {
            level: Level::Session,
            wait_timeout_ms: 1_000,
            on_timeout: OnTimeout::Primary,
        }
    }
}

impl Consistency {
    pub fn wait_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.wait_timeout_ms)
    }
}

/// What a read does when no replica reached its position in time.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Run on the primary, which has every committed write.
    #[default]
    Primary,
    /// Fail with ERROR 1969 (SQLSTATE 70100).
    Error,
}

/// What a rule's regex is matched against.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleOn {
    /// The statement text as sent.
    #[default]
    Text,
    /// The normalised digest: literals replaced by `?`, whitespace folded,
    /// comments removed, everything outside quoted identifiers upper-case
    /// (e.g. `SELECT C FROM T WHERE ID=?`).
    Digest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A regular expression (Rust `regex` syntax); `(?i)` for case-insensitive.
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub on: RuleOn,
    /// `primary`, `replica`, or a backend name.
    pub target: String,
    #[serde(skip)]
    pub regex: Option<Regex>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.on == other.on && self.target == other.target
    }
}

impl Policy {
    pub fn from_str(text: &str, file: &str) -> Result<Policy, ConfigError> {
        let mut p: Policy =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, e))?;
        for (i, r) in p.rules.iter_mut().enumerate() {
            let re = Regex::new(&r.pattern).map_err(|e| {
                ConfigError::new(
                    file,
                    &format!("rules[{i}].match"),
                    format!("invalid regex: {e}"),
                )
            })?;
            r.regex = Some(re);
            if r.target.is_empty() {
                return Err(ConfigError::new(
                    file,
                    &format!("rules[{i}].target"),
                    "must not be empty",
                ));
            }
        }
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&file, "(file)", format!("cannot read: {e}")))?;
        Policy::from_str(&text, &file)
    }

    /// Checks that every backend named by the policy exists.
    pub fn check_backends(&self, file: &str, names: &[&str]) -> Result<(), ConfigError> {
        for (i, r) in self.rules.iter().enumerate() {
            if r.target != "primary" && r.target != "replica" && !names.contains(&r.target.as_str())
            {
                return Err(ConfigError::new(
                    file,
                    &format!("rules[{i}].target"),
                    format!(
                        "'{}' is neither primary, replica nor a backend name",
                        r.target
                    ),
                ));
            }
        }
        for name in self.routing.weights.keys() {
            if !names.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    file,
                    &format!("routing.weights.{name}"),
                    "no backend has this name",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_split_reads() {
        let p = Policy::from_str("", "p.toml").unwrap();
        assert!(p.routing.read_write_split);
        assert!(!p.routing.primary_accepts_reads);
        assert_eq!(p.routing.load_balance, LoadBalance::LeastOutstanding);
    }

    #[test]
    fn rules_compile_and_bad_regex_is_named() {
        let p = Policy::from_str(
            "[[rules]]\nmatch = '(?i)^select .* from reports'\ntarget = 'replica'\n",
            "p.toml",
        )
        .unwrap();
        assert!(p.rules[0]
            .regex
            .as_ref()
            .unwrap()
            .is_match("SELECT x FROM reports"));
        let e =
            Policy::from_str("[[rules]]\nmatch = '('\ntarget = 'primary'\n", "p.toml").unwrap_err();
        assert_eq!(e.field, "rules[0].match");
        let p = Policy::from_str("[[rules]]\nmatch = 'x'\ntarget = 'nope'\n", "p.toml").unwrap();
        assert_eq!(
            p.check_backends("p.toml", &["primary", "replica1"])
                .unwrap_err()
                .field,
            "rules[0].target"
        );
    }

    #[test]
    fn unknown_routing_key_is_an_error() {
        let e = Policy::from_str("[routing]\nread_write_splitt = true\n", "p.toml").unwrap_err();
        assert!(e.reason.contains("read_write_splitt"), "{e}");
    }
}
