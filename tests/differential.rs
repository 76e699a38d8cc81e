//! Random differential tests: several clients run random scripts of
//! session-state statements (variables, user variables, `USE`,
//! transactions, autocommit, generated ids, `ROW_COUNT()`, `FOUND_ROWS()`,
//! temporary tables, text and binary prepared statements, named locks,
//! multi-statements, errors, reconnects), interleaved at random, once on
//! direct connections to the primary and once through Causeway. Every
//! statement must return the same thing both ways: an application must not
//! be able to tell that its session moved between backend connections,
//! shared them with other clients, or took over another session's pooled
//! connection. Once more with both sides over the compressed protocol.
//!
//! Each client works on a table of its own, so the interleaving cannot
//! change what a direct connection returns. Fixed seeds keep CI
//! deterministic; `CAUSEWAY_DIFF_SEEDS=1,2,3` and `CAUSEWAY_DIFF_STEPS`
//! explore further.

mod common;
#[path = "common/diff.rs"]
mod diff;

use common::Env;
use diff::{bare_found_rows, differences, play, schedule, seeds, steps, CLIENTS};
use mysql_async::prelude::*;
use mysql_async::Conn;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A direct connection to the primary, as the application's account.
fn direct_opts(env: &Env) -> mysql_async::OptsBuilder {
    let p = env.cluster.primary.addr;
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(p.ip().to_string())
        .tcp_port(p.port())
        .user(Some(env.cluster.app_user.clone()))
        .pass(Some(env.cluster.app_password.clone()))
        .db_name(Some("app"))
        .prefer_socket(false)
}

/// Plays every seed's schedule directly and through Causeway, and fails
/// with each client's first differing step and what led to it.
async fn matches_direct(env: &Env, mode: &str) {
    let mut differ = Vec::new();
    for seed in seeds() {
        let schedule = schedule(seed, steps());
        let mut setup = env.direct_primary().await;
        for c in 0..CLIENTS {
            for side in ["d", "p"] {
                let t = format!("app.{mode}_{side}{seed}_{c}");
                setup
                    .query_drop(format!(
                        "CREATE OR REPLACE TABLE {t} \
                         (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), n INT)"
                    ))
                    .await
                    .unwrap();
            }
        }
        drop(setup);
        env.cluster
            .wait_replicas_caught_up(std::time::Duration::from_secs(30))
            .await
            .expect("the replicas have the tables");
        // "cz": both sides over the compressed protocol.
        let zlib = (mode == "cz").then(mysql_async::Compression::default);
        let want = play(&schedule, &format!("{mode}_d{seed}"), || async {
            Conn::new(direct_opts(env).compression(zlib))
                .await
                .expect("connect to the primary")
        })
        .await;
        let got = play(&schedule, &format!("{mode}_p{seed}"), || async {
            Conn::new(env.opts().compression(zlib))
                .await
                .expect("connect through causeway")
        })
        .await;
        differ.extend(differences(seed, &schedule, &want, &got, |i| {
            mode != "np" && bare_found_rows(&schedule[..=i])
        }));
    }
    assert!(
        differ.is_empty(),
        "{mode}: {} clients' statements returned something else through Causeway:\n{}",
        differ.len(),
        differ.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_without_a_pool_match_direct_connections() {
    let _serial = SERIAL.lock().await;
    let env = Env::start(1).await;
    matches_direct(&env, "np").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_in_the_session_pool_match_direct_connections() {
    let _serial = SERIAL.lock().await;
    let env = Env::start_with(1, |t| t.push_str("\n[pool]\nsession_pool = true\n")).await;
    matches_direct(&env, "sp").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_in_the_transaction_pool_match_direct_connections() {
    let _serial = SERIAL.lock().await;
    // As many connections per backend as clients: the schedule runs one
    // statement at a time, so a pinned client must not starve the others,
    // yet connections still pass from client to client all the time.
    let env = Env::start_with(1, |t| {
        t.push_str(&format!(
            "\n[pool]\ntransaction_pool = true\ntransaction_pool_max_per_backend = {CLIENTS}\n"
        ))
    })
    .await;
    matches_direct(&env, "tp").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_over_the_compressed_protocol_match_direct_connections() {
    let _serial = SERIAL.lock().await;
    let env = Env::start(1).await;
    matches_direct(&env, "cz").await;
    env.stop().await;
}
