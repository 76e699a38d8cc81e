//! Table-driven router tests: one line per rule.

use super::*;
use crate::classify::classify;
use crate::topology::{BackendState, Role, Topology};

fn backend(name: &str, role: Role, up: bool, lag: Option<u64>) -> BackendState {
    BackendState {
        name: name.into(),
        address: "127.0.0.1:1".into(),
        role,
        up,
        read_only: Some(role == Role::Replica),
        server_id: Some(1),
        version: None,
        ext_capabilities: None,
        last_error: None,
        lag_s: lag,
        replicating: Some(lag.is_some()),
        checked_at: None,
        consecutive_failures: 0,
        sources: Vec::new(),
        accepted: None,
        candidate: None,
    }
}

fn topo(r1: (bool, Option<u64>), r2: (bool, Option<u64>)) -> Topology {
    Topology {
        backends: vec![
            backend("primary", Role::Primary, true, None),
            backend("replica1", Role::Replica, r1.0, r1.1),
            backend("replica2", Role::Replica, r2.0, r2.1),
        ],
        primary: Some(0),
        split_brain: Vec::new(),
        role_epoch: 0,
        greeting_version: String::new(),
    }
}

fn healthy() -> Topology {
    topo((true, Some(0)), (true, Some(0)))
}

fn policy(edit: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::from_str("", "t").unwrap();
    edit(&mut p);
    p
}

fn no_primary_reads() -> Policy {
    policy(|p| p.routing.primary_accepts_reads = false)
}

fn run(sql: &str, view: &SessionView, p: &Policy, t: &Topology, tick: u64) -> Decision {
    route(
        &classify(sql),
        view,
        p,
        t,
        Loads {
            outstanding: &[0, 0, 0],
            tick,
            lag_ms: &[],
        },
        sql,
        &|| sql.to_string(),
    )
}

fn d(sql: &str) -> Decision {
    run(
        sql,
        &SessionView::default(),
        &no_primary_reads(),
        &healthy(),
        1,
    )
}

#[test]
fn statement_kinds() {
    let cases: &[(&str, &str, bool)] = &[
        // sql, reason, on a replica?
        ("SELECT c FROM t WHERE id = 1", "read", true),
        ("select * from t", "read", true),
        ("INSERT INTO t VALUES (1)", "write", false),
        ("UPDATE t SET a = 1", "write", false),
        ("DELETE FROM t", "write", false),
        ("SELECT * FROM t FOR UPDATE", "locking_read", false),
        ("SELECT * FROM t LOCK IN SHARE MODE", "locking_read", false),
        ("SELECT LAST_INSERT_ID()", "side_effect_function", false),
        ("SELECT GET_LOCK('x', 1)", "lock_function", false),
        (
            "SELECT a INTO @v FROM t LIMIT 1",
            "assigns_user_variable",
            false,
        ),
        ("SELECT @v := a FROM t", "assigns_user_variable", false),
        (
            "SELECT SQL_CALC_FOUND_ROWS * FROM t",
            "calc_found_rows",
            false,
        ),
        ("BEGIN", "transaction_control", false),
        ("COMMIT", "transaction_control", false),
        ("SET NAMES utf8mb4", "session_state", false),
        ("SET @a = 1", "session_state", false),
        ("USE app", "session_state", false),
        (
            "CREATE TEMPORARY TABLE tt (a INT)",
            "temporary_table",
            false,
        ),
        ("LOCK TABLES t WRITE", "lock_tables", false),
        ("CALL p()", "call", false),
        ("this is not sql", "unknown", false),
        ("EXPLAIN ROUTE SELECT 1", "causeway_statement", false),
    ];
    for (sql, reason, replica) in cases {
        let dec = d(sql);
        assert_eq!(dec.reason, *reason, "{sql}");
        let on_replica = matches!(dec.target, Target::Backend(i) if i > 0);
        assert_eq!(on_replica, *replica, "{sql}: {dec:?}");
    }
}

