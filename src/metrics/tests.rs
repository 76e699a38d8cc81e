//! A handle records into the same series as the name-and-labels macro, so
//! moving a call site from one to the other changes nothing on `/metrics`.

use metrics_exporter_prometheus::PrometheusBuilder;

use super::*;

const BACKENDS: [&str; 2] = ["primary", "replica1"];

fn labels_and<R>(f: impl FnOnce(&Handles) -> R) -> (R, String) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let render = recorder.handle();
    let backends: Vec<String> = BACKENDS.iter().map(|b| b.to_string()).collect();
    let r = ::metrics::with_local_recorder(&recorder, || {
        let h = Handles::new(&Labels {
            backends: &backends,
            commands: &["query", "ping"],
            routes: &[(RouteTarget::Replica, "read")],
            error_kinds: &["backend_lost"],
        });
        f(&h)
    });
    (r, render.render())
}

/// The value of the one series `series` (name and labels as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn handles_and_macros_share_series() {
    let ((), text) = labels_and(|h| {
        h.command("query");
        ::metrics::counter!(COMMANDS, "command" => "query").increment(1);
        h.route(RouteTarget::Replica, "read");
        ::metrics::counter!(ROUTE_DECISIONS, "target" => "replica", "reason" => "read")
            .increment(1);
        h.client_error("backend_lost");
        ::metrics::counter!(CLIENT_ERRORS, "kind" => "backend_lost").increment(1);
        h.backend(BackendCounter::Connects, 1, "replica1");
        ::metrics::counter!(BACKEND_CONNECTS, "backend" => "replica1".to_string()).increment(1);
        h.backend(BackendCounter::SessionPoolReuses, 0, "primary");
        h.consistency_read(Level::Global, Served::ReplicaAfterWait);
        ::metrics::counter!(CONSISTENCY_READS, "level" => "global", "served" => "replica_after_wait")
            .increment(1);
        h.pin(PinReason::UserLock);
        h.pin_label("user_lock");
        h.pinned_sessions().increment(1.0);
        ::metrics::gauge!(PINNED_SESSIONS).increment(1.0);
        h.session_pool_idle().set(3.0);
        h.login_failure(LoginFailure::WrongPassword);
        h.client_connections().increment(1);
    });
    for (series, want) in [
        (r#"causeway_commands_total{command="query"}"#, 2.0),
        (r#"causeway_commands_total{command="ping"}"#, 0.0),
        (
            r#"causeway_route_decisions_total{target="replica",reason="read"}"#,
            2.0,
        ),
        (r#"causeway_client_errors_total{kind="backend_lost"}"#, 2.0),
        (
            r#"causeway_backend_connects_total{backend="replica1"}"#,
            2.0,
        ),
        (r#"causeway_backend_connects_total{backend="primary"}"#, 0.0),
        (
            r#"causeway_session_pool_reuses_total{backend="primary"}"#,
            1.0,
        ),
        (
            r#"causeway_consistency_reads_total{level="global",served="replica_after_wait"}"#,
            2.0,
        ),
        (r#"causeway_pins_total{reason="user_lock"}"#, 2.0),
        ("causeway_pinned_sessions", 2.0),
        ("causeway_session_pool_idle", 3.0),
        (
            r#"causeway_login_failures_total{reason="wrong_password"}"#,
            1.0,
        ),
        ("causeway_client_connections_total", 1.0),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    }
}

#[test]
fn labels_not_known_at_start_are_still_counted() {
    let ((), text) = labels_and(|h| {
        h.command("stmt_execute");
        h.route(RouteTarget::Primary, "write");
        h.client_error("pool_timeout");
        h.backend(BackendCounter::Lost, 7, "replica9");
        // Index known, name not: the name wins (the label is the name).
        h.backend(BackendCounter::Lost, 1, "renamed");
        h.pin_label("something_new");
    });
    for series in [
        r#"causeway_commands_total{command="stmt_execute"}"#,
        r#"causeway_route_decisions_total{target="primary",reason="write"}"#,
        r#"causeway_client_errors_total{kind="pool_timeout"}"#,
        r#"causeway_backend_lost_total{backend="replica9"}"#,
        r#"causeway_backend_lost_total{backend="renamed"}"#,
        r#"causeway_pins_total{reason="something_new"}"#,
    ] {
        assert_eq!(value(&text, series), Some(1.0), "{series} in\n{text}");
    }
    assert_eq!(
        value(&text, r#"causeway_backend_lost_total{backend="replica1"}"#),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn waits_are_recorded_by_level() {
    let ((), text) = labels_and(|h| {
        h.consistency_wait(Level::Session, 0.25);
        h.consistency_wait(Level::Session, 0.5);
        ::metrics::histogram!(CONSISTENCY_WAIT, "level" => "session").record(1.0);
    });
    assert_eq!(
        value(
            &text,
            r#"causeway_consistency_wait_seconds_count{level="session"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"causeway_consistency_wait_seconds_sum{level="session"}"#
        ),
        Some(1.75),
        "{text}"
    );
}

#[test]
fn label_enums_round_trip() {
    fn check<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        label: fn(T) -> &'static str,
        of: fn(&str) -> Option<T>,
    ) {
        for (i, v) in all.iter().enumerate() {
            assert_eq!(of(label(*v)), Some(*v));
            assert!(all[..i].iter().all(|w| label(*w) != label(*v)));
        }
        assert_eq!(of("no such label"), None);
    }
    check(RouteTarget::ALL, RouteTarget::label, RouteTarget::of_label);
    check(Level::ALL, Level::label, Level::of_label);
    check(Served::ALL, Served::label, Served::of_label);
    check(PinReason::ALL, PinReason::label, PinReason::of_label);
    check(
        LoginFailure::ALL,
        LoginFailure::label,
        LoginFailure::of_label,
    );
    check(
        BackendCounter::ALL,
        BackendCounter::label,
        BackendCounter::of_label,
    );
    // `as usize` indexes ALL (the handles are stored in that order).
    for (i, v) in PinReason::ALL.iter().enumerate() {
        assert_eq!(*v as usize, i);
    }
}
