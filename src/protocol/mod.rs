//! The MySQL/MariaDB wire protocol as pure codecs: framing, connection-phase
//! packets, auth scrambles, commands, terminal packets with session
//! tracking, and the reply state machine.
//!
//! Owns: bytes <-> typed values. Must not import anything else from the
//! crate; the only I/O here is [`stream`], a thin buffered packet reader and
//! writer over any `AsyncRead`/`AsyncWrite`, and [`compress`], the
//! compressed protocol as a layer under it.

pub mod auth;
pub mod buf;
pub mod command;
pub mod compress;
pub mod consts;
pub mod handshake;
pub mod packet;
pub mod reply;
pub mod response;
pub mod resultset;
pub mod stream;

pub use command::Command;
pub use packet::Header;

#[cfg(test)]
mod fuzz_tests;
