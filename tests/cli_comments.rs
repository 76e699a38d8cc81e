//! Hints typed in the `mariadb` command-line client: it strips comments
//! before sending a statement unless started with `--comments` (`-c`), so
//! a hint reaches Causeway only with `-c` (docs/hints.md says so).

mod common;

use common::{Env, SPLIT};

/// `@@server_id` as the CLI prints it for `sql`, with `extra` options.
async fn server_id(env: &Env, extra: &[&str], sql: &str) -> String {
    let mut args = extra.to_vec();
    args.extend(["-e", sql]);
    let out = env
        .cli(
            &env.cluster.app_user,
            &env.cluster.app_password,
            Some("app"),
            &args,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_hints_work_with_comments_on() {
    let env = Env::start_with_policy(1, SPLIT).await;
    common::routable(&env).await;
    let primary = env
        .primary_sql("SELECT @@server_id")
        .await
        .trim()
        .to_string();
    for hint in ["/*FORCE_MASTER*/", "/* causeway: route=primary */"] {
        let sql = format!("{hint} SELECT @@server_id");
        for opt in ["-c", "--comments"] {
            assert_eq!(server_id(&env, &[opt], &sql).await, primary, "{opt} {sql}");
        }
        // Without it the CLI drops the comment: the read goes to the replica.
        assert_ne!(server_id(&env, &[], &sql).await, primary, "{sql}");
    }
    env.stop().await;
}
