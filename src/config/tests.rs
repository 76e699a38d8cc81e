use super::*;

const MINIMAL: &str = r#"
[cluster]
primary = { name = "primary", address = "127.0.0.1:3306" }
[monitor]
user = "causeway_monitor"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_str(MINIMAL, "t.toml").unwrap();
    assert_eq!(c.proxy.listen, "127.0.0.1:3366");
    assert_eq!(c.monitor.interval_ms, 500);
    assert_eq!(c.auth.source, AuthSource::Primary);
    assert!(c.cluster.replicas.is_empty());
}

#[test]
fn unknown_field_is_named() {
    let text = format!("{MINIMAL}\n[proxy]\nlisten_addr = \"x\"\n");
    let e = Config::from_str(&text, "my.toml").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("my.toml: "), "{s}");
    assert!(s.contains("listen_addr"), "{s}");
}

#[test]
fn bad_address_names_file_field_and_reason() {
    let text = MINIMAL.replace("127.0.0.1:3306", "localhost");
    let e = Config::from_str(&text, "c.toml").unwrap_err();
    assert_eq!(e.file, "c.toml");
    assert_eq!(e.field, "cluster.primary.address");
    assert!(e.reason.contains("host:port"), "{}", e.reason);
}

#[test]
fn duplicate_backend_names_are_rejected() {
    let text = format!(
        "{MINIMAL}\n[[cluster.replicas]]\nname = \"primary\"\naddress = \"127.0.0.1:3307\"\n"
    );
    let e = Config::from_str(&text, "c.toml").unwrap_err();
    assert_eq!(e.field, "cluster.replicas[0].name");
}

#[test]
fn user_needs_one_kind_of_password() {
    let text = format!(
        "{MINIMAL}\n[auth]\nsource = \"config\"\n[[auth.users]]\nname = \"a\"\npassword = \"x\"\npassword_hash = \"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19\"\n"
    );
    let e = Config::from_str(&text, "c.toml").unwrap_err();
    assert_eq!(e.field, "auth.users[0]");
    let text = format!("{MINIMAL}\n[auth]\nsource = \"config\"\n");
    assert_eq!(
        Config::from_str(&text, "c.toml").unwrap_err().field,
        "auth.users"
    );
}

#[test]
fn listen_must_be_an_address() {
    let text = format!("{MINIMAL}\n[proxy]\nlisten = \"nope\"\n");
    assert_eq!(
        Config::from_str(&text, "c.toml").unwrap_err().field,
        "proxy.listen"
    );
}

/// Every shipped example configuration and policy loads.
#[test]
fn every_shipped_config_and_policy_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for dir in ["config", "policies"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            if dir == "config" {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            } else {
                Policy::load(&path).unwrap_or_else(|e| panic!("{e}"));
            }
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected shipped files, found {seen}");
}

#[test]
fn per_user_and_database_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), "name = \"a\"\n").unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        "name = \"b\"\n[routing]\nread_write_split = false\n",
    )
    .unwrap();
    let cfg = format!(
        "policy = \"a.toml\"\n{MINIMAL}\n[users.report]\npolicy = \"b.toml\"\n[databases.billing]\npolicy = \"b.toml\"\n"
    );
    std::fs::write(dir.path().join("c.toml"), cfg).unwrap();
    let c = Config::load(&dir.path().join("c.toml")).unwrap();
    assert_eq!(c.policy_for("app", Some("app")).name, "a");
    assert_eq!(c.policy_for("report", Some("app")).name, "b");
    assert_eq!(c.policy_for("app", Some("billing")).name, "b");
    assert!(
        !c.policy_for("app", Some("billing"))
            .routing
            .read_write_split
    );
}

#[test]
fn policy_naming_a_missing_backend_is_rejected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[[rules]]\nmatch = 'x'\ntarget = 'ghost'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!("policy = \"p.toml\"\n{MINIMAL}"),
    )
    .unwrap();
    let e = Config::load(&dir.path().join("c.toml")).unwrap_err();
    assert_eq!(e.field, "rules[0].target");
    assert!(e.file.ends_with("p.toml"));
}

