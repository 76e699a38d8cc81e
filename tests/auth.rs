//! Logging in through Causeway: clients use their real database accounts,
//! get the same errors (code, SQLSTATE, message) a direct connection would
//! give, and nothing about other accounts leaks.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use causeway::protocol::auth::Credential;
use causeway::protocol::consts::cap;
use causeway::protocol::handshake::{AuthSwitch, Handshake, HandshakeResponse};
use causeway::protocol::packet::write_packets;
use causeway::protocol::stream::PacketStream;
use common::raw::err_of;
use common::Env;
use mysql_async::prelude::*;
use mysql_async::OptsBuilder;
use tokio::net::TcpStream;
use tokio::time::timeout;

const REPLY: Duration = Duration::from_secs(10);

fn opts(addr: SocketAddr, user: &str, pass: Option<&str>, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(user))
        .pass(pass)
        .db_name(db)
        // Stay on the TCP address given (no switch to the server's socket).
        .prefer_socket(false)
}

async fn connect(o: OptsBuilder) -> Result<mysql_async::Conn, mysql_async::Error> {
    timeout(REPLY, mysql_async::Conn::new(o))
        .await
        .expect("login answered in time")
}

/// The ERR a login gets: (code, SQLSTATE, message).
async fn login_error(o: OptsBuilder) -> (u16, String, String) {
    match connect(o).await {
        Err(mysql_async::Error::Server(e)) => (e.code, e.state, e.message),
        Err(e) => panic!("expected a server error, got {e:?}"),
        Ok(_) => panic!("expected the login to be refused"),
    }
}

