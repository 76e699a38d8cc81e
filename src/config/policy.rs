//! Routing/consistency policies: one TOML file each under `policies/`.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Shown in /status and logs.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub routing: Routing,
}

fn default_name() -> String {
    "default".into()
}

/// Routing keys. Every statement runs on the primary for now; the router's
/// keys (read/write split, load balancing, rules) are added with it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {}

impl Policy {
    pub fn from_str(text: &str, file: &str) -> Result<Policy, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, e))
    }

    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&file, "(file)", format!("cannot read: {e}")))?;
        Policy::from_str(&text, &file)
    }
}