#[test]
fn instance_number_is_validated() {
    let ok = format!("[proxy]\ninstance = 127\n{MINIMAL}");
    assert_eq!(Config::from_str(&ok, "c.toml").unwrap().proxy.instance, 127);
    let bad = format!("[proxy]\ninstance = 128\n{MINIMAL}");
    let e = Config::from_str(&bad, "c.toml").unwrap_err();
    assert_eq!(e.field, "proxy.instance");
    assert!(e.reason.contains("0 to 127"), "{}", e.reason);
}

#[test]
fn config_users_privileges_are_known_names() {
    let ok = format!(
        "{MINIMAL}\n[auth]\nsource = \"config\"\n[[auth.users]]\nname = \"ops\"\nprivileges = [\"connection admin\", \"PROCESS\"]\n"
    );
    let c = Config::from_str(&ok, "c.toml").unwrap();
    assert_eq!(c.auth.users[0].privileges.len(), 2);
    let bad = ok.replace("PROCESS", "SELECT");
    let e = Config::from_str(&bad, "c.toml").unwrap_err();
    assert_eq!(e.field, "auth.users[0].privileges");
}

#[test]
fn passwords_come_from_files_and_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("monitor.pw");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A variable no other test sets.
    std::env::set_var("CAUSEWAY_TEST_APP_PW", "app-pw");
    let text = MINIMAL.replace(
        "user = \"causeway_monitor\"",
        "user = \"causeway_monitor\"\npassword_file = \"monitor.pw\"",
    ) + "[auth]\nsource = \"config\"\n[[auth.users]]\nname = \"app\"\npassword_env = \"CAUSEWAY_TEST_APP_PW\"\n";
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.monitor.password, "s3cret");
    assert_eq!(
        c.auth.users[0].stored_hash(),
        Some(StoredHash::from_password(b"app-pw"))
    );
    // No password in the text itself, none readable by others: no warning,
    // even though the config file is world-readable.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // A password file others can read is named.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("monitor.pw")),
        "{:?}",
        c.warnings
    );

    // Passwords in a world-readable config file: a warning; chmod 600: none.
    let inline = MINIMAL.replace(
        "user = \"causeway_monitor\"",
        "user = \"causeway_monitor\"\npassword = \"inline\"",
    );
    std::fs::write(&path, &inline).unwrap();
    let c = Config::load(&path).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("others can read")),
        "{:?}",
        c.warnings
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Config::load(&path).unwrap().warnings.is_empty());
}

#[test]
fn one_password_source_each_and_missing_ones_are_named() {
    let both = MINIMAL.replace(
        "user = \"causeway_monitor\"",
        "user = \"causeway_monitor\"\npassword = \"x\"\npassword_env = \"HOME\"",
    );
    let e = Config::from_str(&both, "c.toml").unwrap_err();
    assert_eq!(e.field, "monitor");
    let missing = MINIMAL.replace(
        "user = \"causeway_monitor\"",
        "user = \"causeway_monitor\"\npassword_env = \"CAUSEWAY_TEST_NEVER_SET\"",
    );
    let e = Config::from_str(&missing, "c.toml").unwrap_err();
    assert_eq!(e.field, "monitor.password_env");
    assert!(e.reason.contains("CAUSEWAY_TEST_NEVER_SET"), "{}", e.reason);
    let user = format!(
        "{MINIMAL}[[auth.users]]\nname = \"a\"\npassword_hash = \"*0000000000000000000000000000000000000000\"\npassword_file = \"x\"\n"
    );
    let e = Config::from_str(&user, "c.toml").unwrap_err();
    assert_eq!(e.field, "auth.users[0]");
}

#[test]
fn read_timeout_and_its_check() {
    let c = Config::from_str(MINIMAL, "t.toml").unwrap();
    assert_eq!(c.timeouts.read(), Some(Duration::from_millis(1_500)));
    assert_eq!(c.timeouts.probe(), Duration::from_millis(400));
    let text = format!("{MINIMAL}\n[timeouts]\nread_ms = 0\n");
    let c = Config::from_str(&text, "t.toml").unwrap();
    assert_eq!(c.timeouts.read(), None, "0: never check");
    let text = format!("{MINIMAL}\n[timeouts]\nprobe_ms = 0\n");
    let e = Config::from_str(&text, "t.toml").unwrap_err();
    assert_eq!(e.field, "timeouts.probe_ms");
}