/// Logs in, retrying until `deadline` (for accounts Causeway learns of by
/// reloading).
async fn login_eventually(o: OptsBuilder, within: Duration) -> mysql_async::Conn {
    let deadline = Instant::now() + within;
    loop {
        match connect(o.clone()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() >= deadline => {
                panic!("login still refused after {within:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The `mariadb` CLI against any address (`None` password: no `-p`).
async fn cli_at(
    env: &Env,
    addr: SocketAddr,
    user: &str,
    pass: Option<&str>,
    db: Option<&str>,
    sql: &str,
) -> Output {
    let mut cmd = tokio::process::Command::new(env.cluster.mariadb_cli());
    cmd.arg("--no-defaults")
        .arg("-h")
        .arg(addr.ip().to_string())
        .arg("-P")
        .arg(addr.port().to_string())
        .arg(format!("-u{user}"))
        .arg("-N")
        .arg("-B");
    if let Some(p) = pass {
        cmd.arg(format!("-p{p}"));
    }
    cmd.arg("-e").arg(sql);
    if let Some(db) = db {
        cmd.arg(db);
    }
    timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("CLI finishes")
        .expect("CLI runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// `ERROR 1045 (28000): ...` from the CLI's stderr: (code, SQLSTATE, message).
fn cli_error(o: &Output) -> (u16, String, String) {
    assert!(
        !o.status.success(),
        "the CLI should have failed; stdout {:?}",
        String::from_utf8_lossy(&o.stdout)
    );
    let e = stderr(o);
    let rest = e
        .strip_prefix("ERROR ")
        .unwrap_or_else(|| panic!("CLI error line: {e}"));
    let (code, rest) = rest.split_once(" (").unwrap();
    let (state, msg) = rest.split_once("): ").unwrap();
    (code.parse().unwrap(), state.to_string(), msg.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_match_a_direct_connection() {
    let env = Env::start(0).await;
    let primary = env.cluster.primary.addr;
    env.primary_sql(
        "CREATE USER 'limited'@'%' IDENTIFIED BY 'limited-pw'; GRANT ALL ON app.* TO 'limited'@'%';",
    )
    .await;
    // Causeway learns of the new account (not what this test is about).
    drop(
        login_eventually(
            opts(env.proxy, "limited", Some("limited-pw"), Some("app")),
            Duration::from_secs(5),
        )
        .await,
    );

    struct Case {
        what: &'static str,
        user: &'static str,
        pass: &'static str,
        db: &'static str,
        code: u16,
        state: &'static str,
        message: &'static str,
    }
    let cases = [
        Case {
            what: "wrong password",
            user: "app",
            pass: "wrong",
            db: "app",
            code: 1045,
            state: "28000",
            message: "Access denied for user 'app'@'127.0.0.1' (using password: YES)",
        },
        Case {
            what: "unknown user",
            user: "nobody",
            pass: "app-secret",
            db: "app",
            code: 1045,
            state: "28000",
            message: "Access denied for user 'nobody'@'127.0.0.1' (using password: YES)",
        },
        Case {
            what: "database the account may not use",
            user: "limited",
            pass: "limited-pw",
            db: "sbtest",
            code: 1044,
            state: "42000",
            message: "Access denied for user 'limited'@'%' to database 'sbtest'",
        },
        Case {
            what: "unknown database",
            user: "app",
            pass: "app-secret",
            db: "nope",
            code: 1049,
            state: "42000",
            message: "Unknown database 'nope'",
        },
    ];
    for c in &cases {
        let via = login_error(opts(env.proxy, c.user, Some(c.pass), Some(c.db))).await;
        assert_eq!(
            via,
            (c.code, c.state.to_string(), c.message.to_string()),
            "{} through Causeway",
            c.what
        );
        let direct = login_error(opts(primary, c.user, Some(c.pass), Some(c.db))).await;
        assert_eq!(
            (direct.0, &direct.1),
            (via.0, &via.1),
            "{}: same code and SQLSTATE as the primary ({direct:?})",
            c.what
        );
        assert_eq!(direct.2, via.2, "{}: same message as the primary", c.what);

        let out = cli_at(
            &env,
            env.proxy,
            c.user,
            Some(c.pass),
            Some(c.db),
            "SELECT 1",
        )
        .await;
        let cli = cli_error(&out);
        assert_eq!(
            cli,
            (c.code, c.state.to_string(), c.message.to_string()),
            "{} with the CLI",
            c.what
        );
        let out = cli_at(&env, primary, c.user, Some(c.pass), Some(c.db), "SELECT 1").await;
        let direct = cli_error(&out);
        assert_eq!(
            (direct.0, &direct.1),
            (cli.0, &cli.1),
            "{}: CLI through Causeway vs direct",
            c.what
        );
    }
    // Unknown user and wrong password cannot be told apart.
    let a = login_error(opts(env.proxy, "app", Some("nope"), None)).await;
    let b = login_error(opts(env.proxy, "ghost", Some("nope"), None)).await;
    assert_eq!((a.0, &a.1), (b.0, &b.1));
    assert_eq!(a.2.replace("'app'", "'ghost'"), b.2);
    // The right password still works afterwards.
    let mut c = connect(opts(env.proxy, "app", Some("app-secret"), Some("app")))
        .await
        .unwrap();
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("app@%"));
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_created_after_start_logs_in_at_once() {
    let env = Env::start(0).await;
    // Causeway is up and has served a login (its account list is loaded).
    drop(
        connect(opts(env.proxy, "app", Some("app-secret"), Some("app")))
            .await
            .unwrap(),
    );
    env.primary_sql(
        "CREATE USER 'late'@'%' IDENTIFIED BY 'late-pw'; GRANT SELECT ON app.* TO 'late'@'%';",
    )
    .await;
    // First attempt, no retry: an unknown user makes Causeway reload.
    let r = connect(opts(env.proxy, "late", Some("late-pw"), Some("app"))).await;
    let mut c = r.unwrap_or_else(|e| panic!("a new account must log in at once: {e}"));
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("late@%"));
    drop(c);
    // The CLI too.
    let out = cli_at(
        &env,
        env.proxy,
        "late",
        Some("late-pw"),
        None,
        "SELECT CURRENT_USER()",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_applies_after_the_next_reload() {
    let env = Env::start_with(0, |t| {
        *t = t.replacen("[monitor]\n", "[monitor]\naccounts_refresh_s = 1\n", 1);
        assert!(t.contains("accounts_refresh_s = 1"));
    })
    .await;
    env.primary_sql(
        "CREATE USER 'rot'@'%' IDENTIFIED BY 'old-pw'; GRANT SELECT ON app.* TO 'rot'@'%';",
    )
    .await;
    drop(
        login_eventually(
            opts(env.proxy, "rot", Some("old-pw"), Some("app")),
            Duration::from_secs(5),
        )
        .await,
    );
    env.primary_sql("ALTER USER 'rot'@'%' IDENTIFIED BY 'new-pw';")
        .await;
    // The new password works once Causeway has reloaded the accounts ...
    let mut c = login_eventually(
        opts(env.proxy, "rot", Some("new-pw"), Some("app")),
        Duration::from_secs(10),
    )
    .await;
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("rot@%"));
    drop(c);
    // ... and the old one no longer does.
    let e = login_error(opts(env.proxy, "rot", Some("old-pw"), Some("app"))).await;
    assert_eq!(
        e,
        (
            1045,
            "28000".into(),
            "Access denied for user 'rot'@'127.0.0.1' (using password: YES)".into()
        )
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_passwords_and_using_password_no() {
    let env = Env::start(0).await;
    let primary = env.cluster.primary.addr;
    env.primary_sql("CREATE USER 'nopw'@'%'; GRANT SELECT ON app.* TO 'nopw'@'%';")
        .await;
    let mut c = login_eventually(
        opts(env.proxy, "nopw", None, Some("app")),
        Duration::from_secs(5),
    )
    .await;
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("nopw@%"));
    drop(c);
    let out = cli_at(
        &env,
        env.proxy,
        "nopw",
        None,
        Some("app"),
        "SELECT CURRENT_USER()",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "nopw@%\n");

    // A password for an account that has none: refused, as on the server.
    let via = login_error(opts(env.proxy, "nopw", Some("something"), None)).await;
    assert_eq!(
        via,
        (
            1045,
            "28000".into(),
            "Access denied for user 'nopw'@'127.0.0.1' (using password: YES)".into()
        )
    );
    let direct = login_error(opts(primary, "nopw", Some("something"), None)).await;
    assert_eq!((direct.0, direct.1), (via.0, via.1));

    // No password for an account that has one: "using password: NO".
    let via = login_error(opts(env.proxy, "app", None, Some("app"))).await;
    assert_eq!(
        via,
        (
            1045,
            "28000".into(),
            "Access denied for user 'app'@'127.0.0.1' (using password: NO)".into()
        )
    );
    let direct = login_error(opts(primary, "app", None, Some("app"))).await;
    assert_eq!(direct, via, "same as the primary");
    let out = cli_at(&env, env.proxy, "app", None, Some("app"), "SELECT 1").await;
    assert_eq!(cli_error(&out), via);
    env.stop().await;
}

/// Connects and reads the greeting.
async fn greeted(addr: SocketAddr) -> (PacketStream<TcpStream>, Handshake) {
    let mut s = PacketStream::new(TcpStream::connect(addr).await.unwrap());
    let (h, p) = timeout(REPLY, s.read_packet())
        .await
        .expect("greeting in time")
        .expect("greeting");
    assert_eq!(h.seq, 0);
    (s, Handshake::decode(&p).expect("greeting decodes"))
}

async fn send(s: &mut PacketStream<TcpStream>, seq: u8, payload: &[u8]) {
    let mut out = BytesMut::new();
    write_packets(&mut out, seq, payload);
    s.write_all(&out).await.unwrap();
}

async fn read(s: &mut PacketStream<TcpStream>) -> (u8, bytes::Bytes) {
    let (h, p) = timeout(REPLY, s.read_packet())
        .await
        .expect("answer in time")
        .expect("a packet");
    (h.seq, p)
}

fn response(
    user: &str,
    plugin: &str,
    auth: Vec<u8>,
    db: Option<&str>,
    attributes: Vec<(String, String)>,
) -> Vec<u8> {
    let mut caps = cap::PROTOCOL_41
        | cap::SECURE_CONNECTION
        | cap::PLUGIN_AUTH
        | cap::LONG_PASSWORD
        | cap::TRANSACTIONS
        | cap::MULTI_RESULTS
        | cap::DEPRECATE_EOF;
    if !attributes.is_empty() {
        caps |= cap::CONNECT_ATTRS;
    }
    let r = HandshakeResponse {
        capabilities: caps,
        ext_capabilities: 0,
        max_packet: 1 << 24,
        charset: 45,
        user: user.into(),
        auth_response: auth,
        database: db.map(str::to_string),
        auth_plugin: Some(plugin.into()),
        attributes,
    };
    let mut body = BytesMut::new();
    r.encode(&mut body);
    body.to_vec()
}

/// `SELECT <expr>` on a logged-in raw connection (DEPRECATE_EOF negotiated):
/// the single text value.
async fn raw_scalar(s: &mut PacketStream<TcpStream>, expr: &str) -> Option<String> {
    send(s, 0, format!("\x03SELECT {expr}").as_bytes()).await;
    let (_, count) = read(s).await;
    assert_eq!(&count[..], &[1], "one column, got {:?}", err_of(&count));
    read(s).await; // column definition
    let (_, row) = read(s).await;
    let v = if row[0] == 0xFB {
        None
    } else {
        let mut r = causeway::protocol::buf::Reader::new(&row);
        Some(String::from_utf8_lossy(r.lenenc_bytes().unwrap()).into_owned())
    };
    let (_, end) = read(s).await;
    assert_eq!(end[0], 0xFE, "result ends");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_starting_with_another_plugin_is_switched_to_native_password() {
    let env = Env::start(0).await;
    let (mut s, g) = greeted(env.proxy).await;
    assert_eq!(g.auth_plugin, "mysql_native_password");
    assert_eq!(g.salt.len(), 20);
    // caching_sha2_password's first answer is 32 bytes; give garbage.
    send(
        &mut s,
        1,
        &response(
            "app",
            "caching_sha2_password",
            vec![0x5a; 32],
            Some("app"),
            vec![],
        ),
    )
    .await;
    let (seq, p) = read(&mut s).await;
    assert_eq!(seq, 2);
    let sw = AuthSwitch::decode(&p).unwrap_or_else(|| panic!("an AuthSwitchRequest, got {p:02x?}"));
    assert_eq!(sw.plugin, "mysql_native_password");
    assert_eq!(sw.data.len(), 20, "a 20-byte salt");
    send(
        &mut s,
        3,
        &Credential::from_password(b"app-secret").scramble(&sw.data),
    )
    .await;
    let (seq, p) = read(&mut s).await;
    assert_eq!(p[0], 0x00, "login OK, got {:?}", err_of(&p));
    assert_eq!(seq, 4);
    assert_eq!(
        raw_scalar(&mut s, "CURRENT_USER()").await.as_deref(),
        Some("app@%")
    );
    assert_eq!(
        raw_scalar(&mut s, "DATABASE()").await.as_deref(),
        Some("app")
    );

    // A wrong answer to the switch is refused like a wrong password.
    let (mut s, _) = greeted(env.proxy).await;
    send(
        &mut s,
        1,
        &response("app", "caching_sha2_password", vec![1; 32], None, vec![]),
    )
    .await;
    let (_, p) = read(&mut s).await;
    let sw = AuthSwitch::decode(&p).expect("AuthSwitchRequest");
    send(
        &mut s,
        3,
        &Credential::from_password(b"wrong").scramble(&sw.data),
    )
    .await;
    let (seq, p) = read(&mut s).await;
    assert_eq!(seq, 4);
    let (code, state, msg) = err_of(&p).expect("ERR");
    assert_eq!((code, state.as_str()), (1045, "28000"), "{msg}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_an_unsupported_plugin_is_refused_cleanly() {
    let env = Env::start(0).await;
    let active = env
        .primary_sql("SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519' AND PLUGIN_STATUS = 'ACTIVE'")
        .await;
    let ed25519 = active.trim() == "1"
        || env
            .cluster
            .root_sql(&env.cluster.primary, "INSTALL SONAME 'auth_ed25519'")
            .await
            .is_ok();
    let create = if ed25519 {
        "CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('x')"
    } else {
        "CREATE USER 'ed'@'%' IDENTIFIED VIA unix_socket"
    };
    eprintln!("unsupported-plugin account: {create}");
    // `marker` is created after `ed`: once Causeway knows it, it knows `ed`.
    env.primary_sql(&format!(
        "{create}; GRANT SELECT ON app.* TO 'ed'@'%'; CREATE USER 'marker'@'%' IDENTIFIED BY 'm'; GRANT SELECT ON app.* TO 'marker'@'%';"
    ))
    .await;
    drop(
        login_eventually(
            opts(env.proxy, "marker", Some("m"), None),
            Duration::from_secs(5),
        )
        .await,
    );

    let e = login_error(opts(env.proxy, "ed", Some("x"), Some("app"))).await;
    assert_eq!(
        e,
        (
            1045,
            "28000".into(),
            "Access denied for user 'ed'@'127.0.0.1' (using password: YES)".into()
        )
    );
    let out = cli_at(&env, env.proxy, "ed", Some("x"), None, "SELECT 1").await;
    assert_eq!(cli_error(&out).0, 1045, "{}", stderr(&out));
    // A raw client that starts with the ed25519 client plugin: switched, then refused.
    let (mut s, _) = greeted(env.proxy).await;
    send(
        &mut s,
        1,
        &response("ed", "client_ed25519", vec![7; 64], None, vec![]),
    )
    .await;
    let (_, p) = read(&mut s).await;
    let sw = AuthSwitch::decode(&p).expect("AuthSwitchRequest");
    send(
        &mut s,
        3,
        &Credential::from_password(b"x").scramble(&sw.data),
    )
    .await;
    let (_, p) = read(&mut s).await;
    assert_eq!(err_of(&p).map(|e| e.0), Some(1045));

    // Causeway is fine: other logins keep working.
    let mut c = connect(opts(env.proxy, "app", Some("app-secret"), Some("app")))
        .await
        .unwrap();
    assert_eq!(c.query_first::<i64, _>("SELECT 1").await.unwrap(), Some(1));
    drop(c);
    let out = cli_at(
        &env,
        env.proxy,
        "marker",
        Some("m"),
        None,
        "SELECT CURRENT_USER()",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "marker@%\n",
        "{}",
        stderr(&out)
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_listed_in_the_config_are_the_only_ones() {
    let env = Env::start_with(0, |t| {
        t.push_str("\n[auth]\nsource = \"config\"\n\n[[auth.users]]\nname = \"app\"\npassword = \"app-secret\"\n");
    })
    .await;
    env.primary_sql(
        "CREATE USER 'other'@'%' IDENTIFIED BY 'other-pw'; GRANT SELECT ON app.* TO 'other'@'%';",
    )
    .await;
    // Listed (and existing on the primary with the same password): logs in
    // and works on the backend.
    let mut c = connect(opts(env.proxy, "app", Some("app-secret"), Some("app")))
        .await
        .unwrap();
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("app@%"));
    drop(c);
    let out = cli_at(
        &env,
        env.proxy,
        "app",
        Some("app-secret"),
        Some("app"),
        "SELECT 1",
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A wrong password for a listed account.
    let e = login_error(opts(env.proxy, "app", Some("bad"), None)).await;
    assert_eq!(e.0, 1045);
    // Not listed: refused, though the primary knows it (and would accept it).
    let e = login_error(opts(env.proxy, "other", Some("other-pw"), Some("app"))).await;
    assert_eq!(
        e,
        (
            1045,
            "28000".into(),
            "Access denied for user 'other'@'127.0.0.1' (using password: YES)".into()
        )
    );
    drop(
        connect(opts(
            env.cluster.primary.addr,
            "other",
            Some("other-pw"),
            Some("app"),
        ))
        .await
        .unwrap(),
    );
    let out = cli_at(&env, env.proxy, "other", Some("other-pw"), None, "SELECT 1").await;
    assert_eq!(cli_error(&out).0, 1045);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_db_and_connect_attributes() {
    let env = Env::start(0).await;
    // A database in the URL is the session's database.
    let mut c = connect(opts(env.proxy, "app", Some("app-secret"), Some("sbtest")))
        .await
        .unwrap();
    let db: Option<Option<String>> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db, Some(Some("sbtest".into())));
    drop(c);
    // None: no database.
    let mut c = connect(opts(env.proxy, "app", Some("app-secret"), None))
        .await
        .unwrap();
    let db: Option<Option<String>> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db, Some(None));
    drop(c);
    let out = cli_at(
        &env,
        env.proxy,
        "app",
        Some("app-secret"),
        Some("sbtest"),
        "SELECT DATABASE()",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sbtest\n",
        "{}",
        stderr(&out)
    );

    // Connect attributes (mysql_async sends its own; add some).
    let o = opts(env.proxy, "app", Some("app-secret"), Some("app"))
        .connect_attribute("program_name", "auth-test")
        .connect_attribute("note", "héllo ✓ ".repeat(40));
    let mut c = connect(o).await.expect("login with connect attributes");
    assert_eq!(c.query_first::<i64, _>("SELECT 1").await.unwrap(), Some(1));
    drop(c);
    // A raw client with attributes and a database in its handshake response.
    let (mut s, g) = greeted(env.proxy).await;
    assert_ne!(
        g.capabilities & cap::CONNECT_ATTRS,
        0,
        "CONNECT_ATTRS offered"
    );
    assert_ne!(
        g.capabilities & cap::CONNECT_WITH_DB,
        0,
        "CONNECT_WITH_DB offered"
    );
    let attrs = vec![
        ("_client_name".to_string(), "raw".to_string()),
        ("_pid".to_string(), std::process::id().to_string()),
        ("long".to_string(), "x".repeat(300)),
    ];
    let auth = Credential::from_password(b"app-secret").scramble(&g.salt);
    send(
        &mut s,
        1,
        &response("app", "mysql_native_password", auth, Some("sbtest"), attrs),
    )
    .await;
    let (seq, p) = read(&mut s).await;
    assert_eq!(p[0], 0x00, "login OK, got {:?}", err_of(&p));
    assert_eq!(seq, 2);
    assert_eq!(
        raw_scalar(&mut s, "DATABASE()").await.as_deref(),
        Some("sbtest")
    );
    // performance_schema is off on the playground servers, so the
    // attributes cannot be read back; the login working is what matters.
    assert_eq!(
        raw_scalar(&mut s, "@@performance_schema").await.as_deref(),
        Some("0")
    );
    env.stop().await;
}

/// Causeway opens the first backend's connection while a client answers
/// its greeting (the primary's, or without replicas to read from the
/// primary's). Logins that then fail, and clients that leave without
/// answering, must not show up on that server as aborted connects: with
/// host name resolution on, `max_connect_errors` of them in a row block
/// Causeway's host for every client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_abandoned_logins_leave_no_aborted_connect_on_the_primary() {
    let env = Env::start(0).await;
    no_aborted_connects(&env, &env.cluster.primary).await;
    env.stop().await;
}

/// The same on the read replica, which is the first backend when it takes
/// the session's reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_abandoned_logins_leave_no_aborted_connect_on_the_replica() {
    let env = Env::start(1).await;
    common::routable(&env).await;
    no_aborted_connects(&env, &env.cluster.replicas[0]).await;
    env.stop().await;
}

async fn no_aborted_connects(env: &Env, server: &causeway::playground::Server) {
    // Causeway is ready once a login works.
    drop(
        login_eventually(
            opts(env.proxy, "app", Some("app-secret"), None),
            Duration::from_secs(5),
        )
        .await,
    );
    let aborted = status_of(env, server, "ABORTED_CONNECTS").await;
    for _ in 0..3 {
        let (code, _, _) = login_error(opts(env.proxy, "app", Some("wrong"), None)).await;
        assert_eq!(code, 1045);
        let (s, _) = greeted(env.proxy).await;
        drop(s);
    }
    // The server lists each connection Causeway opened for them from its
    // greeting on, as an unauthenticated user until a login (Causeway's
    // monitor account's) completes or the connection ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let unauthenticated: u64 = env
            .cluster
            .root_sql(
                server,
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'unauthenticated user'",
            )
            .await
            .expect("root SQL")
            .trim()
            .parse()
            .unwrap_or(1);
        if unauthenticated == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unauthenticated} connections still unauthenticated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of(env, server, "ABORTED_CONNECTS").await, aborted);
}

/// A global status counter of one server.
async fn status_of(env: &Env, server: &causeway::playground::Server, name: &str) -> u64 {
    let out = env
        .cluster
        .root_sql(
            server,
            &format!(
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"
            ),
        )
        .await
        .expect("root SQL");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number: {out:?}"))
}

/// Short connections without a pool (log in, one read, log out): the read
/// runs on the replica, the backend logged in to at connect time, and every
/// backend connection a session opened ends as the client's did, with
/// COM_QUIT. A server counts a connection closed without it in
/// `Aborted_clients` and writes a warning to its error log for each, so a
/// DBA would see every session as a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_connections_read_on_the_replica_and_leave_no_aborted_client() {
    let env = Env::start_with_policy(1, common::SPLIT).await;
    common::routable(&env).await;
    let primary = &env.cluster.primary;
    let replica = &env.cluster.replicas[0];
    let before = (
        status_of(&env, primary, "ABORTED_CLIENTS").await,
        status_of(&env, replica, "ABORTED_CLIENTS").await,
    );
    let app = opts(
        env.proxy,
        &env.cluster.app_user,
        Some(&env.cluster.app_password),
        Some("app"),
    );
    for _ in 0..10 {
        let mut c = connect(app.clone()).await.expect("login");
        let id = common::server_id(&mut c, "SELECT @@server_id").await;
        assert_ne!(id, 1, "a short connection's read runs on the replica");
        c.disconnect().await.expect("logout");
    }
    // A session's backend connections end after its client's: wait until
    // the servers list none of the app account's.
    let deadline = Instant::now() + Duration::from_secs(20);
    for server in [primary, replica] {
        loop {
            let left = env
                .cluster
                .root_sql(
                    server,
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'",
                )
                .await
                .expect("root SQL");
            if left.trim() == "0" {
                break;
            }
            assert!(Instant::now() < deadline, "{left} app connections left");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after = (
        status_of(&env, primary, "ABORTED_CLIENTS").await,
        status_of(&env, replica, "ABORTED_CLIENTS").await,
    );
    assert_eq!(after, before, "(primary, replica) Aborted_clients");
    env.stop().await;
}

/// The replica is logged in to at connect time, as the client's account;
/// a COM_CHANGE_USER sent before any read must not leave the session's
/// reads on that connection: the new account reads. (A raw
/// client: connectors read settings after login, which would take the
/// replica's connection first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_right_after_login_reads_as_the_new_account() {
    let env = Env::start_with_policy(1, common::SPLIT).await;
    env.primary_sql(
        "CREATE USER 'other'@'%' IDENTIFIED BY 'other-pw'; GRANT SELECT ON app.* TO 'other'@'%';",
    )
    .await;
    common::routable(&env).await;
    // Causeway learns of the account, and the replica has it.
    drop(
        login_eventually(
            opts(env.proxy, "other", Some("other-pw"), Some("app")),
            REPLY,
        )
        .await,
    );
    for _ in 0..5 {
        let (mut s, g) = greeted(env.proxy).await;
        let auth = Credential::from_password(b"app-secret").scramble(&g.salt);
        send(
            &mut s,
            1,
            &response("app", "mysql_native_password", auth, Some("app"), vec![]),
        )
        .await;
        let (_, ok) = read(&mut s).await;
        assert_eq!(ok[0], 0x00, "login: {:?}", err_of(&ok));
        let mut cu = vec![0x11];
        cu.extend_from_slice(b"other\0");
        cu.push(20);
        cu.extend_from_slice(&Credential::from_password(b"other-pw").scramble(&g.salt));
        cu.extend_from_slice(b"app\0");
        cu.extend_from_slice(&45u16.to_le_bytes());
        cu.extend_from_slice(b"mysql_native_password\0");
        send(&mut s, 0, &cu).await;
        let (_, ok) = read(&mut s).await;
        assert_eq!(ok[0], 0x00, "change user: {:?}", err_of(&ok));
        let who = raw_scalar(&mut s, "CONCAT(CURRENT_USER(), ' ', @@server_id)").await;
        let who = who.expect("a value");
        assert!(who.starts_with("other@% "), "{who}");
        assert!(!who.ends_with(" 1"), "the read runs on the replica: {who}");
    }
    env.stop().await;
}

/// A persistent root connection straight to one server (it counts once,
/// before the figures it reads).
async fn root_conn(server: &causeway::playground::Server) -> mysql_async::Conn {
    connect(opts(server.addr, "root", None, None))
        .await
        .expect("root connection")
}

/// The server's `Connections` status: every login attempt it has seen.
async fn connections(c: &mut mysql_async::Conn) -> u64 {
    let row: Option<(String, u64)> = c
        .query_first("SHOW GLOBAL STATUS LIKE 'Connections'")
        .await
        .unwrap();
    row.expect("a Connections row").1
}

/// Issue 12: a short connection that only reads causes one backend login,
/// as a direct connection does, on the replica its reads use (the primary
/// is logged in to when the session first needs it); one that writes
/// reads its own write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_connection_that_reads_logs_in_to_one_backend() {
    // The default policy: reads split, at the session level.
    let env = Env::start_with(1, |t| {
        *t = t.replacen("[monitor]\n", "[monitor]\naccounts_refresh_s = 3600\n", 1);
    })
    .await;
    common::routable(&env).await;
    env.primary_sql("CREATE TABLE app.login_once (id INT PRIMARY KEY, v INT)")
        .await;
    let mut roots = [
        root_conn(&env.cluster.primary).await,
        root_conn(&env.cluster.replicas[0]).await,
    ];
    let app = env.opts();
    const N: u64 = 10;
    let mut before = 0;
    for r in &mut roots {
        before += connections(r).await;
    }
    for _ in 0..N {
        let mut c = connect(app.clone()).await.expect("login");
        let id = common::server_id(&mut c, "SELECT @@server_id").await;
        assert_ne!(id, 1, "a short connection's read runs on the replica");
        c.disconnect().await.expect("logout");
    }
    let mut after = 0;
    for r in &mut roots {
        after += connections(r).await;
    }
    assert_eq!(
        after - before,
        N,
        "backend logins for {N} short connections"
    );

    // A session that writes logs in to the primary then, and reads what
    // it wrote.
    for i in 0..3 {
        let mut c = connect(app.clone()).await.expect("login");
        c.query_drop(format!("INSERT INTO login_once VALUES ({i}, {i} * 10)"))
            .await
            .expect("a write after a login on the replica");
        let v: Option<i64> = c
            .query_first(format!("SELECT v FROM login_once WHERE id = {i}"))
            .await
            .unwrap();
        assert_eq!(v, Some(i * 10), "the session reads its own write");
        c.disconnect().await.expect("logout");
    }
    env.stop().await;
}

/// An account the replica has not got (created on the primary without
/// binary logging) logs in all the same: the primary's answer decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_only_on_the_primary_logs_in() {
    let env = Env::start(1).await;
    common::routable(&env).await;
    env.primary_sql(
        "SET sql_log_bin = 0; CREATE USER 'solo'@'%' IDENTIFIED BY 'solo-pw'; \
         GRANT SELECT, INSERT ON app.* TO 'solo'@'%'; SET sql_log_bin = 1;",
    )
    .await;
    let mut c = connect(opts(env.proxy, "solo", Some("solo-pw"), Some("app")))
        .await
        .unwrap_or_else(|e| panic!("an account only on the primary logs in: {e}"));
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("solo@%"));
    c.disconnect().await.expect("logout");
    // A database only the primary has is not refused either.
    env.primary_sql("SET sql_log_bin = 0; CREATE DATABASE solo_db; SET sql_log_bin = 1;")
        .await;
    let mut c = connect(opts(
        env.proxy,
        &env.cluster.app_user,
        Some(&env.cluster.app_password),
        Some("solo_db"),
    ))
    .await
    .unwrap_or_else(|e| panic!("a database only on the primary: {e}"));
    let db: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some("solo_db"));
    c.disconnect().await.expect("logout");
    env.stop().await;
}
