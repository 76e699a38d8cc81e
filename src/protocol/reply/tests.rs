use super::*;
use crate::protocol::consts::MAX_PACKET_PAYLOAD;

const CLASSIC: u32 = cap::PROTOCOL_41 | cap::SESSION_TRACK;
const NO_EOF: u32 = CLASSIC | cap::DEPRECATE_EOF;

fn ok(st: u16) -> Vec<u8> {
    let mut p = vec![0x00, 0, 0];
    p.extend_from_slice(&st.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

fn ok_fe(st: u16) -> Vec<u8> {
    let mut p = ok(st);
    p[0] = 0xFE;
    p
}

fn eof(st: u16) -> Vec<u8> {
    let mut p = vec![0xFE, 0, 0];
    p.extend_from_slice(&st.to_le_bytes());
    p
}

fn err() -> Vec<u8> {
    b"\xff\x28\x04#42S02Table 'x' doesn't exist".to_vec()
}

fn coldef() -> Vec<u8> {
    b"\x03def\x00\x00\x00\x01a\x00\x0c\x08\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00".to_vec()
}

/// Feeds payloads the way the session does; returns the number of packets
/// consumed when the reply ended (or None if it did not end).
fn run(s: &mut Scanner, packets: &[Vec<u8>]) -> Result<Option<usize>, Malformed> {
    for (i, p) in packets.iter().enumerate() {
        let h = Header {
            len: p.len(),
            seq: i as u8,
        };
        match s.header(h, p.first().copied()) {
            Need::Stream => {}
            Need::Whole => {
                s.packet(h, p)?;
            }
        }
        if s.is_done() {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

#[test]
fn plain_ok_ends_reply() {
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    assert_eq!(run(&mut s, &[ok(status::AUTOCOMMIT)]), Ok(Some(1)));
    assert_eq!(s.last_status(), Some(status::AUTOCOMMIT));
}

#[test]
fn err_ends_reply() {
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    assert_eq!(run(&mut s, &[err()]), Ok(Some(1)));
}

#[test]
fn classic_result_set() {
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    let pk = vec![
        vec![2],
        coldef(),
        coldef(),
        eof(0),
        b"\x011\x012".to_vec(),
        b"\xfb\x013".to_vec(),
        eof(status::AUTOCOMMIT),
    ];
    assert_eq!(run(&mut s, &pk), Ok(Some(7)));
}

#[test]
fn deprecate_eof_result_set() {
    let mut s = Scanner::new(Expect::ResultSets, NO_EOF);
    let pk = vec![
        vec![1],
        coldef(),
        b"\x011".to_vec(),
        ok_fe(status::AUTOCOMMIT),
    ];
    assert_eq!(run(&mut s, &pk), Ok(Some(4)));
    assert_eq!(s.last_status(), Some(status::AUTOCOMMIT));
}

#[test]
fn multi_results_continue_until_last() {
    for caps in [CLASSIC, NO_EOF] {
        let mut s = Scanner::new(Expect::ResultSets, caps);
        let term = |st| if caps == NO_EOF { ok_fe(st) } else { eof(st) };
        let mut pk = vec![vec![1], coldef()];
        if caps == CLASSIC {
            pk.push(eof(0));
        }
        pk.push(b"\x011".to_vec());
        pk.push(term(status::MORE_RESULTS_EXISTS));
        pk.push(ok(status::MORE_RESULTS_EXISTS)); // an UPDATE in between
        pk.push(ok(0));
        let n = pk.len();
        assert_eq!(run(&mut s, &pk), Ok(Some(n)), "caps {caps:x}");
    }
}

#[test]
fn error_in_the_middle_of_rows_ends_reply() {
    let mut s = Scanner::new(Expect::ResultSets, NO_EOF);
    let pk = vec![vec![1], coldef(), b"\x011".to_vec(), err(), ok(0)];
    assert_eq!(run(&mut s, &pk), Ok(Some(4)));
}

#[test]
fn rows_starting_with_ok_or_eof_like_bytes_are_rows() {
    // A binary row starts with 0x00; a text row may start with 0xFB (NULL)
    // or 0xFC (2-byte length).
    let mut s = Scanner::new(Expect::ResultSets, NO_EOF);
    let mut big = vec![0xFCu8, 0x00, 0x01];
    big.extend_from_slice(&[b'x'; 256]);
    let pk = vec![
        vec![1],
        coldef(),
        vec![0x00, 0x00, 1],
        big,
        vec![0xFB],
        ok_fe(0),
    ];
    assert_eq!(run(&mut s, &pk), Ok(Some(6)));
}

#[test]
fn huge_row_continuations_are_streamed_even_if_they_look_like_eof() {
    let mut s = Scanner::new(Expect::ResultSets, NO_EOF);
    assert!(run(&mut s, &[vec![1], coldef()]).unwrap().is_none());
    let full = Header {
        len: MAX_PACKET_PAYLOAD,
        seq: 2,
    };
    assert_eq!(s.header(full, Some(0xFE)), Need::Stream);
    // The continuation starts with 0xFE and is short: still part of the row.
    let cont = Header { len: 5, seq: 3 };
    assert_eq!(s.header(cont, Some(0xFE)), Need::Stream);
    assert!(!s.is_done());
    let end = ok_fe(0);
    let h = Header {
        len: end.len(),
        seq: 4,
    };
    assert_eq!(s.header(h, Some(0xFE)), Need::Whole);
    assert!(s.packet(h, &end).is_ok());
    assert!(s.is_done());
}

#[test]
fn local_infile_then_ok() {
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    let req = b"\xfb/tmp/data.csv".to_vec();
    let h = Header {
        len: req.len(),
        seq: 1,
    };
    assert_eq!(s.header(h, Some(0xFB)), Need::Whole);
    assert_eq!(s.packet(h, &req), Ok(Seen::LocalInfile));
    s.local_infile_sent();
    assert_eq!(run(&mut s, &[ok(0)]), Ok(Some(1)));
}

#[test]
fn cursor_open_ends_after_column_eof() {
    let mut s = Scanner::new(Expect::ExecuteCursor, CLASSIC);
    let pk = vec![
        vec![1],
        coldef(),
        eof(status::CURSOR_EXISTS | status::AUTOCOMMIT),
    ];
    assert_eq!(run(&mut s, &pk), Ok(Some(3)));
    let mut f = Scanner::new(Expect::Fetch, CLASSIC);
    let pk = vec![
        vec![0, 0, 1],
        vec![0, 0, 2],
        eof(status::CURSOR_EXISTS | status::LAST_ROW_SENT),
    ];
    assert_eq!(run(&mut f, &pk), Ok(Some(3)));
}

#[test]
fn prepare_replies() {
    for caps in [CLASSIC, NO_EOF] {
        let prep = |cols: u16, params: u16| {
            let mut p = vec![0x00, 7, 0, 0, 0];
            p.extend_from_slice(&cols.to_le_bytes());
            p.extend_from_slice(&params.to_le_bytes());
            p.extend_from_slice(&[0, 0, 0]);
            p
        };
        let sep = |v: &mut Vec<Vec<u8>>| {
            if caps == CLASSIC {
                v.push(eof(0));
            }
        };
        let mut pk = vec![prep(2, 1), coldef()];
        sep(&mut pk);
        pk.push(coldef());
        pk.push(coldef());
        sep(&mut pk);
        let n = pk.len();
        let mut s = Scanner::new(Expect::Prepare, caps);
        assert_eq!(run(&mut s, &pk), Ok(Some(n)));
        let mut s = Scanner::new(Expect::Prepare, caps);
        assert_eq!(run(&mut s, &[prep(0, 0)]), Ok(Some(1)));
        let mut s = Scanner::new(Expect::Prepare, caps);
        assert_eq!(run(&mut s, &[err()]), Ok(Some(1)));
    }
    let mut s = Scanner::new(Expect::Prepare, CLASSIC);
    let h = Header { len: 3, seq: 1 };
    assert_eq!(s.packet(h, &[0, 1, 2]), Err(Malformed));
}

#[test]
fn field_list_and_single_and_text() {
    let mut s = Scanner::new(Expect::FieldList, CLASSIC);
    assert_eq!(run(&mut s, &[coldef(), coldef(), eof(0)]), Ok(Some(3)));
    let mut s = Scanner::new(Expect::Single, CLASSIC);
    assert_eq!(run(&mut s, &[ok(0)]), Ok(Some(1)));
    let mut s = Scanner::new(Expect::Single, CLASSIC);
    assert_eq!(run(&mut s, &[eof(0)]), Ok(Some(1)));
    let mut s = Scanner::new(Expect::Text, CLASSIC);
    assert_eq!(run(&mut s, &[b"Uptime: 5".to_vec()]), Ok(Some(1)));
}

#[test]
fn garbage_is_malformed_not_panic() {
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    let h = Header { len: 0, seq: 1 };
    assert_eq!(s.packet(h, &[]), Err(Malformed));
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    assert_eq!(
        s.packet(Header { len: 2, seq: 1 }, &[0xFC, 1]),
        Err(Malformed)
    );
    let mut s = Scanner::new(Expect::Single, CLASSIC);
    assert_eq!(
        s.packet(Header { len: 2, seq: 1 }, &[0x42, 1]),
        Err(Malformed)
    );
    let mut s = Scanner::new(Expect::ResultSets, CLASSIC);
    assert_eq!(s.packet(Header { len: 1, seq: 1 }, &[0]), Err(Malformed));
}

/// A stored program that FETCHed a cursor leaves SERVER_STATUS_CURSOR_EXISTS
/// in the EOF after the columns of a later result set: its rows still follow.
#[test]
fn cursor_flag_from_a_stored_program_does_not_end_a_query_reply() {
    for expect in [Expect::ResultSets, Expect::ExecuteCursor] {
        let mut s = Scanner::new(expect, CLASSIC);
        let more = status::CURSOR_EXISTS | status::MORE_RESULTS_EXISTS;
        let mut pk = vec![vec![1], coldef()];
        if expect == Expect::ResultSets {
            pk.push(eof(status::CURSOR_EXISTS | status::AUTOCOMMIT));
            pk.push(vec![1, b'1']);
            pk.push(eof(more));
            pk.push(ok(status::CURSOR_EXISTS));
            assert_eq!(run(&mut s, &pk), Ok(Some(6)), "{expect:?}");
        } else {
            pk.push(eof(status::CURSOR_EXISTS));
            assert_eq!(run(&mut s, &pk), Ok(Some(3)), "{expect:?}");
        }
    }
}

#[test]
fn inspected_rows_come_whole_and_the_reply_still_ends() {
    let row = b"\x0bCompression\x03OFF".to_vec();
    let packets = [
        vec![1],
        coldef(),
        row.clone(),
        row.clone(),
        ok_fe(status::AUTOCOMMIT),
    ];
    let mut s = Scanner::new(Expect::ResultSets, NO_EOF);
    s.inspect_rows();
    let mut seen = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let h = Header {
            len: p.len(),
            seq: i as u8,
        };
        assert_eq!(s.header(h, p.first().copied()), Need::Whole, "packet {i}");
        seen.push(s.packet(h, p).unwrap());
    }
    assert_eq!(&seen[2..4], &[Seen::Row, Seen::Row]);
    assert!(s.is_done());
    // Without asking, the same rows stream.
    let mut s = Scanner::new(Expect::ResultSets, NO_EOF);
    assert_eq!(run(&mut s, &packets), Ok(Some(5)));
}
