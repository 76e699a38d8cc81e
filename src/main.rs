//! The `causeway` command: run the proxy, check a configuration, or start a
//! local playground cluster with Causeway in front of it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

use causeway::config::Config;
use causeway::playground::{Cluster, ClusterOptions};

#[derive(Parser)]
#[command(
    name = "causeway",
    version,
    about = "MySQL-protocol read/write-splitting proxy"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a configuration file and exit (non-zero on error).
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Ask a running Causeway to switch the primary over to server NAME
    /// (through its admin endpoint, `POST /switchover?to=NAME`).
    Switchover {
        /// The server to promote (its name in the configuration).
        #[arg(long)]
        to: String,
        /// The admin endpoint (host:port); default: the configuration's
        /// `proxy.admin_listen`.
        #[arg(long)]
        admin: Option<String>,
        /// Configuration file, for `proxy.admin_listen` and `proxy.admin_token`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start a local MariaDB primary and replicas with Causeway in front
    /// (or, with a subcommand, act on a running one).
    #[command(args_conflicts_with_subcommands = true)]
    Playground {
        #[command(subcommand)]
        action: Option<PlaygroundAction>,
        /// Directory for the servers' data (default: a temporary one, removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Port Causeway listens on (127.0.0.1).
        #[arg(long, default_value_t = 3366)]
        port: u16,
        /// Port of the admin/metrics endpoint.
        #[arg(long, default_value_t = 9366)]
        admin_port: u16,
        /// Policy file (e.g. policies/primary-only.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// TOML appended to the generated configuration (e.g. a file with
        /// `[transaction_replay]` and `enabled = true`).
        #[arg(long)]
        extra_config: Option<PathBuf>,
        /// Print one JSON line with the addresses and credentials once ready.
        #[arg(long)]
        json: bool,
    },
}

/// Acting on a running `causeway playground --dir DIR`.
#[derive(Subcommand)]
enum PlaygroundAction {
    /// List its servers: name, address, pid, state, directory.
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// SIGKILL a server (as a crash).
    Kill {
        name: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop a server cleanly (SIGTERM, waits for its exit).
    Stop {
        name: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Start a stopped or killed server again (same port and data).
    Start {
        name: String,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Switch the primary over to server NAME through the playground's
    /// Causeway (`causeway switchover` with the playground's configuration).
    Switchover {
        #[arg(long)]
        to: String,
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Cmd::Check { config }) => match Config::load(&config) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(Cmd::Switchover { to, admin, config }) => {
            runtime(1).block_on(switchover(&to, admin, config.as_deref()))
        }
        Some(Cmd::Playground {
            action: Some(action),
            ..
        }) => runtime(1).block_on(playground_action(action)),
        Some(Cmd::Playground {
            action: None,
            dir,
            replicas,
            port,
            admin_port,
            policy,
            extra_config,
            json,
        }) => {
            let opts = PlaygroundArgs {
                dir,
                replicas,
                port,
                admin_port,
                policy,
                extra_config,
                json,
            };
            runtime(0).block_on(playground(opts))
        }
        None => {
            let Some(path) = cli.config else {
                eprintln!("usage: causeway --config FILE | causeway check --config FILE | causeway switchover --to NAME | causeway playground");
                return ExitCode::FAILURE;
            };
            match load_config(&path) {
                Ok(config) => runtime(config.proxy.worker_threads).block_on(serve(config)),
                Err(code) => code,
            }
        }
    }
}

/// Loads a configuration; on error prints it (file, field, reason).
fn load_config(path: &std::path::Path) -> Result<Arc<Config>, ExitCode> {
    Config::load(path)
        .inspect(|c| {
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
        })
        .map(Arc::new)
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::FAILURE
        })
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    match b.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

async fn serve(config: Arc<Config>) -> ExitCode {
    let listener = match causeway::app::bind_listener(&config.proxy.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", config.proxy.listen);
            return ExitCode::FAILURE;
        }
    };
    let admin = if config.proxy.admin_listen.is_empty() {
        None
    } else {
        match TcpListener::bind(&config.proxy.admin_listen).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("cannot listen on {}: {e}", config.proxy.admin_listen);
                return ExitCode::FAILURE;
            }
        }
    };
    let (tx, rx) = watch::channel(false);
    // Caught before the first client: SIGHUP's default action ends the
    // process on the spot, cutting every session off undrained.
    let signals = ServeSignals::new();
    tokio::spawn(async move {
        signals.wait_for_stop().await;
        tracing::info!("shutting down: draining sessions");
        let _ = tx.send(true);
    });
    match causeway::app::run(config, listener, admin, rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The signals `causeway --config` acts on: SIGTERM and Ctrl-C drain and
/// stop; SIGHUP is caught and logged, because reloading the configuration
/// is not supported yet and it must not end the process.
struct ServeSignals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl ServeSignals {
    fn new() -> ServeSignals {
        use tokio::signal::unix::{signal, SignalKind};
        let hup = signal(SignalKind::hangup());
        if let Err(e) = &hup {
            tracing::warn!(error = %e, "cannot catch SIGHUP: it will stop the process");
        }
        ServeSignals {
            term: signal(SignalKind::terminate()).ok(),
            hup: hup.ok(),
        }
    }

    async fn wait_for_stop(mut self) {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                Some(()) = next(&mut self.term) => return,
                Some(()) = next(&mut self.hup) => tracing::warn!(
                    "SIGHUP received: configuration reload is not supported yet; \
                     still serving with the configuration loaded at start"
                ),
            }
        }
    }
}

