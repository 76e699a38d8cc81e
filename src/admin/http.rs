//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /status` (JSON: topology, sessions) and `POST /switchover?to=NAME`
//! (JSON: what the switchover did; a bearer token when
//! `proxy.admin_token` is set). A deliberately small HTTP/1.1 server: one
//! request per connection, bounded request size, reading the request and
//! writing the answer each bounded in time (`timeouts.admin_request_ms`;
//! the switchover between them is bounded by its own steps) and
//! connections bounded in number (`proxy.admin_max_connections`; more are
//! answered `503` at once).

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
            if let Err(e) = handle(sock, &cluster, &metrics, &*status, limit).await {
                tracing::debug!(error = %e, "admin request failed or too slow; closed");
            }
        });
    }
}

async fn handle(
    mut sock: TcpStream,
    cluster: &Arc<Cluster>,
    metrics: &PrometheusHandle,
    status: &(dyn Fn() -> serde_json::Value + Send + Sync),
    limit: std::time::Duration,
) -> std::io::Result<()> {
    let too_slow = |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "too slow");
    let Some(buf) = tokio::time::timeout(limit, read_request(&mut sock))
        .await
        .map_err(too_slow)??
    else {
        return Ok(());
    };
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (code, ctype, body) = match (method, path) {
        ("POST", "/switchover") => switchover(cluster, &buf, query).await,
        _ => answer(cluster, metrics, status, method, target),
    };
    let resp = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(limit, async {
        sock.write_all(resp.as_bytes()).await?;
        sock.shutdown().await
    })
    .await
    .map_err(too_slow)?
}

/// The request's head (up to the blank line, or `MAX_REQUEST` bytes);
/// `None` if the client closed first.
async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > MAX_REQUEST {
            return Ok(Some(buf));
        }
    }
}

type Answer = (&'static str, &'static str, String);

/// `POST /switchover?to=NAME`: runs a switchover and answers what it did.
async fn switchover(cluster: &Arc<Cluster>, request: &[u8], query: &str) -> Answer {
    let json = |code, v: serde_json::Value| (code, "application/json", format!("{v}\n"));
    if let Some(token) = cluster.config().proxy.admin_token.as_deref() {
        if !bearer_matches(request, token) {
            return json(
                "401 Unauthorized",
                serde_json::json!({"result": "refused", "reason": "a bearer token is required (proxy.admin_token)"}),
            );
        }
    }
    let to = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("to="))
        .map(percent_decode)
        .unwrap_or_default();
    if to.is_empty() {
        return json(
            "400 Bad Request",
            serde_json::json!({"result": "refused", "reason": "name the target: POST /switchover?to=NAME"}),
        );
    }
    match cluster.switchover(&to).await {
        Ok(o) => {
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                let result = if o.warnings.is_empty() {
                    "done"
                } else {
                    "incomplete"
                };
                obj.insert("result".into(), result.into());
            }
            json("200 OK", v)
        }
        Err(e) => {
            let code = match e.failure {
                crate::cluster::Failure::Refused => "409 Conflict",
                crate::cluster::Failure::Aborted => "500 Internal Server Error",
            };
            json(
                code,
                serde_json::json!({"result": e.failure, "reason": e.reason}),
            )
        }
    }
}

/// Whether the request carries `Authorization: Bearer <token>`.
fn bearer_matches(request: &[u8], token: &str) -> bool {
    let head = String::from_utf8_lossy(request);
    head.lines().any(|l| {
        let Some((name, value)) = l.split_once(':') else {
            return false;
        };
        let value = value.trim();
        name.trim().eq_ignore_ascii_case("authorization")
            && value.len() > 7
            && value[..7].eq_ignore_ascii_case("bearer ")
            && same_bytes(value[7..].trim().as_bytes(), token.as_bytes())
    })
}

/// Compares without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The read-only pages.
fn answer(
    cluster: &Cluster,
    metrics: &PrometheusHandle,
    status: &(dyn Fn() -> serde_json::Value + Send + Sync),
    method: &str,
    path: &str,
) -> Answer {
    match (method, path) {
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
                            // Sessions using it as the primary (a switchover's
                            // drain waits for none).
                            o.insert("primary_users".into(), cluster.primary_users(i).into());
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
                obj.insert("writes_held".into(), cluster.writes_held().into());
            }
            ("200 OK", "application/json", v.to_string())
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET (and POST /switchover)\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_query() {
        let req = b"POST /switchover?to=a HTTP/1.1\r\nAuthorization: bearer s3cret\r\n\r\n";
        assert!(bearer_matches(req, "s3cret"));
        assert!(!bearer_matches(req, "s3cre"));
        assert!(!bearer_matches(b"POST / HTTP/1.1\r\n\r\n", "x"));
        assert_eq!(percent_decode("replica%201+x%"), "replica 1 x%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
