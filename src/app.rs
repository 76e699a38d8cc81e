//! Wiring: the listener, the monitor, the admin endpoint, and draining on
//! shutdown. `run` takes an already-bound listener so tests bind port 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{http, metrics as exporter};
use crate::cluster::{spawn_monitor, Cluster};
use crate::config::Config;
use crate::error::Error;
use crate::metrics::{self as m, Handles, Labels, RouteTarget};
use crate::protocol::command::Command;
use crate::protocol::packet::{begin_packet, finish_packet};
use crate::session::{handle_client, Ctx, Registry};

/// Runs the proxy until `shutdown` turns true, then stops accepting, lets
/// sessions finish their current command (up to the drain timeout) and
/// returns.
pub async fn run(
    config: Arc<Config>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let prometheus = exporter::install();
    {
        // Summaries (consistency waits) take their samples in at upkeep;
        // without it they would only do so when /metrics is scraped.
        let handle = prometheus.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => handle.run_upkeep(),
                    _ = stop.changed() => return,
                }
            }
        });
    }
    let cluster = Cluster::new(config.clone());
    let handles = Arc::new(handles(&cluster));
    let monitor = spawn_monitor(cluster.clone(), shutdown.clone());
    wait_first_check(&cluster, config.timeouts.connect() * 2).await;
    let registry = Registry::with_instance(config.proxy.instance);
    let ctx = Arc::new(Ctx::new(
        cluster.clone(),
        registry.clone(),
        shutdown.clone(),
        handles.clone(),
    ));
    {
        // The transaction-level pool: close connections idle too long and
        // show how many are idle and busy.
        let ctx = ctx.clone();
        let handles = handles.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.changed() => return,
                }
                let cfg = ctx.cluster.config().pool.clone();
                ctx.txn_pool
                    .sweep(Duration::from_millis(cfg.transaction_pool_idle_ms));
                ctx.session_pool
                    .sweep(Duration::from_millis(cfg.session_pool_idle_ms));
                handles
                    .session_pool_idle()
                    .set(ctx.session_pool.idle_total() as f64);
                for (backend, idle, busy) in ctx.txn_pool.usage() {
                    metrics::gauge!(m::TXN_POOL_CONNECTIONS, "backend" => backend.clone(), "state" => "idle")
                        .set(idle as f64);
                    metrics::gauge!(m::TXN_POOL_CONNECTIONS, "backend" => backend, "state" => "busy")
                        .set(busy as f64);
                }
            }
        });
    }
    if let Some(admin) = admin {
        let reg = registry.clone();
        let policy = config.loaded_policy.name.clone();
        let pools = ctx.clone();
        let status = Arc::new(move || {
            // Idle and busy pooled connections per backend, per pool.
            let usage = |u: Vec<(String, usize, usize)>| {
                u.into_iter()
                    .map(|(b, idle, busy)| serde_json::json!({"backend": b, "idle": idle, "busy": busy}))
                    .collect::<Vec<_>>()
            };
            serde_json::json!({
                "sessions": reg.len(),
                "policy": policy,
                "version": env!("CARGO_PKG_VERSION"),
                "session_pool": usage(pools.session_pool.usage()),
                "transaction_pool": usage(pools.txn_pool.usage()),
            })
        });
        tokio::spawn(http::serve(
            admin,
            cluster.clone(),
            prometheus,
            status,
            shutdown.clone(),
        ));
    }
    tracing::info!(listen = %listener.local_addr()?, "causeway accepting clients");
    let mut sessions = JoinSet::new();
    let mut stop = shutdown.clone();
    let nodelay_inherited = set_listener_nodelay(&listener);
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (sock, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if ctx.gate.full() {
                    tokio::spawn(refuse(sock, Error::TooManyConnections, handles.clone()));
                    continue;
                }
                handles.client_connections().increment(1);
                let ctx = ctx.clone();
                let handles = handles.clone();
                sessions.spawn(async move {
                    handles.client_connections_open().increment(1.0);
                    if !nodelay_inherited {
                        let _ = sock.set_nodelay(true);
                    }
                    handle_client(ctx, sock, peer).await;
                    handles.client_connections_open().decrement(1.0);
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = crate::session::registry::shutdown_signalled(&mut stop) => break,
        }
    }
    drop(listener);
    let deadline = tokio::time::sleep(config.timeouts.shutdown_drain());
    tokio::pin!(deadline);
    while !sessions.is_empty() {
        tokio::select! {
            _ = sessions.join_next() => {}
            _ = &mut deadline => {
                tracing::warn!(left = sessions.len(), "drain timeout: closing remaining sessions");
                sessions.abort_all();
                while sessions.join_next().await.is_some() {}
            }
        }
    }
    let _ = monitor.await;
    Ok(())
}

