#[test]
fn a_names_collation_moves_and_a_new_character_set_drops_it() {
    let names = |cs: &str| {
        [
            "character_set_client",
            "character_set_connection",
            "character_set_results",
        ]
        .map(|k| (k.to_string(), cs.to_string()))
    };
    let mut s = SessionState::default();
    s.record_vars(&names("utf8mb4"));
    assert!(s.set_collation("utf8mb4_bin"));
    // A connection at its login values: the collation comes after the
    // character set, which would otherwise reset it.
    let fresh = Applied::default();
    let set = s.pooled_set(&fresh, true, &BTreeMap::new(), None).unwrap();
    let cs = set.find("character_set_connection").unwrap();
    let coll = set.find("collation_connection='utf8mb4_bin'").unwrap();
    assert!(cs < coll, "{set}");

    // SET NAMES latin1 (no COLLATE): the recorded collation is gone, and
    // a connection that has it gets the character set once more.
    let had = Applied {
        vars: s.vars_for(true),
        ..Applied::default()
    };
    s.record_vars(&names("latin1"));
    assert_eq!(s.var("collation_connection"), None);
    let set = s.pooled_set(&had, true, &BTreeMap::new(), None).unwrap();
    assert!(
        set.ends_with("@@session.character_set_connection='latin1'"),
        "{set}"
    );
}
use super::*;

#[test]
fn records_versions_and_builds_one_statement() {
    let mut s = SessionState::default();
    assert_eq!(s.sync_statement(true), None);
    assert!(s.record_vars(&[
        ("time_zone".into(), "+02:00".into()),
        ("sql_mode".into(), "ANSI_QUOTES".into()),
        ("sort_buffer_size".into(), "1048576".into()),
        ("autocommit".into(), "OFF".into()),
        ("last_gtid".into(), "0-1-5".into()),
    ]));
    assert_eq!(s.version, 1);
    assert!(!s.record_vars(&[("time_zone".into(), "+02:00".into())]));
    assert_eq!(s.version, 1);
    assert_eq!(
        s.sync_statement(false).unwrap(),
        "SET SESSION sort_buffer_size=1048576, sql_mode='ANSI_QUOTES', time_zone='+02:00'"
    );
    assert_eq!(
        s.sync_statement(true).unwrap(),
        "SET SESSION autocommit='OFF', sort_buffer_size=1048576, sql_mode='ANSI_QUOTES', time_zone='+02:00'"
    );
}

#[test]
fn pooled_connections_are_brought_to_the_session() {
    let mut s = SessionState::default();
    s.record_vars(&[
        ("time_zone".into(), "+03:00".into()),
        ("autocommit".into(), "OFF".into()),
    ]);
    let mut applied = Applied::default();
    let vars = Arc::make_mut(&mut applied.vars);
    vars.insert("sql_mode".into(), "ANSI_QUOTES".into());
    vars.insert("character_set_client".into(), "latin1".into());
    applied
        .baseline
        .insert("character_set_client".into(), "utf8mb4".into());
    Arc::make_mut(&mut applied.user_vars).insert("old".into(), "1".into());
    let mut user = BTreeMap::new();
    user.insert("n".into(), "7".into());
    assert_eq!(
        s.pooled_set(&applied, true, &user, Some(5)).unwrap(),
        "SET @@session.autocommit='OFF', @@session.character_set_client='utf8mb4', \
         @@session.sql_mode=DEFAULT, @@session.time_zone='+03:00', @`n`=7, @`old`=CAST(NULL AS BINARY), \
         @@session.last_insert_id=5"
    );
    // A replica connection never gets autocommit.
    assert!(!s
        .pooled_set(&applied, false, &user, None)
        .unwrap()
        .contains("autocommit"));
    // In step: nothing to do.
    let applied = Applied {
        vars: s.vars_for(true),
        user_vars: Arc::new(user.clone()),
        ..Applied::default()
    };
    assert_eq!(s.pooled_set(&applied, true, &user, None), None);
}

#[test]
fn connections_share_the_sessions_maps_copy_on_write() {
    let mut s = SessionState::default();
    s.record_vars(&[("time_zone".into(), "+03:00".into())]);
    // No primary-only variable: replicas are brought to the same map.
    assert!(Arc::ptr_eq(s.shared_vars(true), s.shared_vars(false)));
    let applied = Applied {
        vars: s.vars_for(true),
        ..Applied::default()
    };
    assert!(Arc::ptr_eq(&applied.vars, s.shared_vars(true)));
    assert_eq!(s.pooled_set(&applied, true, &BTreeMap::new(), None), None);
    // A change leaves what the connection was brought to as it was.
    s.record_vars(&[("autocommit".into(), "OFF".into())]);
    assert_eq!(applied.vars.len(), 1);
    assert_eq!(
        s.pooled_set(&applied, true, &BTreeMap::new(), None)
            .unwrap(),
        "SET @@session.autocommit='OFF'"
    );
    // A replica connection never takes autocommit: still in step.
    assert_eq!(s.pooled_set(&applied, false, &BTreeMap::new(), None), None);
    assert!(!s.shared_vars(false).contains_key("autocommit"));
}

