//! Bounds-checked cursors over byte slices, so codecs never index out of range.
//!
//! [`Reader`] returns [`Truncated`] instead of panicking when the input runs out;
//! [`Writer`] returns [`BufferTooSmall`] when the output runs out. Codecs that must report
//! the *total* size needed compute it first and call [`Writer::reserve`] once, so that a
//! failed encode never leaves a half-written buffer that looks valid.

use crate::error::{BufferTooSmall, Truncated};
use crate::varint::VarInt;

/// A read cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    pub const fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, Truncated> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Truncated> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Truncated> {
        self.array().map(u32::from_be_bytes)
    }

    /// Reads exactly `N` bytes into an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let bytes = self.bytes(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads exactly `len` bytes, borrowing them from the input.
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8], Truncated> {
        if len > self.remaining() {
            return Err(Truncated);
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    /// Reads a QUIC variable-length integer (RFC 9000 §16).
    pub fn varint(&mut self) -> Result<VarInt, Truncated> {
        let (value, len) = VarInt::decode(self.rest())?;
        self.pos += len;
        Ok(value)
    }

    /// Consumes and returns every unread byte.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = self.rest();
        self.pos = self.buf.len();
        out
    }
}

/// A write cursor over a caller-provided buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// Bytes of room left.
    pub const fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless `len` more bytes fit; reports the total the encoding needs.
    pub const fn reserve(&self, len: usize) -> Result<(), BufferTooSmall> {
        if len > self.remaining() {
            return Err(BufferTooSmall {
                needed: self.pos + len,
                available: self.buf.len(),
            });
        }
        Ok(())
    }

    /// Writes one byte.
    pub fn u8(&mut self, value: u8) -> Result<(), BufferTooSmall> {
        self.bytes(&[value])
    }

    /// Writes a big-endian `u16`.
    pub fn u16(&mut self, value: u16) -> Result<(), BufferTooSmall> {
        self.bytes(&value.to_be_bytes())
    }

    /// Writes a big-endian `u32`.
    pub fn u32(&mut self, value: u32) -> Result<(), BufferTooSmall> {
        self.bytes(&value.to_be_bytes())
    }

    /// Writes `bytes` verbatim.
    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        self.reserve(bytes.len())?;
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
        Ok(())
    }

    /// Writes a QUIC variable-length integer in its shortest encoding.
    pub fn varint(&mut self, value: VarInt) -> Result<(), BufferTooSmall> {
        let len = value.encode(&mut self.buf[self.pos..])?;
        self.pos += len;
        Ok(())
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    /// Ends writing and returns the number of bytes written.
    pub const fn finish(self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_instead_of_panicking() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0102));
        assert_eq!(r.u16(), Err(Truncated));
        assert_eq!(r.u8(), Ok(3));
        assert!(r.is_empty());
        assert_eq!(r.bytes(1), Err(Truncated));
    }

    #[test]
    fn writer_reports_total_size_needed() {
        let mut buf = [0; 3];
        let mut w = Writer::new(&mut buf);
        w.u16(0xabcd).unwrap();
        assert_eq!(
            w.u16(1),
            Err(BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
        assert_eq!(w.finish(), 2);
        assert_eq!(buf, [0xab, 0xcd, 0]);
    }
}
