//! Per-user connection limits, counted over Causeway's sessions and
//! answered with the server's errors: the account's own
//! `MAX_USER_CONNECTIONS` (ERROR 1226, the same text as directly) and
//! Causeway's per-user cap (`[users.NAME] max_connections`, ERROR 1203).
//! (The server's global `max_user_connections` cannot be changed at run
//! time on a server started without it; its error is unit-tested in
//! `session::gate`.)

mod common;

use std::time::{Duration, Instant};

use common::Env;
use mysql_async::{Conn, OptsBuilder};

fn opts(host: std::net::SocketAddr, user: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(host.ip().to_string())
        .tcp_port(host.port())
        .user(Some(user))
        .pass(Some(format!("{user}-pw")))
        .prefer_socket(false)
}

fn server_error(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("not a server error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_and_server_limits_give_the_servers_errors() {
    let env = Env::start_with(1, |t| {
        t.push_str("\n[users.capped]\nmax_connections = 1\n");
    })
    .await;
    env.primary_sql(
        "CREATE USER 'lim'@'%' IDENTIFIED BY 'lim-pw' WITH MAX_USER_CONNECTIONS 2; \
         GRANT SELECT ON app.* TO 'lim'@'%'; \
         CREATE USER 'capped'@'%' IDENTIFIED BY 'capped-pw'; GRANT SELECT ON app.* TO 'capped'@'%';",
    )
    .await;
    env.cluster
        .wait_replicas_caught_up(Duration::from_secs(30))
        .await
        .unwrap();

    // The account's own limit, through Causeway and directly.
    let a = Conn::new(opts(env.proxy, "lim")).await.unwrap();
    let b = Conn::new(opts(env.proxy, "lim")).await.unwrap();
    let (code, via) = server_error(Conn::new(opts(env.proxy, "lim")).await.unwrap_err());
    assert_eq!(code, 1226, "{via}");
    let d1 = Conn::new(opts(env.cluster.primary.addr, "lim"))
        .await
        .unwrap();
    let d2 = Conn::new(opts(env.cluster.primary.addr, "lim"))
        .await
        .unwrap();
    let (dcode, direct) = server_error(
        Conn::new(opts(env.cluster.primary.addr, "lim"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, via), (dcode, direct));
    drop((d1, d2));
    // A session that ends gives its slot back.
    drop(a);
    let until = Instant::now() + Duration::from_secs(10);
    let c = loop {
        match Conn::new(opts(env.proxy, "lim")).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < until => {
                assert_eq!(server_error(e).0, 1226);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the freed slot: {e}"),
        }
    };
    drop((b, c));

    // Causeway's own per-user cap.
    let first = Conn::new(opts(env.proxy, "capped")).await.unwrap();
    let (code, msg) = server_error(Conn::new(opts(env.proxy, "capped")).await.unwrap_err());
    assert_eq!(code, 1203, "{msg}");
    assert!(msg.contains("max_user_connections"), "{msg}");
    drop(first);

    env.stop().await;
}
