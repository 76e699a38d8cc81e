//! `KILL` and COM_PROCESS_KILL, answered by Causeway on its own sessions
//! (a KILL never reaches a backend with a thread id a client chose), and
//! what a session does when it is killed or its client vanishes while a
//! statement runs.
//!
//! Who may kill whom is the server's rule (see `registry::Killer`). `KILL
//! QUERY n` interrupts session n's running statement on its backend from a
//! side connection (`cluster::kill`); session n then relays the server's
//! own ERROR 1317 and goes on. `KILL n` signals session n, which stops
//! waiting for its backend, kills the backend connection, drops every
//! backend connection it holds (a borrowed pooled one is never given
//! back), sends ERROR 1927 if no byte of a reply has reached its client,
//! and closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::sync::Notify;

use super::registry::{Activity, Killer, QueryTarget, Registration, Running};
use super::{send_error, Flow, Session};
use crate::classify::{kill_statement, KillScope, KillStatement, KillTarget};
use crate::cluster::BackendKill;
use crate::error::Error;
use crate::protocol::packet::{begin_packet, finish_packet};
use crate::protocol::response::Ok as OkPacket;

/// The session's side of its registry entry: the kill signal it watches
/// and where it publishes the statement it runs.
pub(super) struct KillWatch {
    pub kill: Arc<Notify>,
    killed: Arc<AtomicBool>,
    activity: Arc<Mutex<Activity>>,
}

impl KillWatch {
    pub fn of(reg: &Registration) -> KillWatch {
        KillWatch {
            kill: reg.kill.clone(),
            killed: reg.killed.clone(),
            activity: reg.activity.clone(),
        }
    }

    /// A statement now runs on backend `backend`, thread `thread_id` (also
    /// what SHOW CAUSEWAY PROCESSLIST shows as its backend thread).
    pub fn publish(&self, backend: usize, thread_id: u32) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.backend = Some((backend, thread_id));
        a.running = true;
    }

    /// No statement runs (the backend that ran the last one stays shown).
    pub fn idle(&self) {
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running = false;
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

impl Session {
    fn killer(&self) -> Killer<'_> {
        Killer {
            user: &self.account.user,
            privileges: self.account.privileges,
        }
    }

    /// A COM_QUERY the classifier called `KILL`.
    pub(super) async fn kill_sql(&mut self, sql: &str, seq: u8) -> Flow {
        match kill_statement(sql) {
            Some(k) => self.kill(k, seq).await,
            None => self.fail(seq, &Error::KillUnsupported).await,
        }
    }

    /// COM_PROCESS_KILL: `KILL CONNECTION id`.
    pub(super) async fn process_kill(&mut self, id: u32, seq: u8) -> Flow {
        let k = KillStatement {
            scope: KillScope::Connection,
            soft: false,
            target: KillTarget::Id(id.into()),
        };
        self.kill(k, seq).await
    }

    async fn kill(&mut self, k: KillStatement, seq: u8) -> Flow {
        let id = match k.target {
            KillTarget::Own => self.id,
            KillTarget::Id(n) => match u32::try_from(n) {
                Ok(id) => id,
                Err(_) => return self.fail(seq, &Error::NoSuchThread(n)).await,
            },
            KillTarget::QueryId(n) => return self.fail(seq, &Error::NoSuchQuery(n)).await,
            KillTarget::User { user, host } => {
                let user = user.unwrap_or_else(|| self.account.user.clone());
                return self.kill_user(&user, host.as_deref(), k.scope, seq).await;
            }
        };
        match k.scope {
            KillScope::Connection => match self.ctx.registry.kill(id, self.killer()) {
                // The server's answer to killing oneself.
                Ok(()) if id == self.id => {
                    send_error(
                        &self.ctx.metrics,
                        &mut self.client.stream,
                        seq,
                        &Error::ConnectionKilled,
                    )
                    .await;
                    Flow::Close
                }
                Ok(()) => self.ok_rows(seq, 0).await,
                Err(e) => self.fail(seq, &e).await,
            },
            KillScope::Query => match self.ctx.registry.query_target(id, self.killer()) {
                // The KILL QUERY itself is the statement interrupted.
                Ok(_) if id == self.id => self.fail(seq, &Error::QueryInterrupted).await,
                Ok(QueryTarget::Idle) => self.ok_rows(seq, 0).await,
                Ok(QueryTarget::Running(r)) => match self.interrupt(&r).await {
                    Ok(()) => self.ok_rows(seq, 0).await,
                    Err(e) => self.fail(seq, &e).await,
                },
                Err(e) => self.fail(seq, &e).await,
            },
        }
    }

    /// `KILL [QUERY] USER name[@host]`: every session of that user; the
    /// OK counts them. Killing one's own session too ends it after the OK.
    async fn kill_user(
        &mut self,
        user: &str,
        host: Option<&str>,
        scope: KillScope,
        seq: u8,
    ) -> Flow {
        let targets = match self.ctx.registry.sessions_of(user, host, self.killer()) {
            Ok(t) => t,
            Err(e) => return self.fail(seq, &e).await,
        };
        let mut count = 0u64;
        let mut myself = false;
        for (id, running) in &targets {
            match scope {
                KillScope::Connection => {
                    if self.ctx.registry.kill(*id, self.killer()).is_ok() {
                        count += 1;
                        myself |= *id == self.id;
                    }
                }
                KillScope::Query if *id == self.id => {}
                KillScope::Query => {
                    if let Some(r) = running {
                        if self.interrupt(r).await.is_ok() {
                            count += 1;
                        }
                    }
                }
            }
        }
        let flow = self.ok_rows(seq, count).await;
        if myself {
            Flow::Close
        } else {
            flow
        }
    }

    /// `KILL QUERY` of another session's running statement.
    async fn interrupt(&self, r: &Running) -> Result<(), Error> {
        self.ctx
            .cluster
            .kill_backend_thread(r.backend, r.thread_id, BackendKill::Query)
            .await
    }

    /// This session was killed while its statement ran on backend `index`.
    pub(super) async fn killed_running(
        &mut self,
        index: usize,
        thread_id: u32,
        sent: bool,
    ) -> Flow {
        self.abandon_statement(index, thread_id).await;
        if !sent {
            send_error(
                &self.ctx.metrics,
                &mut self.client.stream,
                1,
                &Error::ConnectionKilled,
            )
            .await;
        }
        Flow::Close
    }

    /// Ends the statement running on backend `index` (thread `thread_id`)
    /// by killing its backend connection from a side connection, and drops
    /// every backend connection the session holds: none is in a state to
    /// be used again or given back to a pool.
    pub(super) async fn abandon_statement(&mut self, index: usize, thread_id: u32) {
        let _ = self
            .ctx
            .cluster
            .kill_backend_thread(index, thread_id, BackendKill::Connection)
            .await;
        self.conns.open.iter_mut().for_each(|b| *b = None);
    }

    /// An OK with `rows` affected rows (what KILL USER reports).
    async fn ok_rows(&mut self, seq: u8, rows: u64) -> Flow {
        let mut out = BytesMut::with_capacity(16);
        let start = begin_packet(&mut out, seq);
        OkPacket {
            status: self.status,
            affected_rows: rows,
            ..OkPacket::default()
        }
        .encode(&mut out, self.client.caps);
        finish_packet(&mut out, start);
        match self.client.stream.write_all(&out).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }
}
