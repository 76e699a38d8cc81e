//! Packet framing: a 4-byte header (3-byte payload length, 1-byte sequence
//! id) followed by the payload. Payloads of 16 MiB - 1 or more are split
//! into several packets; a packet of exactly `MAX_PACKET_PAYLOAD` bytes means
//! "more follows".
//!
//! Framing is two steps, as the stream layer needs: [`frame_len`] says whether
//! a whole packet is buffered, then the caller splits it off.

use bytes::{BufMut, BytesMut};

use super::buf::put_u24;
use super::consts::MAX_PACKET_PAYLOAD;

pub const HEADER_LEN: usize = 4;

/// A parsed packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub seq: u8,
}

impl Header {
    /// `None` when fewer than 4 bytes are buffered.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
        Some(Header { len, seq: buf[3] })
    }

    /// Whether another packet continues this payload.
    pub fn continues(&self) -> bool {
        self.len == MAX_PACKET_PAYLOAD
    }
}

/// If a whole packet (header + payload) is at the start of `buf`, its total
/// length.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let h = Header::parse(buf)?;
    let total = HEADER_LEN + h.len;
    (buf.len() >= total).then_some(total)
}

/// Appends `payload` as one or more packets starting at sequence id `seq`;
/// returns the next sequence id. An empty payload, or one that is an exact
/// multiple of the maximum, ends with an empty packet, as the protocol
/// requires.
pub fn write_packets(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    out.reserve(payload.len() + HEADER_LEN * (1 + payload.len() / MAX_PACKET_PAYLOAD));
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PACKET_PAYLOAD);
        put_u24(out, n as u32);
        out.put_u8(seq);
        out.put_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PACKET_PAYLOAD {
            return seq;
        }
    }
}

/// Starts a packet whose payload the caller appends; finish with
/// [`finish_packet`]. Used for small packets Causeway builds itself.
pub fn begin_packet(out: &mut BytesMut, seq: u8) -> usize {
    let start = out.len();
    out.put_slice(&[0, 0, 0, seq]);
    start
}

/// Fills in the length of a packet begun at `start`. Payloads Causeway
/// builds itself are far below 16 MiB.
pub fn finish_packet(out: &mut BytesMut, start: usize) {
    let len = out.len() - start - HEADER_LEN;
    debug_assert!(len < MAX_PACKET_PAYLOAD);
    let b = (len as u32).to_le_bytes();
    out[start..start + 3].copy_from_slice(&b[..3]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(buf: &[u8]) -> Vec<(usize, u8)> {
        let mut v = Vec::new();
        let mut rest = buf;
        while let Some(n) = frame_len(rest) {
            let h = Header::parse(rest).unwrap();
            v.push((h.len, h.seq));
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        v
    }

    #[test]
    fn small_payload_is_one_packet() {
        let mut out = BytesMut::new();
        assert_eq!(write_packets(&mut out, 7, b"hello"), 8);
        assert_eq!(split(&out), vec![(5, 7)]);
    }

    #[test]
    fn payload_of_exact_max_gets_trailing_empty_packet() {
        let payload = vec![1u8; MAX_PACKET_PAYLOAD];
        let mut out = BytesMut::new();
        assert_eq!(write_packets(&mut out, 0, &payload), 2);
        assert_eq!(split(&out), vec![(MAX_PACKET_PAYLOAD, 0), (0, 1)]);
    }

    #[test]
    fn twenty_mib_payload_splits_in_two() {
        let payload = vec![2u8; 20 << 20];
        let mut out = BytesMut::new();
        assert_eq!(write_packets(&mut out, 255, &payload), 1);
        assert_eq!(
            split(&out),
            vec![
                (MAX_PACKET_PAYLOAD, 255),
                ((20 << 20) - MAX_PACKET_PAYLOAD, 0)
            ]
        );
    }

    #[test]
    fn partial_frames_are_not_frames() {
        assert_eq!(frame_len(&[5, 0, 0]), None);
        assert_eq!(frame_len(&[5, 0, 0, 0, 1, 2]), None);
        assert_eq!(frame_len(&[2, 0, 0, 0, 1, 2, 9]), Some(6));
    }

    #[test]
    fn begin_finish_fills_length() {
        let mut out = BytesMut::new();
        let s = begin_packet(&mut out, 3);
        out.put_slice(b"abc");
        finish_packet(&mut out, s);
        assert_eq!(&out[..], &[3, 0, 0, 3, b'a', b'b', b'c']);
    }
}
