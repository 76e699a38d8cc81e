//! The compressed protocol (`CLIENT_COMPRESS`, zlib): a layer under the
//! packet layer. Each compressed packet has a 7-byte header (3-byte length
//! of what follows, 1-byte sequence id counted apart from the packets
//! inside, 3-byte length before compression, 0 when the bytes follow
//! uncompressed) and carries any run of bytes of the ordinary packet
//! stream: part of a packet or several.
//!
//! [`ClientIo`] is the client socket with that layer switched on or off:
//! off until the login's OK has been sent, as the server does, on after
//! that for a client that asked for it. Sequence ids follow the server's
//! rule: a command starts at the id the client sent, each reply packet
//! takes the next one.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::consts::MAX_PACKET_PAYLOAD;
use super::stream::PacketStream;

pub const COMPRESSED_HEADER_LEN: usize = 7;

/// Runs shorter than this go uncompressed, as the server sends them.
pub const MIN_COMPRESS_LENGTH: usize = 50;

/// The most one compressed packet carries (before or after compression).
const MAX_RUN: usize = MAX_PACKET_PAYLOAD;

const READ_CHUNK: usize = 16 * 1024;

/// A parsed compressed-packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedHeader {
    /// Bytes after the header.
    pub len: usize,
    pub seq: u8,
    /// Length before compression; 0: the bytes follow uncompressed.
    pub uncompressed: usize,
}

impl CompressedHeader {
    /// `None` when fewer than 7 bytes are buffered.
    pub fn parse(buf: &[u8]) -> Option<CompressedHeader> {
        let b = buf.get(..COMPRESSED_HEADER_LEN)?;
        let u24 =
            |o: usize| usize::from(b[o]) | usize::from(b[o + 1]) << 8 | usize::from(b[o + 2]) << 16;
        Some(CompressedHeader {
            len: u24(0),
            seq: b[3],
            uncompressed: u24(4),
        })
    }
}

/// The zlib state of one direction pair, reused packet after packet.
pub struct Codec {
    deflate: Compress,
    inflate: Decompress,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            deflate: Compress::new(Compression::default(), true),
            inflate: Decompress::new(true),
        }
    }
}

impl Codec {
    /// Appends `data` as compressed packets with sequence ids from `seq`
    /// on; returns the next id. Runs under [`MIN_COMPRESS_LENGTH`] bytes,
    /// and runs that zlib would not shrink, go uncompressed.
    pub fn encode(&mut self, out: &mut BytesMut, mut seq: u8, data: &[u8]) -> u8 {
        for run in data.chunks(MAX_RUN) {
            let start = out.len();
            out.put_bytes(0, COMPRESSED_HEADER_LEN);
            let body = start + COMPRESSED_HEADER_LEN;
            let mut packed = None;
            if run.len() >= MIN_COMPRESS_LENGTH {
                // Room for a run that does not shrink; such a run is sent
                // as it is, so the bound never needs to be zlib's own.
                out.resize(body + run.len(), 0);
                self.deflate.reset();
                let st = self
                    .deflate
                    .compress(run, &mut out[body..], FlushCompress::Finish);
                if let Ok(Status::StreamEnd) = st {
                    let n = self.deflate.total_out() as usize;
                    if n < run.len() {
                        packed = Some(n);
                    }
                }
            }
            let (len, uncompressed) = match packed {
                Some(n) => {
                    out.truncate(body + n);
                    (n, run.len())
                }
                None => {
                    out.truncate(body);
                    out.put_slice(run);
                    (run.len(), 0)
                }
            };
            u24_at(&mut out[start..], len);
            out[start + 3] = seq;
            u24_at(&mut out[start + 4..], uncompressed);
            seq = seq.wrapping_add(1);
        }
        seq
    }

    /// Appends the bytes one compressed packet carries (`payload`, after
    /// its header `h`) to `out`.
    pub fn decode(
        &mut self,
        h: &CompressedHeader,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> io::Result<()> {
        if h.uncompressed == 0 {
            out.extend_from_slice(payload);
            return Ok(());
        }
        let start = out.len();
        out.resize(start + h.uncompressed, 0);
        self.inflate.reset(true);
        let st = self
            .inflate
            .decompress(payload, &mut out[start..], FlushDecompress::Finish);
        let whole = matches!(st, Ok(Status::StreamEnd))
            && self.inflate.total_out() as usize == h.uncompressed
            && self.inflate.total_in() as usize == payload.len();
        if !whole {
            out.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "could not uncompress a compressed packet",
            ));
        }
        Ok(())
    }
}

/// Writes `v` as a 3-byte little-endian integer at the front of `b`.
fn u24_at(b: &mut [u8], v: usize) {
    b[..3].copy_from_slice(&(v as u32).to_le_bytes()[..3]);
}

