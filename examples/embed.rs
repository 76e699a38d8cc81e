//! Runs Causeway inside another program: load a configuration, bind the
//! listeners, and serve until Ctrl-C.
//!
//! ```text
//! cargo run --example embed -- config/example.toml
//! ```

use std::sync::Arc;

use causeway::config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: embed CONFIG.toml")?;
    let config = Arc::new(Config::load(path.as_ref())?);
    let listener = TcpListener::bind(&config.proxy.listen).await?;
    println!("serving on {}", listener.local_addr()?);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop.send(true);
    });
    // No admin endpoint here: pass Some(listener) to get /metrics and /status.
    causeway::app::run(config, listener, None, stopped).await?;
    Ok(())
}