#[test]
fn hints_outrank_every_rule() {
    let t = healthy();
    let p = no_primary_reads();
    let pinned = SessionView {
        pin: Some(Pin::LockTables),
        ..Default::default()
    };
    assert_eq!(
        run(
            "/*FORCE_MASTER*/ SELECT 1",
            &SessionView::default(),
            &p,
            &t,
            0
        )
        .reason,
        "hint_primary"
    );
    let dec = run(
        "/*FORCE_SLAVE*/ INSERT INTO t VALUES (1)",
        &pinned,
        &p,
        &t,
        0,
    );
    assert_eq!(dec.reason, "hint_replica");
    assert!(matches!(dec.target, Target::Backend(1 | 2)));
    let dec = run(
        "/* causeway: route=replica2 */ SELECT 1",
        &SessionView::default(),
        &p,
        &t,
        0,
    );
    assert_eq!(dec.target, Target::Backend(2));
    let dec = run(
        "/* causeway: route=primary */ SELECT 1",
        &SessionView::default(),
        &p,
        &t,
        0,
    );
    assert_eq!(dec.target, Target::Primary);
    let down = topo((true, Some(0)), (false, Some(0)));
    let dec = run(
        "/* causeway: route=replica2 */ SELECT 1",
        &SessionView::default(),
        &p,
        &down,
        0,
    );
    assert_eq!(
        dec,
        Decision {
            target: Target::Primary,
            reason: Reason::HintBackendUnavailable
        }
    );
    let none = topo((false, None), (false, None));
    let dec = run(
        "/*FORCE_SLAVE*/ SELECT 1",
        &SessionView::default(),
        &p,
        &none,
        0,
    );
    assert_eq!(dec.reason, "hint_replica_unavailable");
}

#[test]
fn unhealthy_or_lagging_replicas_get_no_reads() {
    let p = no_primary_reads();
    let t = topo((false, Some(0)), (true, Some(0)));
    for tick in 0..10 {
        assert_eq!(
            run("SELECT 1", &SessionView::default(), &p, &t, tick).target,
            Target::Backend(2)
        );
    }
    let t = topo((true, Some(60)), (true, Some(1)));
    for tick in 0..10 {
        assert_eq!(
            run("SELECT 1", &SessionView::default(), &p, &t, tick).target,
            Target::Backend(2)
        );
    }
    // Not replicating (lag unknown) does not qualify.
    let t = topo((true, None), (true, None));
    assert_eq!(
        run("SELECT 1", &SessionView::default(), &p, &t, 0).reason,
        "no_replica"
    );
}

#[test]
fn reads_spread_and_primary_takes_reads_only_when_allowed() {
    let t = healthy();
    let mut seen = [0u32; 3];
    for tick in 0..30 {
        let dec = run(
            "SELECT 1",
            &SessionView::default(),
            &no_primary_reads(),
            &t,
            tick,
        );
        seen[dec.target.index(&t).unwrap()] += 1;
    }
    assert_eq!(
        seen[0], 0,
        "primary_accepts_reads = false keeps the primary out"
    );
    assert!(
        seen[1] > 5 && seen[2] > 5,
        "spread over both replicas: {seen:?}"
    );
    let mut seen = [0u32; 3];
    for tick in 0..30 {
        let dec = run(
            "SELECT 1",
            &SessionView::default(),
            &policy(|p| p.routing.primary_accepts_reads = true),
            &t,
            tick,
        );
        seen[dec.target.index(&t).unwrap()] += 1;
    }
    assert!(
        seen.iter().all(|&n| n > 5),
        "primary in the read pool: {seen:?}"
    );
}

#[test]
fn least_outstanding_prefers_the_idle_replica() {
    let p = no_primary_reads();
    let t = healthy();
    for tick in 0..10 {
        let dec = route(
            &classify("SELECT 1"),
            &SessionView::default(),
            &p,
            &t,
            Loads {
                outstanding: &[0, 9, 1],
                tick,
                lag_ms: &[],
            },
            "SELECT 1",
            &String::new,
        );
        assert_eq!(dec.target, Target::Backend(2));
    }
}

