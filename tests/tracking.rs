//! Backend connections always speak session tracking: the GTID of every
//! write arrives in its OK packet. Clients that asked for tracking see it;
//! clients that did not never see tracking bytes.

mod common;

use causeway::protocol::consts::{cap, com, status};
use causeway::protocol::response::{Ok as OkPacket, StateChange};
use common::raw::Raw;
use common::Env;

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![com::QUERY];
    p.extend_from_slice(sql.as_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_positions_arrive_in_ok_packets_and_are_stripped_for_clients_without_tracking() {
    let env = Env::start(0).await;
    let (user, pw) = (
        env.cluster.app_user.clone(),
        env.cluster.app_password.clone(),
    );
    let mut tracked = Raw::login(env.proxy, &user, &pw, Some("app"), cap::SESSION_TRACK).await;
    tracked.command(&query("CREATE TABLE tr (a INT)")).await;
    tracked.until_terminal().await;
    tracked.command(&query("INSERT INTO tr VALUES (1)")).await;
    let (_, p) = tracked.packet().await;
    let ok = OkPacket::decode(&p, tracked.caps).expect("OK packet");
    assert_eq!(ok.affected_rows, 1);
    assert!(ok.status & status::SESSION_STATE_CHANGED != 0);
    let gtid = ok
        .changes()
        .flatten()
        .find_map(|c| match c {
            StateChange::SystemVariable { name, value } if name == b"last_gtid" => {
                Some(String::from_utf8_lossy(value).into_owned())
            }
            _ => None,
        })
        .expect("last_gtid is tracked");
    let binlog = env.primary_sql("SELECT @@gtid_binlog_pos").await;
    assert_eq!(
        gtid,
        binlog.trim(),
        "the tracked GTID is the primary's position after the write"
    );

    let mut plain = Raw::login(env.proxy, &user, &pw, Some("app"), 0).await;
    plain.command(&query("INSERT INTO tr VALUES (2)")).await;
    let (_, p) = plain.packet().await;
    let ok = OkPacket::decode(&p, plain.caps).expect("OK packet");
    assert_eq!(ok.affected_rows, 1);
    assert_eq!(ok.status & status::SESSION_STATE_CHANGED, 0, "flag cleared");
    assert!(
        ok.info.is_empty(),
        "no tracking bytes leak into the info field: {:?}",
        ok.info
    );
    env.stop().await;
}

/// Polls `/status` until `pred` holds for the topology, or panics after 20 s.
async fn wait_status(env: &Env, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let body = common::http_get(env.admin, "/status").await;
        let json = body.split("\r\n\r\n").nth(1).unwrap_or("");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
            if pred(&v["topology"]) {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_publishes_health_and_replication_state() {
    let env = Env::start(1).await;
    wait_status(&env, "both backends up and replicating", |t| {
        t["backends"][0]["up"] == true
            && t["backends"][0]["read_only"] == false
            && t["backends"][1]["up"] == true
            && t["backends"][1]["read_only"] == true
            && t["backends"][1]["replicating"] == true
            && t["backends"][1]["lag_s"] == 0
    })
    .await;
    env.cluster
        .root_sql(&env.cluster.replicas[0], "STOP SLAVE SQL_THREAD")
        .await
        .unwrap();
    wait_status(&env, "replica seen as not replicating", |t| {
        t["backends"][1]["replicating"] == false
    })
    .await;
    let metrics = common::http_get(env.admin, "/metrics").await;
    assert!(
        metrics.contains("causeway_account_reloads_total"),
        "{metrics}"
    );
    env.stop().await;
}
