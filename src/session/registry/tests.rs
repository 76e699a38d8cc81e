use super::*;

fn killer(user: &str) -> Killer<'_> {
    Killer {
        user,
        privileges: Privileges::default(),
    }
}

fn admin() -> Killer<'static> {
    Killer {
        user: "root",
        privileges: Privileges {
            connection_admin: true,
            ..Privileges::default()
        },
    }
}

#[test]
fn register_kill_and_drop() {
    let r = Registry::new();
    let id = r.reserve().unwrap().id;
    let reg = r.register(id, "app".into(), "127.0.0.1".into(), Privileges::default());
    assert_eq!(r.list(), vec![(id, "app".into(), "127.0.0.1".into())]);
    assert!(matches!(
        r.kill(id, killer("other")),
        Err(Error::NotOwnerOfThread(_))
    ));
    assert!(!reg.is_killed());
    assert!(r.kill(id, killer("app")).is_ok());
    assert!(reg.is_killed());
    drop(reg);
    assert!(r.is_empty());
    assert!(matches!(
        r.kill(id, killer("app")),
        Err(Error::NoSuchThread(_))
    ));
}

#[test]
fn connection_admin_or_super_kill_others_process_does_not() {
    let r = Registry::new();
    let id = r.reserve().unwrap().id;
    let reg = r.register(id, "app".into(), "h".into(), Privileges::default());
    let process = Killer {
        user: "ops",
        privileges: Privileges {
            process: true,
            ..Privileges::default()
        },
    };
    assert!(matches!(
        r.kill(id, process),
        Err(Error::NotOwnerOfThread(_))
    ));
    let sup = Killer {
        user: "ops",
        privileges: Privileges {
            super_: true,
            ..Privileges::default()
        },
    };
    assert_eq!(r.query_target(id, sup).unwrap(), QueryTarget::Idle);
    reg.set_running(Some(Running {
        backend: 1,
        thread_id: 77,
    }));
    assert_eq!(
        r.query_target(id, admin()).unwrap(),
        QueryTarget::Running(Running {
            backend: 1,
            thread_id: 77
        })
    );
    assert!(r.kill(id, admin()).is_ok());
}

#[test]
fn kill_user_is_refused_whole_and_change_user_moves_the_session() {
    let r = Registry::new();
    let a = r.reserve().unwrap().id;
    let b = r.reserve().unwrap().id;
    let _ra = r.register(a, "app".into(), "h".into(), Privileges::default());
    let _rb = r.register(b, "app".into(), "h".into(), Privileges::default());
    assert!(matches!(
        r.sessions_of("app", None, killer("bob")),
        Err(Error::KillUserDenied { .. })
    ));
    assert_eq!(
        r.sessions_of("app", Some("%"), killer("app"))
            .unwrap()
            .len(),
        2
    );
    assert!(r
        .sessions_of("nobody", None, killer("bob"))
        .unwrap()
        .is_empty());
    r.set_user(b, "bob", Privileges::default());
    assert_eq!(r.sessions_of("app", None, admin()).unwrap().len(), 1);
    assert!(r.kill(b, killer("bob")).is_ok());
    assert!(matches!(
        r.kill(a, killer("bob")),
        Err(Error::NotOwnerOfThread(_))
    ));
}

#[test]
fn ids_wrap_without_reusing_a_live_id_and_carry_the_instance() {
    let r = Registry::with_instance(5);
    let first = r.reserve().unwrap().id;
    assert_eq!(first, (5 << ID_BITS) | 1);
    let live = r.register(first, "app".into(), "h".into(), Privileges::default());
    let held = r.reserve().unwrap();
    assert_eq!(held.id, (5 << ID_BITS) | 2);
    // Jump to the end of the id space: the counter wraps, skips 0, the
    // live session's id and the reserved one.
    r.next_id.store(ID_MASK, Ordering::Relaxed);
    let last = r.reserve().unwrap();
    assert_eq!(last.id, (5 << ID_BITS) | ID_MASK);
    let wrapped = r.reserve().unwrap();
    assert_eq!(wrapped.id, (5 << ID_BITS) | 3);
    // A dropped reservation gives its id back.
    drop(held);
    r.next_id.store(2, Ordering::Relaxed);
    assert_eq!(r.reserve().unwrap().id, (5 << ID_BITS) | 2);
    drop(live);
    assert!(Registry::with_instance(MAX_INSTANCE).reserve().unwrap().id < 1 << 31);
}

#[test]
fn activity_is_published_and_cleared() {
    let r = Registry::new();
    let reg = r.register(
        7,
        "app".into(),
        "127.0.0.1:5000".into(),
        Privileges::default(),
    );
    assert_eq!(r.rows()[0].command, "Sleep");
    reg.begin("Query", Some(Bytes::from_static(b"SELECT \xff")));
    let row = &r.rows()[0];
    assert_eq!(row.command, "Query");
    assert_eq!(row.info.as_deref(), Some(&b"SELECT \xff"[..]));
    reg.end();
    let row = &r.rows()[0];
    assert_eq!((row.command, row.info.is_none()), ("Sleep", true));
}

#[test]
fn each_user_sees_its_own_sessions_unless_it_sees_all() {
    let r = Registry::new();
    let _a = r.register(1, "alice".into(), "h:1".into(), Privileges::default());
    let _b = r.register(2, "bob".into(), "h:2".into(), Privileges::default());
    let _a2 = r.register(3, "alice".into(), "h:3".into(), Privileges::default());
    let ids = |v: Vec<Row>| v.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(r.visible_rows("alice", false)), vec![1, 3]);
    assert_eq!(ids(r.visible_rows("bob", false)), vec![2]);
    assert_eq!(ids(r.visible_rows("carol", false)), Vec::<u32>::new());
    assert_eq!(ids(r.visible_rows("bob", true)), vec![1, 2, 3]);
}