#[test]
fn round_robin_and_weights() {
    let t = healthy();
    let rr = policy(|p| {
        p.routing.primary_accepts_reads = false;
        p.routing.load_balance = LoadBalance::RoundRobin;
    });
    let a = run("SELECT 1", &SessionView::default(), &rr, &t, 0).target;
    let b = run("SELECT 1", &SessionView::default(), &rr, &t, 1).target;
    assert_ne!(a, b);
    let w = policy(|p| {
        p.routing.primary_accepts_reads = false;
        p.routing.load_balance = LoadBalance::Weighted;
        p.routing.weights.insert("replica1".into(), 9);
        p.routing.weights.insert("replica2".into(), 1);
    });
    let n1 = (0..1000)
        .filter(|&k| {
            run("SELECT 1", &SessionView::default(), &w, &t, k).target == Target::Backend(1)
        })
        .count();
    assert!((800..=980).contains(&n1), "weight 9:1 gave {n1}/1000");
}

#[test]
fn transactions() {
    let t = healthy();
    let p = no_primary_reads();
    let in_txn = SessionView {
        in_transaction: true,
        ..Default::default()
    };
    assert_eq!(run("SELECT 1", &in_txn, &p, &t, 0).reason, "in_transaction");
    let split = policy(|p| {
        p.routing.primary_accepts_reads = false;
        p.routing.transaction_split = true;
    });
    // REPEATABLE READ is not split unless the policy accepts it.
    assert_eq!(
        run("SELECT 1", &in_txn, &split, &t, 0).reason,
        "in_transaction"
    );
    let rc = SessionView {
        in_transaction: true,
        isolation: Isolation::ReadCommitted,
        ..Default::default()
    };
    assert_eq!(
        run("SELECT 1", &rc, &split, &t, 0).reason,
        "transaction_split"
    );
    let written = SessionView {
        transaction_written: true,
        ..rc.clone()
    };
    assert_eq!(
        run("SELECT 1", &written, &split, &t, 0).reason,
        "in_transaction"
    );
    let rr_ok = policy(|p| {
        p.routing.transaction_split = true;
        p.routing.transaction_split_repeatable_read = true;
    });
    assert_eq!(
        run("SELECT 1", &in_txn, &rr_ok, &t, 0).reason,
        "transaction_split"
    );
    // START TRANSACTION READ ONLY picks a replica; the whole transaction stays there.
    let dec = run(
        "START TRANSACTION READ ONLY",
        &SessionView::default(),
        &p,
        &t,
        0,
    );
    assert_eq!(dec.reason, "read_only_transaction");
    let bound = SessionView {
        in_transaction: true,
        transaction_backend: Some(2),
        ..Default::default()
    };
    assert_eq!(
        run("SELECT 1", &bound, &p, &t, 0).target,
        Target::Backend(2)
    );
    assert_eq!(run("COMMIT", &bound, &p, &t, 0).target, Target::Backend(2));
}

#[test]
fn session_state_sends_reads_to_the_primary() {
    let p = no_primary_reads();
    let t = healthy();
    let v = SessionView {
        user_vars_on_primary: true,
        ..Default::default()
    };
    assert_eq!(run("SELECT @v", &v, &p, &t, 0).reason, "user_variable");
    assert_eq!(
        run("SELECT @v", &SessionView::default(), &p, &t, 0).reason,
        "read"
    );
    let v = SessionView {
        uses_temporary_table: true,
        ..Default::default()
    };
    assert_eq!(
        run("SELECT * FROM tt", &v, &p, &t, 0).reason,
        "temporary_table"
    );
    let v = SessionView {
        pin: Some(Pin::LockTables),
        ..Default::default()
    };
    assert_eq!(
        run("SELECT 1", &v, &p, &t, 0),
        Decision {
            target: Target::Primary,
            reason: Reason::Pinned(Pin::LockTables)
        }
    );
}

#[test]
fn regex_rules_in_order_after_hints() {
    let t = healthy();
    let p = Policy::from_str(
        "[routing]\nprimary_accepts_reads = false\n[[rules]]\nmatch = '(?i)from reports'\ntarget = 'primary'\n[[rules]]\nmatch = '^UPDATE counters'\non = 'digest'\ntarget = 'replica2'\n",
        "t",
    )
    .unwrap();
    assert_eq!(
        run("SELECT * FROM reports", &SessionView::default(), &p, &t, 0).reason,
        "rule"
    );
    assert_eq!(
        run("SELECT * FROM reports", &SessionView::default(), &p, &t, 0).target,
        Target::Primary
    );
    assert_eq!(
        run(
            "/*FORCE_SLAVE*/ SELECT * FROM reports",
            &SessionView::default(),
            &p,
            &t,
            0
        )
        .reason,
        "hint_replica"
    );
    assert_eq!(
        run(
            "UPDATE counters SET n = n + 1",
            &SessionView::default(),
            &p,
            &t,
            0
        )
        .target,
        Target::Backend(2)
    );
}

