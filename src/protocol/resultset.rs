//! Encodes small text result sets that Causeway answers itself (EXPLAIN
//! ROUTE, SHOW CAUSEWAY ...): column definitions, rows, terminators, laid
//! out for the client's capabilities.

use bytes::{BufMut, BytesMut};

use super::buf::{put_lenenc_bytes, put_lenenc_int};
use super::consts::{cap, ext_cap};
use super::packet::{begin_packet, finish_packet};
use super::response::{Eof, Ok};

const TYPE_VAR_STRING: u8 = 0xFD;
const UTF8MB4_GENERAL_CI: u16 = 45;
const BINARY: u16 = 63;

/// Column flags as the server sets them.
pub mod flag {
    pub const NOT_NULL: u16 = 1;
    pub const BINARY: u16 = 128;
    pub const NUM: u16 = 32768;
}

/// Column types Causeway declares.
pub mod column_type {
    pub const DOUBLE: u8 = 5;
    pub const LONGLONG: u8 = 8;
    pub const LONG: u8 = 3;
    pub const LONG_BLOB: u8 = 0xFB;
    pub const VAR_STRING: u8 = 0xFD;
}

/// How one column of a result set Causeway builds is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    pub name: &'a str,
    pub column_type: u8,
    pub charset: u16,
    pub length: u32,
    pub flags: u16,
    pub decimals: u8,
}

impl<'a> Column<'a> {
    /// A text column (utf8mb4) of up to `length` bytes.
    pub const fn text(name: &'a str, length: u32, flags: u16) -> Self {
        Column {
            name,
            column_type: column_type::VAR_STRING,
            charset: UTF8MB4_GENERAL_CI,
            length,
            flags,
            decimals: 39,
        }
    }

    /// A number column of type `column_type` (binary collation, `NUM`).
    pub const fn number(
        name: &'a str,
        column_type: u8,
        length: u32,
        flags: u16,
        decimals: u8,
    ) -> Self {
        Column {
            name,
            column_type,
            charset: BINARY,
            length,
            flags: flags | flag::NUM | flag::BINARY,
            decimals,
        }
    }
}

/// Appends a whole result set (all packets, sequence ids from `seq`) to
/// `out`; returns the next sequence id. `None` cells are SQL NULL.
pub fn encode_text(
    out: &mut BytesMut,
    seq: u8,
    capabilities: u32,
    ext_capabilities: u32,
    status: u16,
    columns: &[&str],
    rows: &[Vec<Option<String>>],
) -> u8 {
    let columns: Vec<Column<'_>> = columns
        .iter()
        .map(|name| Column {
            name,
            column_type: TYPE_VAR_STRING,
            charset: UTF8MB4_GENERAL_CI,
            length: 4096,
            flags: 0,
            decimals: 0,
        })
        .collect();
    encode_result(
        out,
        seq,
        capabilities,
        ext_capabilities,
        status,
        &columns,
        rows,
    )
}

/// Like [`encode_text`], with each column declared as given.
pub fn encode_result(
    out: &mut BytesMut,
    mut seq: u8,
    capabilities: u32,
    ext_capabilities: u32,
    status: u16,
    columns: &[Column<'_>],
    rows: &[Vec<Option<String>>],
) -> u8 {
    let mut packet = |out: &mut BytesMut, f: &dyn Fn(&mut BytesMut)| {
        let start = begin_packet(out, seq);
        f(out);
        finish_packet(out, start);
        seq = seq.wrapping_add(1);
    };
    let extended = ext_capabilities & ext_cap::EXTENDED_TYPE_INFO != 0;
    packet(out, &|o| put_lenenc_int(o, columns.len() as u64));
    for c in columns {
        packet(out, &|o| {
            put_lenenc_bytes(o, b"def");
            put_lenenc_bytes(o, b"");
            put_lenenc_bytes(o, b"");
            put_lenenc_bytes(o, b"");
            put_lenenc_bytes(o, c.name.as_bytes());
            put_lenenc_bytes(o, c.name.as_bytes());
            if extended {
                // MariaDB's extended type information: none for these.
                put_lenenc_bytes(o, b"");
            }
            o.put_u8(0x0C);
            o.put_u16_le(c.charset);
            o.put_u32_le(c.length);
            o.put_u8(c.column_type);
            o.put_u16_le(c.flags);
            o.put_u8(c.decimals);
            o.put_u16_le(0);
        });
    }
    let deprecate_eof = capabilities & cap::DEPRECATE_EOF != 0;
    if !deprecate_eof {
        packet(out, &|o| {
            Eof {
                warnings: 0,
                status,
            }
            .encode(o)
        });
    }
    for row in rows {
        packet(out, &|o| {
            for cell in row {
                match cell {
                    Some(v) => put_lenenc_bytes(o, v.as_bytes()),
                    None => o.put_u8(0xFB),
                }
            }
        });
    }
    if deprecate_eof {
        packet(out, &|o| {
            Ok {
                header: 0xFE,
                status,
                ..Ok::default()
            }
            .encode(o, capabilities)
        });
    } else {
        packet(out, &|o| {
            Eof {
                warnings: 0,
                status,
            }
            .encode(o)
        });
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::{frame_len, Header, HEADER_LEN};
    use crate::protocol::reply::{Expect, Need, Scanner};

    #[test]
    fn scanner_reads_what_we_encode() {
        for caps in [cap::PROTOCOL_41, cap::PROTOCOL_41 | cap::DEPRECATE_EOF] {
            let mut out = BytesMut::new();
            let rows = vec![
                vec![Some("a".into()), None],
                vec![Some("b".into()), Some("c".into())],
            ];
            let next = encode_text(&mut out, 1, caps, 0, 2, &["k", "v"], &rows);
            let mut sc = Scanner::new(Expect::ResultSets, caps);
            let mut buf = &out[..];
            let mut packets = 0;
            while let Some(n) = frame_len(buf) {
                let h = Header::parse(buf).unwrap();
                let p = &buf[HEADER_LEN..n];
                if let Need::Whole = sc.header(h, p.first().copied()) {
                    sc.packet(h, p).unwrap();
                }
                buf = &buf[n..];
                packets += 1;
            }
            assert!(sc.is_done());
            assert!(buf.is_empty());
            assert_eq!(next, 1 + packets as u8);
        }
    }
}
