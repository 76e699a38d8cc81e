//! Property tests over every decoder that reads bytes a peer chose: any
//! input decodes or is refused, never panics, and what the encoders write
//! decodes back. Case counts follow `PROPTEST_CASES` (the suite runs the
//! default 256 per property; `scripts/fuzz` runs many more).

use bytes::BytesMut;
use proptest::prelude::*;

use super::command::Command;
use super::compress::{Codec, CompressedHeader};
use super::consts::cap;
use super::handshake::{AuthSwitch, ClientHello, Handshake, HandshakeResponse};
use super::packet::{frame_len, write_packets, Header};
use super::reply::{Expect, Need, Scanner};
use super::response::{Eof, Err, Ok};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Capability sets a peer may negotiate.
fn caps() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(cap::PROXY_OFFERS),
        Just(cap::PROXY_OFFERS & !cap::DEPRECATE_EOF),
        Just(cap::PROXY_OFFERS & !cap::SESSION_TRACK),
        any::<u32>(),
    ]
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::ResultSets),
        Just(Expect::ExecuteCursor),
        Just(Expect::Prepare),
        Just(Expect::Fetch),
        Just(Expect::FieldList),
        Just(Expect::Single),
        Just(Expect::Text),
    ]
}

proptest! {
    #[test]
    fn connection_phase_decoders_take_any_bytes(p in bytes(300)) {
        let _ = Handshake::decode(&p);
        let _ = AuthSwitch::decode(&p);
        if let Some(ClientHello::Response(r)) = HandshakeResponse::decode(&p) {
            // What decoded encodes and decodes again to the same identity.
            let mut out = BytesMut::new();
            r.encode(&mut out);
            match HandshakeResponse::decode(&out) {
                Some(ClientHello::Response(back)) => {
                    prop_assert_eq!(back.user, r.user);
                    prop_assert_eq!(back.auth_response, r.auth_response);
                }
                other => prop_assert!(false, "re-decoded as {:?}", other),
            }
        }
    }

    #[test]
    fn commands_and_terminal_packets_take_any_bytes(p in bytes(200), c in caps()) {
        let _ = Command::decode(&p, c);
        if let Some(ok) = Ok::decode(&p, c) {
            let _ = ok.changes().count();
            let mut out = BytesMut::new();
            ok.encode(&mut out, c);
        }
        let _ = Err::decode(&p);
        let _ = Eof::decode(&p);
        let _ = super::response::terminator_status(&p, c);
    }

    #[test]
    fn the_reply_scanner_takes_any_packet_sequence(
        packets in proptest::collection::vec(bytes(40), 0..30),
        c in caps(),
        e in expect(),
        inspect in any::<bool>(),
    ) {
        let mut sc = Scanner::new(e, c);
        if inspect {
            sc.inspect_rows();
        }
        for (i, p) in packets.iter().enumerate() {
            if sc.is_done() {
                break;
            }
            let h = Header { len: p.len(), seq: i as u8 };
            if let Need::Whole = sc.header(h, p.first().copied()) {
                if sc.packet(h, p).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn framing_takes_any_bytes(p in bytes(64)) {
        let _ = Header::parse(&p);
        if let Some(n) = frame_len(&p) {
            prop_assert!(n <= p.len());
        }
        let _ = CompressedHeader::parse(&p);
    }

    #[test]
    fn compressed_packets_decode_or_fail_cleanly(payload in bytes(200), claimed in 0usize..5000) {
        let h = CompressedHeader { len: payload.len(), seq: 0, uncompressed: claimed };
        let mut out = BytesMut::new();
        match Codec::default().decode(&h, &payload, &mut out) {
            Result::Ok(()) => prop_assert_eq!(out.len(), if claimed == 0 { payload.len() } else { claimed }),
            Result::Err(_) => prop_assert!(out.is_empty()),
        }
    }

    #[test]
    fn payloads_frame_and_join_back(p in bytes(3000), seq in any::<u8>()) {
        let mut out = BytesMut::new();
        write_packets(&mut out, seq, &p);
        let mut joined = Vec::new();
        let mut rest = &out[..];
        while let Some(n) = frame_len(rest) {
            joined.extend_from_slice(&rest[4..n]);
            rest = &rest[n..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(joined, p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A stream of arbitrary bytes read as client commands: each read
    /// gives a payload or an error, and the reads end.
    #[test]
    fn the_packet_stream_reads_any_bytes(raw in bytes(2000), limit in 1usize..5000) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            let (mut a, b) = tokio::io::duplex(4096);
            let writer = tokio::spawn(async move {
                let _ = a.write_all(&raw).await;
            });
            let mut s = super::stream::PacketStream::new(b);
            for _ in 0..3000 {
                if s.read_command(limit).await.is_err() {
                    break;
                }
            }
            writer.await.unwrap();
        });
    }
}