#[test]
fn split_off_sends_everything_to_the_primary() {
    let p = policy(|p| p.routing.read_write_split = false);
    assert_eq!(
        run("SELECT 1", &SessionView::default(), &p, &healthy(), 0).reason,
        "split_off"
    );
}

/// Every replica takes reads, however many there are (a fixed list of 32
/// candidates once silently dropped those past the 31st).
#[test]
fn reads_reach_every_replica_beyond_the_thirty_first() {
    let n = 40;
    let mut backends = vec![backend("primary", Role::Primary, true, None)];
    backends.extend((1..=n).map(|i| backend(&format!("r{i}"), Role::Replica, true, Some(0))));
    let t = Topology {
        backends,
        primary: Some(0),
        split_brain: Vec::new(),
        role_epoch: 0,
        greeting_version: String::new(),
    };
    let outstanding = vec![0; n + 1];
    for p in [no_primary_reads(), policy(|_| {})] {
        let mut seen = std::collections::BTreeSet::new();
        for tick in 0..(2 * n as u64 + 2) {
            let sql = "SELECT c FROM t WHERE id = 1";
            let dec = route(
                &classify(sql),
                &SessionView::default(),
                &p,
                &t,
                Loads {
                    outstanding: &outstanding,
                    tick,
                    lag_ms: &[],
                },
                sql,
                &|| sql.to_string(),
            );
            match dec.target {
                Target::Backend(i) => seen.insert(i),
                Target::Primary => seen.insert(0),
                Target::Local => panic!("{dec:?}"),
            };
        }
        for i in 1..=n {
            assert!(seen.contains(&i), "replica {i} never chosen: {seen:?}");
        }
    }
}

/// The cluster after a switchover: backend 1 promoted, 0 a replica.
fn switched() -> Topology {
    let mut t = healthy();
    t.primary = Some(1);
    t.backends[0].role = Role::Replica;
    t.backends[0].lag_s = Some(0);
    t.backends[0].replicating = Some(true);
    t.backends[1].role = Role::Primary;
    t
}

#[test]
fn after_a_switchover_reads_avoid_the_new_primary_and_use_the_old_one() {
    let t = switched();
    let mut seen = [0u32; 3];
    for tick in 0..30 {
        let dec = run(
            "SELECT 1",
            &SessionView::default(),
            &no_primary_reads(),
            &t,
            tick,
        );
        seen[dec.target.index(&t).unwrap()] += 1;
    }
    assert_eq!(seen[1], 0, "the new primary takes no reads: {seen:?}");
    assert!(seen[0] > 5 && seen[2] > 5, "{seen:?}");
    let w = run(
        "UPDATE t SET a = 1",
        &SessionView::default(),
        &no_primary_reads(),
        &t,
        0,
    );
    assert_eq!(w.target, Target::Primary);
    assert_eq!(w.target.index(&t), Some(1));
    let hinted = run(
        "/* causeway: route=replica1 */ SELECT 1",
        &SessionView::default(),
        &no_primary_reads(),
        &t,
        0,
    );
    assert_eq!(
        hinted.target,
        Target::Primary,
        "naming the primary: {hinted:?}"
    );
}

#[test]
fn with_the_primary_down_replicas_whose_threads_stopped_serve_eventual_reads() {
    let mut t = healthy();
    t.backends[0].up = false;
    for r in 1..3 {
        // The I/O thread cannot reach the dead primary.
        t.backends[r].replicating = Some(false);
        t.backends[r].lag_s = None;
    }
    let dec = run(
        "SELECT 1",
        &SessionView::default(),
        &policy(|p| p.routing.primary_accepts_reads = true),
        &t,
        0,
    );
    assert!(dec.target.is_replica(&t), "{dec:?}");
    // With the primary up, a replica that stopped replicating is skipped.
    t.backends[0].up = true;
    let dec = run(
        "SELECT 1",
        &SessionView::default(),
        &no_primary_reads(),
        &t,
        0,
    );
    assert_eq!(dec.target, Target::Primary, "{dec:?}");
}
