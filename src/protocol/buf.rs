//! Bounds-checked reading and writing of MySQL wire primitives.
//!
//! Every read returns `None` instead of panicking on short input: the bytes
//! come from clients and backends and may be malformed.

use bytes::{BufMut, BytesMut};

/// A cursor over a payload. All reads are bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self) -> Option<u32> {
        self.bytes(3)
            .map(|b| u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }

    /// Length-encoded integer. `0xFB` (NULL) and `0xFF` (error marker) are
    /// not integers and yield `None`.
    pub fn lenenc_int(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xFA => Some(u64::from(n)),
            0xFC => self.u16().map(u64::from),
            0xFD => self.u24().map(u64::from),
            0xFE => self.u64(),
            _ => None,
        }
    }

    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc_int()?;
        self.bytes(usize::try_from(n).ok()?)
    }

    /// A NUL-terminated string; the NUL is consumed, not returned.
    pub fn nul_bytes(&mut self) -> Option<&'a [u8]> {
        let end = self.buf.iter().position(|&b| b == 0)?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Some(s)
    }

    /// A NUL-terminated string, or the rest of the buffer when no NUL is left
    /// (some clients omit the final terminator).
    pub fn nul_or_eof_bytes(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let s = &self.buf[..end];
                self.buf = &self.buf[end + 1..];
                s
            }
            None => self.rest(),
        }
    }
}

pub fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_le_bytes()[..3]);
}

pub fn put_lenenc_int(out: &mut BytesMut, v: u64) {
    if v < 0xFB {
        out.put_u8(v as u8);
    } else if v <= 0xFFFF {
        out.put_u8(0xFC);
        out.put_u16_le(v as u16);
    } else if v <= 0xFF_FFFF {
        out.put_u8(0xFD);
        put_u24(out, v as u32);
    } else {
        out.put_u8(0xFE);
        out.put_u64_le(v);
    }
}

pub fn put_lenenc_bytes(out: &mut BytesMut, v: &[u8]) {
    put_lenenc_int(out, v.len() as u64);
    out.put_slice(v);
}

pub fn put_nul_str(out: &mut BytesMut, v: &[u8]) {
    out.put_slice(v);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trip_at_every_width() {
        for v in [
            0u64,
            250,
            251,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_lenenc_int(&mut out, v);
            assert_eq!(Reader::new(&out).lenenc_int(), Some(v), "value {v}");
        }
    }

    #[test]
    fn short_input_is_none_not_panic() {
        assert_eq!(Reader::new(&[0xFC, 1]).lenenc_int(), None);
        assert_eq!(Reader::new(&[0xFE, 1, 2, 3]).lenenc_int(), None);
        assert_eq!(Reader::new(&[3, b'a']).lenenc_bytes(), None);
        assert_eq!(Reader::new(b"abc").nul_bytes(), None);
        assert_eq!(Reader::new(&[0xFB]).lenenc_int(), None);
    }
}
