//! Micro-benchmarks of the pure codec in `causeway::protocol`: framing,
//! command decoding, OK packets with and without session-tracking data, and
//! the reply scanner walking whole replies the way `session::relay` does.
//!
//! Run: `cargo bench --bench codec` (about 30 s), or add `-- --quick`.
//! Every input is built once, outside the timed loop, from the codec's own
//! encoders and bytes shaped like MariaDB 10.11's replies to sysbench.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use causeway::protocol::buf::{put_lenenc_bytes, put_lenenc_int};
use causeway::protocol::consts::{cap, status, track};
use causeway::protocol::packet::{frame_len, write_packets, Header, HEADER_LEN};
use causeway::protocol::reply::{Expect, Need, Scanner};
use causeway::protocol::response::Ok as OkPacket;
use causeway::protocol::Command;

/// Capabilities of a backend connection serving a modern client
/// (libmariadb asks for `CLIENT_DEPRECATE_EOF`).
const BACKEND: u32 = cap::BACKEND_ALWAYS | cap::MIRRORED_FROM_CLIENT;
/// The same without `CLIENT_DEPRECATE_EOF`: classic EOF packets.
const BACKEND_CLASSIC: u32 = BACKEND & !cap::DEPRECATE_EOF;

/// sysbench's point select, as sent with `--db-ps-mode=disable`.
const POINT_SELECT: &[u8] = b"SELECT c FROM sbtest1 WHERE id=5033";

/// A value of sysbench's `c CHAR(120)` column: ten groups of 11 digits.
const C_VALUE: &[u8] = b"83868641912-28773972837-60736120486-75162659906-27563526494-\
20381887404-41576422241-93426793964-56405065102-33518432330";

// ---------------------------------------------------------------- builders

/// Frames a list of payloads as a backend would send them, from seq 1.
fn frame_all(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut seq = 1u8;
    for p in payloads {
        seq = write_packets(&mut out, seq, p);
    }
    out.to_vec()
}

/// Column definition of `sbtest1.c` (CHAR(120) NOT NULL, utf8mb4).
fn column_def_c() -> Vec<u8> {
    let mut p = BytesMut::new();
    for s in [&b"def"[..], b"sbtest", b"sbtest1", b"sbtest1", b"c", b"c"] {
        put_lenenc_bytes(&mut p, s);
    }
    put_lenenc_int(&mut p, 0x0c); // length of the fixed fields
    p.put_u16_le(45); // utf8mb4_general_ci
    p.put_u32_le(480); // 120 chars * 4 bytes
    p.put_u8(0xFE); // MYSQL_TYPE_STRING
    p.put_u16_le(1); // NOT_NULL_FLAG
    p.put_u8(0); // decimals
    p.put_u16_le(0); // filler
    p.to_vec()
}

/// A binary-protocol row (COM_STMT_EXECUTE reply) with one string column.
fn binary_row() -> Vec<u8> {
    let mut p = BytesMut::new();
    p.put_u8(0x00); // row header
    p.put_u8(0x00); // NULL bitmap: (1 column + 7 + 2) / 8 = 1 byte
    put_lenenc_bytes(&mut p, C_VALUE);
    p.to_vec()
}

fn classic_eof(st: u16) -> Vec<u8> {
    let mut p = vec![0xFE, 0, 0];
    p.extend_from_slice(&st.to_le_bytes());
    p
}

/// The OK packet that ends a result set under `CLIENT_DEPRECATE_EOF`.
fn ok_terminator(st: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    OkPacket {
        header: 0xFE,
        status: st,
        ..OkPacket::default()
    }
    .encode(&mut out, BACKEND);
    out.to_vec()
}

/// A framed result set of one `c` column and `rows` rows.
fn result_set(rows: usize, capabilities: u32) -> Vec<u8> {
    let st = status::AUTOCOMMIT;
    let mut pk = vec![vec![1u8], column_def_c()];
    let deprecate_eof = capabilities & cap::DEPRECATE_EOF != 0;
    if !deprecate_eof {
        pk.push(classic_eof(st));
    }
    pk.extend(std::iter::repeat_n(binary_row(), rows));
    pk.push(if deprecate_eof {
        ok_terminator(st)
    } else {
        classic_eof(st)
    });
    frame_all(&pk)
}

/// A plain OK (autocommit, nothing tracked), as after a sysbench UPDATE.
fn ok_plain() -> Vec<u8> {
    let mut out = BytesMut::new();
    OkPacket {
        affected_rows: 1,
        status: status::AUTOCOMMIT,
        ..OkPacket::default()
    }
    .encode(&mut out, BACKEND);
    out.to_vec()
}