/// What a compressing connection keeps between calls.
struct Zlib {
    codec: Codec,
    /// Compressed bytes read and not yet decoded.
    raw: BytesMut,
    /// Where reads land before they are appended to `raw`.
    scratch: Box<[u8; READ_CHUNK]>,
    /// Decoded bytes not yet handed to the reader.
    plain: BytesMut,
    /// Compressed bytes not yet written.
    out: BytesMut,
    /// How many of the caller's bytes `out` holds (returned once written).
    accepted: usize,
    /// The sequence id of the next compressed packet written.
    seq: u8,
}

/// A client socket, with the compressed protocol on or off.
pub struct ClientIo<S> {
    io: S,
    zlib: Option<Box<Zlib>>,
}

impl<S> ClientIo<S> {
    pub fn new(io: S) -> Self {
        ClientIo { io, zlib: None }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub fn compressed(&self) -> bool {
        self.zlib.is_some()
    }

    /// Bytes decoded from the peer and not yet read.
    pub fn pending(&self) -> usize {
        self.zlib
            .as_ref()
            .map_or(0, |z| z.plain.len() + z.raw.len())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketStream<ClientIo<S>> {
    /// Switches the compressed protocol on: whatever follows (including
    /// bytes already received and not yet read) is compressed packets.
    pub fn start_compression(&mut self) {
        let raw = self.take_buffered();
        self.get_mut().zlib = Some(Box::new(Zlib {
            codec: Codec::default(),
            raw,
            scratch: Box::new([0; READ_CHUNK]),
            plain: BytesMut::new(),
            out: BytesMut::new(),
            accepted: 0,
            seq: 0,
        }));
    }

    /// Bytes received from the peer and not yet read as packets.
    pub fn pending(&self) -> usize {
        self.buffered() + self.get_ref().pending()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(z) = this.zlib.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        loop {
            if !z.plain.is_empty() {
                let n = z.plain.len().min(buf.remaining());
                buf.put_slice(&z.plain[..n]);
                z.plain.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(h) = CompressedHeader::parse(&z.raw) {
                let total = COMPRESSED_HEADER_LEN + h.len;
                if z.raw.len() >= total {
                    let packet = z.raw.split_to(total);
                    z.seq = h.seq.wrapping_add(1);
                    let Zlib { codec, plain, .. } = &mut **z;
                    codec.decode(&h, &packet[COMPRESSED_HEADER_LEN..], plain)?;
                    continue;
                }
                z.raw.reserve(total - z.raw.len());
            }
            // Read through a fixed buffer and copy what came (no unsafe
            // code, and no zeroing of room that a small read never uses).
            let n = {
                let mut rb = ReadBuf::new(&mut z.scratch[..]);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
                let got = rb.filled();
                z.raw.extend_from_slice(got);
                got.len()
            };
            if n == 0 {
                // The peer closed (mid-packet or not): the reader sees the end.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> ClientIo<S> {
    /// Writes out what compressed bytes are waiting.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(z) = self.zlib.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !z.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &z.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            z.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(z) = this.zlib.as_mut() else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        if z.out.is_empty() {
            // A write is whole compressed packets: the caller's bytes are
            // accepted only once they are on the socket, so a caller that
            // never flushes loses nothing.
            let n = buf.len().min(MAX_RUN);
            let Zlib {
                codec, out, seq, ..
            } = &mut **z;
            *seq = codec.encode(out, *seq, &buf[..n]);
            z.accepted = n;
        }
        ready!(this.poll_drain(cx))?;
        let accepted = this
            .zlib
            .as_mut()
            .map_or(0, |z| std::mem::take(&mut z.accepted));
        Poll::Ready(Ok(accepted))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::write_packets;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    fn decode_all(codec: &mut Codec, mut wire: &[u8]) -> (Vec<u8>, Vec<CompressedHeader>) {
        let mut out = BytesMut::new();
        let mut headers = Vec::new();
        while !wire.is_empty() {
            let h = CompressedHeader::parse(wire).expect("a header");
            let end = COMPRESSED_HEADER_LEN + h.len;
            codec
                .decode(&h, &wire[COMPRESSED_HEADER_LEN..end], &mut out)
                .expect("decodes");
            headers.push(h);
            wire = &wire[end..];
        }
        (out.to_vec(), headers)
    }

    #[test]
    fn short_runs_go_uncompressed_long_ones_shrink() {
        let mut c = Codec::default();
        let mut wire = BytesMut::new();
        assert_eq!(c.encode(&mut wire, 3, b"SELECT 1"), 4);
        let h = CompressedHeader::parse(&wire).unwrap();
        assert_eq!((h.len, h.seq, h.uncompressed), (8, 3, 0));
        assert_eq!(&wire[7..], b"SELECT 1");

        let long = b"abcabcabc".repeat(100);
        let mut wire = BytesMut::new();
        c.encode(&mut wire, 0, &long);
        let h = CompressedHeader::parse(&wire).unwrap();
        assert_eq!(h.uncompressed, long.len());
        assert!(h.len < long.len() / 4, "{} bytes", h.len);
        assert_eq!(decode_all(&mut c, &wire).0, long);
    }

    #[test]
    fn the_server_documented_example_decodes() {
        // The uncompressed COM_QUERY of the protocol documentation, sent
        // uncompressed in a compressed packet.
        let mut wire = vec![0x32, 0, 0, 0, 0, 0, 0, 0x2e, 0, 0, 0, 0x03];
        wire.extend_from_slice(b"select \"012345678901234567890123456789012345\"");
        wire[0] = (wire.len() - 7) as u8;
        let (plain, hs) = decode_all(&mut Codec::default(), &wire);
        assert_eq!(hs[0].seq, 0);
        assert_eq!(plain.len(), 4 + 0x2e);
        assert_eq!(plain[4], 0x03);
    }

    #[test]
    fn corrupt_payloads_are_errors() {
        let mut c = Codec::default();
        let h = CompressedHeader {
            len: 5,
            seq: 0,
            uncompressed: 100,
        };
        let mut out = BytesMut::new();
        assert!(c.decode(&h, b"hello", &mut out).is_err());
        assert!(out.is_empty());
        // The right bytes with a wrong length before compression.
        let mut wire = BytesMut::new();
        c.encode(&mut wire, 0, &[7u8; 200]);
        let mut h = CompressedHeader::parse(&wire).unwrap();
        h.uncompressed = 150;
        assert!(c.decode(&h, &wire[7..], &mut out).is_err());
    }

    #[test]
    fn runs_over_16_mib_take_several_packets() {
        let mut c = Codec::default();
        let big: Vec<u8> = (0..(MAX_RUN + 1000)).map(|i| (i * 7 % 251) as u8).collect();
        let mut wire = BytesMut::new();
        assert_eq!(c.encode(&mut wire, 250, &big), 252);
        let (plain, hs) = decode_all(&mut c, &wire);
        assert_eq!(hs.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![250, 251]);
        assert!(plain == big);
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..3000), seq in any::<u8>()) {
            let mut c = Codec::default();
            let mut wire = BytesMut::new();
            let next = c.encode(&mut wire, seq, &data);
            let (plain, hs) = decode_all(&mut c, &wire);
            prop_assert_eq!(plain, data.clone());
            prop_assert_eq!(next, seq.wrapping_add(hs.len() as u8));
            for h in hs {
                prop_assert!(h.uncompressed == 0 || h.len < h.uncompressed);
            }
        }
    }

    #[tokio::test]
    async fn a_compressed_stream_reads_packets_and_answers_with_the_next_sequence_id() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut server = PacketStream::new(ClientIo::new(b));
        let mut client = a;
        // Two commands in one compressed packet, the second split across
        // two reads, sent before compression is switched on (pipelined
        // behind the login): nothing is lost.
        let mut plain = BytesMut::new();
        write_packets(&mut plain, 0, b"\x03SELECT 1");
        write_packets(&mut plain, 0, &[b'x'; 400]);
        let mut wire = BytesMut::new();
        Codec::default().encode(&mut wire, 5, &plain);
        client.write_all(&wire[..10]).await.unwrap();
        server.fill().await.unwrap();
        server.start_compression();
        client.write_all(&wire[10..]).await.unwrap();
        let p = server.read_command(1 << 20).await.unwrap();
        assert_eq!(&p.data[..], b"\x03SELECT 1");
        let p = server.read_command(1 << 20).await.unwrap();
        assert_eq!(p.data.len(), 400);
        // A reply of two writes: two compressed packets, ids 6 and 7.
        let mut reply = BytesMut::new();
        write_packets(&mut reply, 1, &[b'r'; 300]);
        server.write_all(&reply).await.unwrap();
        server.write_all(b"\x01\0\0\x02\xfe").await.unwrap();
        drop(server);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut got)
            .await
            .unwrap();
        let (plain, hs) = decode_all(&mut Codec::default(), &got);
        assert_eq!(hs.iter().map(|h| h.seq).collect::<Vec<_>>(), vec![6, 7]);
        assert_eq!(&plain[..reply.len()], &reply[..]);
        assert_eq!(&plain[reply.len()..], b"\x01\0\0\x02\xfe");
    }

    #[tokio::test]
    async fn garbage_after_compression_is_an_error_not_a_panic() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut server = PacketStream::new(ClientIo::new(b));
        server.start_compression();
        let mut client = a;
        client
            .write_all(&[5, 0, 0, 0, 100, 0, 0, 1, 2, 3, 4, 5])
            .await
            .unwrap();
        assert!(server.read_command(1 << 20).await.is_err());
    }
}
