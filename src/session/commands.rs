//! The command loop: read a client's command, dispatch it, answer.

use super::{processlist, registry, send_error, Flow, Session};
use crate::error::Error;
use crate::protocol::command::{Command, CommandError};
use crate::protocol::packet::{begin_packet, finish_packet};
use crate::protocol::reply::Expect;
use crate::protocol::response::Ok as OkPacket;
use crate::protocol::stream::ReadError;

impl Session {
    pub(super) async fn command_loop(&mut self, reg: &registry::Registration) {
        let kill = &*reg.kill;
        let max = self.ctx.cluster.max_allowed_packet();
        let mut shutdown = self.ctx.shutdown.clone();
        loop {
            let idle = self.wait_timeout();
            let read = tokio::select! {
                r = tokio::time::timeout(idle, self.client.stream.read_command(max)) => match r {
                    Ok(r) => r,
                    // The server closes such a client without a word.
                    Err(_) => return self.idle_timed_out(idle),
                },
                _ = kill.notified() => return,
                _ = registry::shutdown_signalled(&mut shutdown) => return,
            };
            let payload = match read {
                Ok(p) => p,
                Err(ReadError::TooLarge { .. }) => {
                    send_error(
                        &self.ctx.metrics,
                        &mut self.client.stream,
                        1,
                        &Error::PacketTooLarge,
                    )
                    .await;
                    return;
                }
                Err(ReadError::OutOfOrder { expected }) => {
                    send_error(
                        &self.ctx.metrics,
                        &mut self.client.stream,
                        expected,
                        &Error::PacketsOutOfOrder,
                    )
                    .await;
                    return;
                }
                Err(_) => return,
            };
            let mut was_open = true;
            let flow = match Command::decode(&payload.data, self.client.caps) {
                Ok(cmd) => {
                    self.ctx.metrics.command(cmd.label());
                    let info = self.command_info(&cmd, &payload.data);
                    reg.begin(processlist::command_name(&cmd), info);
                    was_open = self.txn.backend.is_some_and(|b| self.is_primary(b));
                    self.dispatch(cmd, &payload.data, payload.last_seq).await
                }
                Err(CommandError::Empty) | Err(CommandError::Malformed(_)) => {
                    self.fail(payload.last_seq.wrapping_add(1), &Error::MalformedPacket)
                        .await
                }
            };
            let flow = match flow {
                // Not retried by the command: the client gets its error.
                Flow::Retry(f) | Flow::Replay(f) => self.fail(f.seq, &f.error).await,
                flow => flow,
            };
            if let Flow::Close = flow {
                return;
            }
            reg.end();
            self.settle_replay(&payload.data, was_open);
            self.settle_primary_use();
            if self.watch.is_killed() {
                return;
            }
            self.after_command(reg);
        }
    }

    async fn dispatch(&mut self, cmd: Command<'_>, raw: &[u8], seq: u8) -> Flow {
        let next = seq.wrapping_add(1);
        self.read_only_followed = false;
        self.follow_roles();
        if let Some(e) = self.lost_state().filter(|_| !matches!(cmd, Command::Quit)) {
            // A connection dropped earlier took state the session still
            // counts on: end the session, as a restarted server would.
            if !matches!(
                cmd,
                Command::StmtClose(_) | Command::StmtSendLongData { .. }
            ) {
                send_error(&self.ctx.metrics, &mut self.client.stream, next, &e).await;
            }
            return Flow::Close;
        }
        // A connection dropped earlier took the open transaction: the next
        // command with a reply gets the error that says so instead of
        // running, and the session goes on outside the transaction.
        let replies = !matches!(
            cmd,
            Command::Quit | Command::StmtClose(_) | Command::StmtSendLongData { .. }
        );
        if matches!(cmd, Command::ResetConnection | Command::ChangeUser(_)) {
            // They end any transaction themselves.
            let _ = self.lost_transaction();
        } else if replies {
            if let Some(e) = self.lost_transaction() {
                return self.fail(next, &e).await;
            }
        }
        match cmd {
            Command::Quit => Flow::Close,
            Command::Ping => self.ok_or_close(next).await,
            Command::Unsupported(code) => self.fail(next, &Error::UnknownCommand(code)).await,
            Command::ProcessKill(id) => self.process_kill(id, next).await,
            Command::ChangeUser(cu) => self.change_user(cu, next).await,
            Command::ResetConnection => self.forward_all(raw, Expect::Single).await,
            // Reads of `@@socket` get NULL: Causeway has no socket to offer,
            // and connectors would use the backend's to bypass it.
            Command::Query(sql) => match crate::classify::hide_socket(sql) {
                Some(mut hidden) => {
                    hidden.insert(0, crate::protocol::consts::com::QUERY);
                    let sql = hidden.get(1..).unwrap_or(&[]);
                    self.query(sql, &hidden, next).await
                }
                None => self.query(sql, raw, next).await,
            },
            Command::SetOption(o) if self.conns.pooled => self.set_option_pooled(o, raw).await,
            Command::SetOption(o) => self.set_option(o, raw).await,
            Command::InitDb(_) => self.forward(raw, Expect::Single).await,
            Command::Statistics => self.forward(raw, Expect::Text).await,
            Command::FieldList { .. } => self.forward(raw, Expect::FieldList).await,
            Command::StmtPrepare(sql) => self.stmt_prepare(sql, raw).await,
            Command::StmtExecute { stmt_id, flags } => {
                self.stmt_execute(stmt_id, flags, raw, next).await
            }
            Command::StmtFetch { stmt_id, .. } => self.stmt_fetch(stmt_id, raw, next).await,
            Command::StmtBulkExecute { stmt_id, flags } => {
                self.stmt_bulk_execute(stmt_id, flags, raw, next).await
            }
            Command::StmtReset(id) => self.stmt_reset(id, raw, next).await,
            Command::StmtClose(id) => self.stmt_close(id).await,
            Command::StmtSendLongData { stmt_id } => self.stmt_long_data(stmt_id, raw).await,
        }
    }

    pub(super) async fn send_ok(&mut self, seq: u8) -> std::io::Result<()> {
        self.scratch.clear();
        let start = begin_packet(&mut self.scratch, seq);
        OkPacket {
            status: self.status,
            ..OkPacket::default()
        }
        .encode(&mut self.scratch, self.client.caps);
        finish_packet(&mut self.scratch, start);
        self.client.stream.write_all(&self.scratch).await
    }

    pub(super) async fn ok_or_close(&mut self, seq: u8) -> Flow {
        match self.send_ok(seq).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    pub(super) async fn fail(&mut self, seq: u8, e: &Error) -> Flow {
        if send_error(&self.ctx.metrics, &mut self.client.stream, seq, e).await {
            Flow::Continue
        } else {
            Flow::Close
        }
    }
}
