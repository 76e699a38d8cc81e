//! Controlling a running playground from another process: `causeway
//! playground list|kill|stop|start` send one line to the Unix socket
//! `control.sock` in the cluster directory and print the one-line answer.
//! The process that started the servers does the work, so it keeps owning
//! them (a restarted server is stopped with the others at the end).
//!
//! Commands: `list`, `kill NAME` (SIGKILL, as a crash), `stop NAME`
//! (SIGTERM, waits for the exit), `start NAME` (same port and data,
//! waits until it answers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use super::error::io_err;
use super::{Cluster, PlaygroundError};

/// The control socket of the cluster living in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// Serves commands on `control.sock` in the cluster's directory until the
/// returned task is aborted; one connection at a time.
pub fn serve(
    cluster: Arc<Mutex<Cluster>>,
    dir: &Path,
) -> Result<tokio::task::JoinHandle<()>, PlaygroundError> {
    let path = socket_path(dir);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(io_err(format!("binding {}", path.display())))?;
    Ok(tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let _ = one(&cluster, sock).await;
        }
    }))
}

async fn one(cluster: &Mutex<Cluster>, sock: UnixStream) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let answer = run(cluster, line.trim()).await;
    w.write_all(answer.as_bytes()).await?;
    w.write_all(b"\n").await?;
    w.shutdown().await
}

async fn run(cluster: &Mutex<Cluster>, command: &str) -> String {
    let mut words = command.split_whitespace();
    let (verb, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut c = cluster.lock().await;
    if verb == "list" {
        return c
            .servers_mut()
            .map(|s| {
                let pid = s.pid().map_or("-".to_string(), |p| p.to_string());
                let state = if s.is_running() { "running" } else { "stopped" };
                format!(
                    "{} {} pid={pid} {state} {}",
                    s.name,
                    s.addr,
                    s.dir().display()
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let Some(server) = c.servers_mut().find(|s| s.name == name) else {
        return format!("error: no server named '{name}'");
    };
    match verb {
        "kill" => {
            server.kill();
            format!("ok: {name} killed (SIGKILL)")
        }
        "stop" => match server.stop().await {
            Ok(()) => format!("ok: {name} stopped"),
            Err(e) => format!("error: {e}"),
        },
        "start" => match server.start().await {
            Ok(()) => format!("ok: {name} started on {}", server.addr),
            Err(e) => format!("error: {e}"),
        },
        _ => format!("error: unknown command '{verb}' (list, kill, stop, start)"),
    }
}

/// Sends one command to the playground living in `dir`; its answer.
pub async fn send(dir: &Path, command: &str) -> Result<String, PlaygroundError> {
    let path = socket_path(dir);
    let what = format!(
        "connecting to {} (is `causeway playground --dir {}` running?)",
        path.display(),
        dir.display()
    );
    let mut sock = UnixStream::connect(&path).await.map_err(io_err(what))?;
    sock.write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(io_err("sending the command"))?;
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut sock, &mut out)
        .await
        .map_err(io_err("reading the answer"))?;
    Ok(out.trim_end().to_string())
}
