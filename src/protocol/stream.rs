//! A buffered packet reader/writer over any byte stream. Reading is two
//! steps: "is a whole packet buffered?" (pure, [`super::packet::frame_len`])
//! then split it off; a short read just means "read more".

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::packet::{frame_len, Header, HEADER_LEN};

const READ_CHUNK: usize = 16 * 1024;

/// An empty read buffer larger than this is given back before the next read.
const SHRINK_ABOVE: usize = 1 << 20;

/// One logical payload, joined from one or more physical packets.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Sequence id of the first packet.
    pub seq: u8,
    /// Sequence id of the last packet.
    pub last_seq: u8,
    pub data: Bytes,
}

/// Why a payload could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The peer closed the connection between packets.
    Closed,
    /// The peer closed the connection in the middle of a packet.
    Truncated,
    /// The payload is larger than allowed; nothing more can be read safely.
    TooLarge {
        limit: usize,
    },
    /// A packet's sequence id is not the one due (a server answers ERROR
    /// 1156 and closes); `expected` is the id that was due.
    OutOfOrder {
        expected: u8,
    },
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

#[derive(Debug)]
pub struct PacketStream<S> {
    io: S,
    rbuf: BytesMut,
}

impl PacketStream<tokio::net::TcpStream> {
    /// Whether the peer closed the connection, or sent something nobody
    /// asked for, while no command was in flight: such a connection cannot
    /// take the next command. Costs no system call while the socket has
    /// not been reported readable (the runtime's readiness is looked at
    /// first).
    pub fn gone_while_idle(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        match self.io.try_read_buf(&mut self.rbuf) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketStream<S> {
    pub fn new(io: S) -> Self {
        PacketStream {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Takes the bytes received and not yet consumed (a layer switched on
    /// under the packets reads them again).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.rbuf.split()
    }

    /// How many bytes are received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// Bytes received and not yet consumed.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.rbuf
    }

    /// Reads more bytes into the buffer. `Ok(0)` means the peer closed.
    pub async fn fill(&mut self) -> io::Result<usize> {
        // A buffer that grew for one huge packet goes back to its usual
        // size once that packet has been consumed.
        if self.rbuf.is_empty() && self.rbuf.capacity() > SHRINK_ABOVE {
            self.rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        self.io.read_buf(&mut self.rbuf).await
    }

    /// Ensures at least `n` bytes are buffered.
    pub async fn fill_to(&mut self, n: usize) -> Result<(), ReadError> {
        while self.rbuf.len() < n {
            self.rbuf.reserve(n - self.rbuf.len());
            if self.fill().await? == 0 {
                return Err(if self.rbuf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Truncated
                });
            }
        }
        Ok(())
    }

    /// Reads one physical packet whole: its header and payload.
    pub async fn read_packet(&mut self) -> Result<(Header, Bytes), ReadError> {
        loop {
            if let Some(n) = frame_len(&self.rbuf) {
                let h = Header::parse(&self.rbuf).ok_or(ReadError::Truncated)?;
                let mut frame = self.rbuf.split_to(n);
                frame.advance(HEADER_LEN);
                return Ok((h, frame.freeze()));
            }
            if let Some(h) = Header::parse(&self.rbuf) {
                self.rbuf.reserve(HEADER_LEN + h.len - self.rbuf.len());
            }
            if self.fill().await? == 0 {
                return Err(if self.rbuf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Truncated
                });
            }
        }
    }

    /// Reads one logical payload, joining continuation packets, refusing
    /// payloads over `limit` bytes before buffering them.
    pub async fn read_payload(&mut self, limit: usize) -> Result<Payload, ReadError> {
        self.read_payload_from(limit, None).await
    }

    /// Reads a client command as a server does: its first packet must have
    /// sequence id 0 and each continuation the next one.
    pub async fn read_command(&mut self, limit: usize) -> Result<Payload, ReadError> {
        self.read_payload_from(limit, Some(0)).await
    }

    /// [`PacketStream::read_payload`], checking sequence ids from `due` on
    /// when it is given.
    async fn read_payload_from(
        &mut self,
        limit: usize,
        mut due: Option<u8>,
    ) -> Result<Payload, ReadError> {
        let mut check = |h: &Header| match due {
            Some(d) if h.seq != d => Err(ReadError::OutOfOrder { expected: d }),
            Some(d) => {
                due = Some(d.wrapping_add(1));
                Ok(())
            }
            None => Ok(()),
        };
        self.fill_to(HEADER_LEN).await?;
        if let Some(h) = Header::parse(&self.rbuf) {
            check(&h)?;
            if h.len > limit {
                return Err(ReadError::TooLarge { limit });
            }
        }
        let (h, first) = self.read_packet().await?;
        if !h.continues() {
            return Ok(Payload {
                seq: h.seq,
                last_seq: h.seq,
                data: first,
            });
        }
        let mut joined = BytesMut::from(&first[..]);
        let mut last = h;
        while last.continues() {
            let (h, more) = self.read_packet().await?;
            check(&h)?;
            if joined.len() + more.len() > limit {
                return Err(ReadError::TooLarge { limit });
            }
            joined.extend_from_slice(&more);
            last = h;
        }
        Ok(Payload {
            seq: h.seq,
            last_seq: last.seq,
            data: joined.freeze(),
        })
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.write_all(data).await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::write_packets;

    #[tokio::test]
    async fn joins_split_payloads_and_reads_back_to_back_packets() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let big = vec![9u8; (16 << 20) + 10];
        let writer = tokio::spawn(async move {
            let mut s = PacketStream::new(a);
            let mut out = BytesMut::new();
            write_packets(&mut out, 0, &big);
            write_packets(&mut out, 0, b"next");
            s.write_all(&out).await.unwrap();
        });
        let mut r = PacketStream::new(b);
        let p = r.read_payload(64 << 20).await.unwrap();
        assert_eq!(p.data.len(), (16 << 20) + 10);
        assert_eq!((p.seq, p.last_seq), (0, 1));
        let p = r.read_payload(64 << 20).await.unwrap();
        assert_eq!(&p.data[..], b"next");
        writer.await.unwrap();
        assert!(matches!(r.read_payload(10).await, Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn a_buffer_grown_for_a_huge_packet_shrinks_after_it() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move {
            let mut s = PacketStream::new(a);
            let mut out = BytesMut::new();
            write_packets(&mut out, 0, &vec![1u8; 20 << 20]);
            write_packets(&mut out, 0, b"small");
            s.write_all(&out).await.unwrap();
        });
        let mut r = PacketStream::new(b);
        assert_eq!(r.read_payload(64 << 20).await.unwrap().data.len(), 20 << 20);
        assert_eq!(&r.read_payload(64 << 20).await.unwrap().data[..], b"small");
        writer.await.unwrap();
        let _ = r.fill().await;
        assert!(r.rbuf.capacity() <= SHRINK_ABOVE, "{}", r.rbuf.capacity());
    }

    #[tokio::test]
    async fn refuses_oversize_payload_before_buffering_it() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = PacketStream::new(a);
        let mut out = BytesMut::new();
        write_packets(&mut out, 0, &[1u8; 100]);
        w.write_all(&out).await.unwrap();
        let mut r = PacketStream::new(b);
        assert!(matches!(
            r.read_payload(50).await,
            Err(ReadError::TooLarge { limit: 50 })
        ));
    }

    #[tokio::test]
    async fn truncated_packet_is_reported() {
        let (a, b) = tokio::io::duplex(64);
        let mut w = PacketStream::new(a);
        w.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        drop(w);
        let mut r = PacketStream::new(b);
        assert!(matches!(
            r.read_payload(100).await,
            Err(ReadError::Truncated)
        ));
    }

    /// A stream whose peer sent `raw` and closed.
    async fn sent(raw: Vec<u8>) -> PacketStream<tokio::io::DuplexStream> {
        let (mut a, b) = tokio::io::duplex(raw.len() + 16);
        a.write_all(&raw).await.unwrap();
        drop(a);
        PacketStream::new(b)
    }

    #[tokio::test]
    async fn commands_need_sequence_ids_in_order() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&[1, 0, 0, 0, 0x0e]); // COM_PING, seq 0
        raw.extend_from_slice(&[1, 0, 0, 3, 0x0e]); // seq 3
        let mut s = sent(raw).await;
        assert_eq!(&s.read_command(1024).await.unwrap().data[..], &[0x0e]);
        assert!(matches!(
            s.read_command(1024).await,
            Err(ReadError::OutOfOrder { expected: 0 })
        ));
        // A continuation must carry the next id.
        let mut raw = vec![0xff, 0xff, 0xff, 0];
        raw.extend(std::iter::repeat_n(0x03, 0xff_ffff));
        raw.extend_from_slice(&[1, 0, 0, 2, b'x']);
        let mut s = sent(raw.clone()).await;
        assert!(matches!(
            s.read_command(1 << 25).await,
            Err(ReadError::OutOfOrder { expected: 1 })
        ));
        let mut s = sent(raw).await;
        assert!(
            s.read_payload(1 << 25).await.is_ok(),
            "unchecked reads accept it"
        );
    }
}