#[test]
fn user_variable_literals_keep_their_type() {
    assert_eq!(user_var_literal(Some("42"), 8, 63).as_deref(), Some("42"));
    assert_eq!(
        user_var_literal(Some("2.50"), 246, 63).as_deref(),
        Some("2.50")
    );
    assert_eq!(
        user_var_literal(Some("1.5"), 5, 63).as_deref(),
        Some("1.5e0")
    );
    assert_eq!(user_var_literal(None, 253, 45).as_deref(), Some("NULL"));
    assert_eq!(
        user_var_literal(Some("é'"), 253, 45).as_deref(),
        Some("_utf8mb4 X'C3A927'")
    );
    assert_eq!(user_var_literal(Some("x"), 253, 9999), None);
    assert_eq!(user_var_literal(Some("1; DROP"), 8, 63), None);
}

#[test]
fn string_values_keep_their_bytes_and_character_set() {
    assert_eq!(
        string_literal("E9FF80", "latin1").as_deref(),
        Some("_latin1 X'E9FF80'")
    );
    assert_eq!(string_literal("", "binary").as_deref(), Some("_binary''"));
    assert_eq!(string_literal("E9F", "latin1"), None);
    assert_eq!(string_literal("E9", "x'; DROP"), None);
    assert!(is_string_type(253) && is_string_type(252) && !is_string_type(8));
}

#[test]
fn quoting_and_nulls() {
    assert_eq!(sql_value("x", "it's"), "'it''s'");
    assert_eq!(sql_value("x", "a\\b"), "'a\\\\b'");
    assert_eq!(sql_value("character_set_results", ""), "NULL");
    assert_eq!(sql_value("x", "-1.5"), "-1.5");
    assert_eq!(sql_value("x", "1-2"), "'1-2'");
}

#[test]
fn isolation_from_tracked_variable() {
    let mut s = SessionState::default();
    assert_eq!(s.isolation(), Isolation::RepeatableRead);
    s.record_vars(&[("tx_isolation".into(), "READ-COMMITTED".into())]);
    assert_eq!(s.isolation(), Isolation::ReadCommitted);
}

#[test]
fn temp_tables_are_created_and_dropped_by_name() {
    use crate::classify::temp_table_changes;
    let mut s = SessionState::default();
    s.learn_temp_tables(temp_table_changes("CREATE TEMPORARY TABLE t (a INT)"));
    s.learn_temp_tables(temp_table_changes(
        "CREATE TEMPORARY TABLE T (a INT); CREATE TEMPORARY TABLE `é` (a INT)",
    ));
    assert_eq!(
        s.temp_tables,
        vec![b"t".to_vec(), b"T".to_vec(), "é".into()]
    );
    assert!(s.mentions_temp_table("SELECT * FROM É".as_bytes()));
    // The exact name first: `t` stays while `T` goes.
    s.learn_temp_tables(temp_table_changes("DROP TEMPORARY TABLE T, `É`"));
    assert_eq!(s.temp_tables, vec![b"t".to_vec()]);
    s.learn_temp_tables(temp_table_changes("DROP TEMPORARY TABLE IF EXISTS db.T"));
    assert!(s.temp_tables.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The session-state helpers take any bytes a client sends (as
    /// statements) or a backend returns (as values) without panicking,
    /// and a table the session created is mentioned by a read of it.
    #[test]
    fn session_state_helpers_take_any_bytes(
        stmt in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..160),
        name in proptest::collection::vec(0x80u8..=0xff, 1..8),
        value in "\\PC{0,40}",
        ty in proptest::prelude::any::<u8>(),
        cs in proptest::prelude::any::<u16>(),
    ) {
        use crate::classify::temp_table_changes;
        let mut s = SessionState::default();
        s.learn_temp_tables(temp_table_changes(&stmt));
        let _ = s.mentions_temp_table(&stmt);
        let create = [b"CREATE TEMPORARY TABLE ".as_slice(), &name, b" (a INT)"].concat();
        s.learn_temp_tables(temp_table_changes(&create));
        let read = [b"SELECT * FROM ".as_slice(), &name].concat();
        proptest::prop_assert!(s.mentions_temp_table(&read));
        s.learn_temp_tables(temp_table_changes(&stmt));
        let _ = user_var_literal(Some(&value), ty, cs);
        let _ = string_literal(&value, &value);
        let _ = sql_value(&value, &value);
    }
}