/// The next delivery of `s`; never, when it could not be registered.
async fn next(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// `causeway switchover`: POSTs to the admin endpoint and prints its JSON
/// answer; fails unless the switchover was done.
async fn switchover(to: &str, admin: Option<String>, config: Option<&std::path::Path>) -> ExitCode {
    let config = match config.map(load_config).transpose() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(addr) = admin.or_else(|| {
        config
            .as_ref()
            .map(|c| c.proxy.admin_listen.clone())
            .filter(|a| !a.is_empty())
    }) else {
        eprintln!(
            "give the admin endpoint: --admin HOST:PORT or --config FILE (proxy.admin_listen)"
        );
        return ExitCode::FAILURE;
    };
    let token = config
        .as_ref()
        .and_then(|c| c.proxy.admin_token.clone())
        .or_else(|| std::env::var("CAUSEWAY_ADMIN_TOKEN").ok());
    match post_switchover(&addr, to, token.as_deref()).await {
        Ok((status, body)) => {
            println!("{}", body.trim_end());
            if status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cannot reach the admin endpoint {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One `POST /switchover?to=NAME`: the status code and the body.
async fn post_switchover(
    addr: &str,
    to: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await?;
    let name: String = to
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST /switchover?to={name} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// `causeway playground list|kill|stop|start|switchover ... --dir DIR`.
async fn playground_action(action: PlaygroundAction) -> ExitCode {
    let (dir, command) = match action {
        PlaygroundAction::Switchover { to, dir } => {
            let cfg = dir.join("causeway.toml");
            return switchover(&to, None, Some(&cfg)).await;
        }
        PlaygroundAction::List { dir } => (dir, "list".to_string()),
        PlaygroundAction::Kill { name, dir } => (dir, format!("kill {name}")),
        PlaygroundAction::Stop { name, dir } => (dir, format!("stop {name}")),
        PlaygroundAction::Start { name, dir } => (dir, format!("start {name}")),
    };
    match causeway::playground::control::send(&dir, &command).await {
        Ok(answer) => {
            println!("{answer}");
            if answer.starts_with("error") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("playground: {e}");
            ExitCode::FAILURE
        }
    }
}

struct PlaygroundArgs {
    dir: Option<PathBuf>,
    replicas: usize,
    port: u16,
    admin_port: u16,
    policy: Option<PathBuf>,
    extra_config: Option<PathBuf>,
    json: bool,
}

async fn playground(a: PlaygroundArgs) -> ExitCode {
    let extra = match &a.extra_config {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("extra configuration {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => String::new(),
    };
    let policy = match &a.policy {
        Some(p) => match std::fs::canonicalize(p) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("policy file {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    // Bind first: a busy port should fail before any server starts.
    let listen = format!("127.0.0.1:{}", a.port);
    let admin_listen = format!("127.0.0.1:{}", a.admin_port);
    let (listener, admin) = match (
        causeway::app::bind_listener(&listen).await,
        TcpListener::bind(&admin_listen).await,
    ) {
        (Ok(l), Ok(ad)) => (l, ad),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot listen on {listen} / {admin_listen}: {e} (choose others with --port / --admin-port)");
            return ExitCode::FAILURE;
        }
    };
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    let admin_listen = admin
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(admin_listen);
    eprintln!("starting MariaDB: 1 primary, {} replica(s)...", a.replicas);
    let cluster = match Cluster::start(ClusterOptions {
        dir: a.dir.clone(),
        replicas: a.replicas,
    })
    .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("playground: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut toml =
        causeway::app::playground_config(&cluster, &listen, &admin_listen, policy.as_deref());
    if !extra.is_empty() {
        toml.push('\n');
        toml.push_str(&extra);
    }
    let cfg_path = cluster.dir().join("causeway.toml");
    if let Err(e) = std::fs::write(&cfg_path, &toml) {
        eprintln!("cannot write {}: {e}", cfg_path.display());
        return ExitCode::FAILURE;
    }
    let config = match load_config(&cfg_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (tx, rx) = watch::channel(false);
    let proxy = tokio::spawn(causeway::app::run(config, listener, Some(admin), rx));
    let dir = cluster.dir().to_path_buf();
    let replicas: Vec<String> = cluster
        .replicas
        .iter()
        .map(|r| r.addr.to_string())
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "proxy": listen,
                "admin": admin_listen,
                "primary": cluster.primary.addr.to_string(),
                "replicas": replicas,
                "user": cluster.app_user,
                "password": cluster.app_password,
                "dir": dir.display().to_string(),
            })
        );
    } else {
        println!("Causeway playground is ready.");
        println!("  primary:  {}", cluster.primary.addr);
        for (r, addr) in cluster.replicas.iter().zip(&replicas) {
            println!("  {}: {addr}", r.name);
        }
        println!(
            "  metrics:  http://{admin_listen}/metrics   status: http://{admin_listen}/status"
        );
        println!("  config:   {}", cfg_path.display());
        println!();
        println!("Connect with:");
        println!(
            "  mariadb -c -h127.0.0.1 -P{} -u{} -p{} app   (-c keeps comments: hints need it)",
            listen.rsplit(':').next().unwrap_or_default(),
            cluster.app_user,
            cluster.app_password
        );
        println!();
        println!("Try a failure or a switchover from another terminal:");
        let d = dir.display();
        println!("  causeway playground list --dir {d}");
        println!("  causeway playground kill replica1 --dir {d}     (SIGKILL; also: stop)");
        println!("  causeway playground start replica1 --dir {d}");
        println!("  causeway playground switchover --to replica1 --dir {d}");
        println!();
        println!("Press Ctrl-C to stop (every server started here is stopped).");
    }
    // The servers now belong to the control socket's handler as well.
    let shared = std::sync::Arc::new(tokio::sync::Mutex::new(cluster));
    let control = match causeway::playground::control::serve(shared.clone(), &dir) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("playground: no control socket ({e}); kill/stop/start are unavailable");
            None
        }
    };
    wait_for_signal().await;
    eprintln!("stopping...");
    let _ = tx.send(true);
    let _ = proxy.await;
    if let Some(t) = control {
        t.abort();
        let _ = t.await;
    }
    let _ = std::fs::remove_file(causeway::playground::control::socket_path(&dir));
    let Ok(cluster) = std::sync::Arc::try_unwrap(shared).map(tokio::sync::Mutex::into_inner) else {
        eprintln!("playground shutdown: the servers are still in use");
        return ExitCode::FAILURE;
    };
    if let Err(e) = cluster.shutdown().await {
        eprintln!("playground shutdown: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