/// Route pairs registered at start (the rest register on first use).
const ROUTES: &[(RouteTarget, &str)] = &[
    (RouteTarget::Primary, "command"),
    (RouteTarget::Primary, "write"),
    (RouteTarget::Replica, "read"),
    (RouteTarget::Primary, "read_on_primary"),
    (RouteTarget::Primary, "consistency_fallback"),
];

/// The metric handles of this process's label values (after the recorder
/// is installed, so they record into it).
fn handles(cluster: &Cluster) -> Handles {
    let backends: Vec<String> = cluster
        .topology()
        .backends
        .iter()
        .map(|b| b.name.clone())
        .collect();
    Handles::new(&Labels {
        backends: &backends,
        commands: Command::LABELS,
        routes: ROUTES,
        error_kinds: Error::LABELS,
    })
}

/// Waits until the monitor has checked every backend once (so roles are
/// known and clients are greeted with the primary's version), or `limit`
/// passes.
async fn wait_first_check(cluster: &Cluster, limit: Duration) {
    let start = Instant::now();
    let checked = || {
        cluster
            .topology()
            .backends
            .iter()
            .all(|b| b.checked_at.is_some())
    };
    while !checked() && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers a connection Causeway will not serve with an ERR instead of a greeting.
async fn refuse(mut sock: TcpStream, e: Error, handles: Arc<Handles>) {
    use tokio::io::AsyncWriteExt;
    handles.client_error(e.label());
    let mut out = BytesMut::new();
    let start = begin_packet(&mut out, 0);
    e.encode_err(&mut out);
    finish_packet(&mut out, start);
    let _ = sock.write_all(&out).await;
}

/// The configuration (TOML text) of a Causeway in front of a playground
/// cluster. `causeway playground` writes it next to the servers so users can
/// read and reuse it; the integration tests load it too.
pub fn playground_config(
    cluster: &crate::playground::Cluster,
    listen: &str,
    admin_listen: &str,
    policy: Option<&std::path::Path>,
) -> String {
    let mut t = String::new();
    t.push_str("# Written by `causeway playground`.\n");
    if let Some(p) = policy {
        t.push_str(&format!(
            "policy = {}\n",
            toml_str(&p.display().to_string())
        ));
    }
    t.push_str(&format!(
        "\n[proxy]\nlisten = {}\nadmin_listen = {}\n",
        toml_str(listen),
        toml_str(admin_listen)
    ));
    t.push_str(&format!(
        "\n[cluster]\nprimary = {{ name = \"{}\", address = \"{}\" }}\n",
        cluster.primary.name, cluster.primary.addr
    ));
    for r in &cluster.replicas {
        t.push_str(&format!(
            "\n[[cluster.replicas]]\nname = \"{}\"\naddress = \"{}\"\n",
            r.name, r.addr
        ));
    }
    t.push_str(&format!(
        "\n[monitor]\nuser = {}\npassword = {}\ninterval_ms = 50\n",
        toml_str(&cluster.monitor_user),
        toml_str(&cluster.monitor_password)
    ));
    t.push_str(&format!(
        "\n[switchover]\nreplication_user = {}\nreplication_password = {}\n",
        toml_str(crate::playground::REPL_USER),
        toml_str(crate::playground::REPL_PASSWORD)
    ));
    t
}

fn toml_str(s: &str) -> String {
    // A TOML basic string; serde_json's escaping is valid TOML for these.
    serde_json::Value::String(s.to_string()).to_string()
}

/// Listens on `addr` with a backlog for bursts of thousands of clients
/// connecting at once (the default of 128 drops connections in the kernel
/// that then wait for a greeting that never comes).
pub async fn bind_listener(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let sock = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        match sock.bind(a).and_then(|_| sock.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{addr} resolves to no address"))))
}

/// Sets `TCP_NODELAY` on the listening socket. Linux hands it down to
/// every accepted connection, which saves a system call per client; the
/// answer says whether that happened (else each connection sets it).
fn set_listener_nodelay(listener: &TcpListener) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true).is_ok()
}

/// Pending connections the kernel keeps for Causeway's listeners (capped
/// by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_have_nodelay_from_the_listener() {
        let listener = bind_listener("127.0.0.1:0").await.unwrap();
        assert!(set_listener_nodelay(&listener));
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (sock, _) = listener.accept().await.unwrap();
        assert!(
            sock.nodelay().unwrap(),
            "no TCP_NODELAY on the accepted socket"
        );
    }
}
