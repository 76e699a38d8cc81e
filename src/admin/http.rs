//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and
//! `GET /status` (JSON: topology, sessions). A deliberately small HTTP/1.1
//! server: one request per connection, bounded request size, each
//! connection bounded in time (`timeouts.admin_request_ms`) and in number
//! (`proxy.admin_max_connections`; more are answered `503` at once).

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::cluster::Cluster;

const MAX_REQUEST: usize = 8 * 1024;

pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    metrics: PrometheusHandle,
    status: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (limit, cap) = {
        let cfg = cluster.config();
        (
            cfg.timeouts.admin_request(),
            cfg.proxy.admin_max_connections,
        )
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    loop {
        let (sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut sock = sock;
                let body = "too many admin connections\n";
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                // Answer, then read what the client sent until it closes, so
                // closing does not reset the connection under its reply.
                let _ = tokio::time::timeout(limit, async {
                    sock.write_all(resp.as_bytes()).await?;
                    sock.shutdown().await?;
                    let mut sink = [0u8; 1024];
                    let mut left = MAX_REQUEST;
                    while left > 0 {
                        let n = sock.read(&mut sink).await?;
                        if n == 0 {
                            break;
                        }
                        left = left.saturating_sub(n);
                    }
                    Ok::<_, std::io::Error>(())
                })
                .await;
            });
            continue;
        };
        let cluster = cluster.clone();
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(limit, handle(sock, &cluster, &metrics, &*status)).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "admin request failed"),
                Err(_) => tracing::debug!("admin request too slow; closed"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn handle(
    mut sock: TcpStream,
    cluster: &Cluster,
    metrics: &PrometheusHandle,
    status: &(dyn Fn() -> serde_json::Value + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > MAX_REQUEST {
            break;
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/status") => {
            let mut v = status();
            if let Some(obj) = v.as_object_mut() {
                let mut topo = serde_json::to_value(&*cluster.topology()).unwrap_or_default();
                if let Some(list) = topo.get_mut("backends").and_then(|b| b.as_array_mut()) {
                    for (i, b) in list.iter_mut().enumerate() {
                        let sample = cluster.positions().sample(i);
                        if let Some(o) = b.as_object_mut() {
                            let pos = sample.as_ref().and_then(|s| s.pos.as_ref());
                            o.insert("position".into(), pos.map(|p| p.to_string()).into());
                            o.insert(
                                "position_lag_ms".into(),
                                sample.as_ref().and_then(|s| s.lag_ms).into(),
                            );
                            o.insert(
                                "position_age_ms".into(),
                                sample
                                    .as_ref()
                                    .map(|s| s.started.elapsed().as_millis() as u64)
                                    .into(),
                            );
                        }
                    }
                }
                obj.insert("topology".into(), topo);
            }
            ("200 OK", "application/json", v.to_string())
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    };
    let resp = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}
