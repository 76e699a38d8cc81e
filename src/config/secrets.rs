//! Secrets kept out of the configuration text: the monitor's password and
//! static users' passwords may come from an environment variable
//! (`password_env`) or a file (`password_file`, relative to the config
//! file, a trailing newline dropped). A configuration whose own text holds
//! passwords and that others can read gets a warning.

use std::path::Path;

use super::{Config, ConfigError};

/// Reads `password_env` / `password_file` into the passwords (at most one
/// source each), noting whether the text itself holds any.
pub(super) fn resolve(cfg: &mut Config, file: &str, base: &Path) -> Result<(), ConfigError> {
    cfg.secrets_in_text = !cfg.monitor.password.is_empty()
        || !cfg.switchover.replication_password.is_empty()
        || cfg.proxy.admin_token.is_some()
        || cfg.auth.users.iter().any(|u| {
            u.password.as_deref().is_some_and(|p| !p.is_empty()) || u.password_hash.is_some()
        });
    let m = &mut cfg.monitor;
    let given = [
        !m.password.is_empty(),
        m.password_env.is_some(),
        m.password_file.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ConfigError::new(
            file,
            "monitor",
            "give one of `password`, `password_env`, `password_file`",
        ));
    }
    let mut warnings = Vec::new();
    if let Some(p) = read(
        file,
        "monitor",
        "password",
        m.password_env.take(),
        m.password_file.take(),
        base,
        &mut warnings,
    )? {
        m.password = p;
    }
    for (i, u) in cfg.auth.users.iter_mut().enumerate() {
        let field = format!("auth.users[{i}]");
        let given = [
            u.password.is_some(),
            u.password_hash.is_some(),
            u.password_env.is_some(),
            u.password_file.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ConfigError::new(
                file,
                &field,
                "give one of `password`, `password_hash`, `password_env`, `password_file`",
            ));
        }
        if let Some(p) = read(
            file,
            &field,
            "password",
            u.password_env.take(),
            u.password_file.take(),
            base,
            &mut warnings,
        )? {
            u.password = Some(p);
        }
    }
    let sw = &mut cfg.switchover;
    one_of(
        file,
        "switchover",
        "replication_password",
        [
            !sw.replication_password.is_empty(),
            sw.replication_password_env.is_some(),
            sw.replication_password_file.is_some(),
        ],
    )?;
    if let Some(p) = read(
        file,
        "switchover",
        "replication_password",
        sw.replication_password_env.take(),
        sw.replication_password_file.take(),
        base,
        &mut warnings,
    )? {
        sw.replication_password = p;
    }
    let px = &mut cfg.proxy;
    one_of(
        file,
        "proxy",
        "admin_token",
        [
            px.admin_token.is_some(),
            px.admin_token_env.is_some(),
            px.admin_token_file.is_some(),
        ],
    )?;
    if let Some(t) = read(
        file,
        "proxy",
        "admin_token",
        px.admin_token_env.take(),
        px.admin_token_file.take(),
        base,
        &mut warnings,
    )? {
        px.admin_token = Some(t);
    }
    cfg.warnings.extend(warnings);
    Ok(())
}

/// At most one of `key`, `key_env`, `key_file` is given.
fn one_of(file: &str, section: &str, key: &str, given: [bool; 3]) -> Result<(), ConfigError> {
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ConfigError::new(
            file,
            section,
            format!("give one of `{key}`, `{key}_env`, `{key}_file`"),
        ));
    }
    Ok(())
}

/// The password from `env` or `path`, if either is given.
fn read(
    file: &str,
    field: &str,
    key: &str,
    env: Option<String>,
    path: Option<std::path::PathBuf>,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, ConfigError> {
    if let Some(name) = env {
        return std::env::var(&name).map(Some).map_err(|_| {
            ConfigError::new(
                file,
                &format!("{field}.{key}_env"),
                format!("environment variable {name} is not set (or not UTF-8)"),
            )
        });
    }
    let Some(p) = path else { return Ok(None) };
    let p = if p.is_relative() { base.join(p) } else { p };
    let text = std::fs::read_to_string(&p).map_err(|e| {
        ConfigError::new(
            file,
            &format!("{field}.{key}_file"),
            format!("cannot read {}: {e}", p.display()),
        )
    })?;
    if others_can_read(&p) {
        warnings.push(format!(
            "{}: a password file ({field}) that others can read (chmod 600)",
            p.display()
        ));
    }
    Ok(Some(
        text.strip_suffix('\n')
            .unwrap_or(&text)
            .trim_end_matches('\r')
            .to_string(),
    ))
}

/// Whether the configuration's own text held passwords.
pub(super) fn in_text(cfg: &Config) -> bool {
    cfg.secrets_in_text
}

/// Whether users other than the owner (group or others) can read `path`.
pub(super) fn others_can_read(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}