/// An OK after `COMMIT` carrying `last_gtid`, the transaction state and a
/// state-changed marker (what Causeway's backends are set up to track).
fn ok_tracked() -> Vec<u8> {
    let mut var = BytesMut::new();
    put_lenenc_bytes(&mut var, b"last_gtid");
    put_lenenc_bytes(&mut var, b"0-1-104857");
    let mut state = BytesMut::new();
    state.put_u8(track::SYSTEM_VARIABLES);
    put_lenenc_bytes(&mut state, &var);
    let mut trx = BytesMut::new();
    put_lenenc_bytes(&mut trx, b"________");
    state.put_u8(track::TRANSACTION_STATE);
    put_lenenc_bytes(&mut state, &trx);
    state.put_u8(track::STATE_CHANGE);
    put_lenenc_bytes(&mut state, b"\x011");
    let mut out = BytesMut::new();
    OkPacket {
        status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
        session_state: &state,
        ..OkPacket::default()
    }
    .encode(&mut out, BACKEND);
    out.to_vec()
}

// ---------------------------------------------------------------- drivers

/// Walks one framed reply as `session::relay` does when the whole reply is
/// buffered: parse each header, stream rows, give steering packets whole.
/// Returns the number of bytes the reply spanned.
fn scan_reply(buf: &[u8], capabilities: u32) -> usize {
    let mut sc = Scanner::new(Expect::ResultSets, capabilities);
    let mut pos = 0;
    while !sc.is_done() {
        let Some(h) = Header::parse(&buf[pos..]) else {
            panic!("reply ended early at byte {pos}");
        };
        let start = pos + HEADER_LEN;
        let first = buf.get(start).copied().filter(|_| h.len > 0);
        if sc.header(h, first) == Need::Whole {
            if let Err(e) = sc.packet(h, &buf[start..start + h.len]) {
                panic!("scanner rejected the reply: {e:?}");
            }
        }
        pos = start + h.len;
    }
    pos
}

/// Counts the packets in a framed buffer with `frame_len`.
fn count_frames(mut buf: &[u8]) -> usize {
    let mut n = 0;
    while let Some(len) = frame_len(buf) {
        buf = &buf[len..];
        n += 1;
    }
    n
}

// ---------------------------------------------------------------- benches

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");
    let mut query = vec![0x03];
    query.extend_from_slice(POINT_SELECT);
    let big = vec![0x5Au8; 20 << 20];
    for (name, payload) in [("1_packet", &query), ("20_MiB", &big)] {
        g.throughput(Throughput::Bytes(payload.len() as u64));
        // The output buffer is reused, as a connection's write buffer is.
        let mut out = BytesMut::with_capacity(payload.len() + 64);
        g.bench_function(format!("write_packets/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(write_packets(&mut out, 0, black_box(payload)))
            })
        });
        // frame_len reads only headers: measured per packet, not per byte.
        let framed = frame_all(std::slice::from_ref(payload));
        g.throughput(Throughput::Elements(count_frames(&framed) as u64));
        g.bench_function(format!("frame_len/{name}"), |b| {
            b.iter(|| black_box(count_frames(black_box(&framed))))
        });
    }
    g.finish();
}

fn commands(c: &mut Criterion) {
    let mut g = c.benchmark_group("command");
    let mut query = vec![0x03];
    query.extend_from_slice(POINT_SELECT);
    g.bench_function("decode/com_query", |b| {
        b.iter(|| black_box(Command::decode(black_box(&query), cap::PROXY_OFFERS)))
    });
    // COM_STMT_EXECUTE of sysbench's point select: one BIGINT parameter.
    let execute =
        b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\x08\x00\xa9\x13\x00\x00\x00\x00\x00\x00";
    g.bench_function("decode/com_stmt_execute", |b| {
        b.iter(|| black_box(Command::decode(black_box(execute), cap::PROXY_OFFERS)))
    });
    g.finish();
}

fn ok_packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("ok");
    for (name, payload, want) in [("plain", ok_plain(), 0), ("session_track", ok_tracked(), 3)] {
        let changes = OkPacket::decode(&payload, BACKEND).map(|ok| ok.changes().count());
        assert_eq!(changes, Some(want), "{name}: test packet must decode");
        g.bench_function(format!("decode+changes/{name}"), |b| {
            b.iter(|| {
                let ok = OkPacket::decode(black_box(&payload), BACKEND);
                let mut n = 0usize;
                if let Some(ok) = ok {
                    for ch in ok.changes() {
                        n += usize::from(black_box(ch).is_ok());
                    }
                }
                n
            })
        });
    }
    g.finish();
}

fn scanner(c: &mut Criterion) {
    let mut g = c.benchmark_group("scanner");
    g.throughput(Throughput::Elements(1)); // one reply per iteration
    let cases = [
        (
            "point_select/deprecate_eof",
            result_set(1, BACKEND),
            BACKEND,
        ),
        (
            "point_select/classic_eof",
            result_set(1, BACKEND_CLASSIC),
            BACKEND_CLASSIC,
        ),
        ("100_rows/deprecate_eof", result_set(100, BACKEND), BACKEND),
    ];
    for (name, reply, caps) in &cases {
        assert_eq!(
            scan_reply(reply, *caps),
            reply.len(),
            "{name}: scanner must end at the last byte"
        );
        g.bench_function(*name, |b| {
            b.iter(|| black_box(scan_reply(black_box(reply), *caps)))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = framing, commands, ok_packets, scanner
}
criterion_main!(benches);
