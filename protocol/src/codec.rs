//! The one canonical binary encoding for everything that is hashed or signed.
//!
//! Integers are fixed-width big-endian, byte strings and sequences carry a u32 length,
//! enums a one-byte tag, options a 0/1 tag. Decoding rejects unknown tags, invalid UTF-8 and
//! trailing bytes, so every value has exactly one encoding and a signature over the bytes is a
//! signature over the value.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unexpected end of input while reading {0}")]
    Truncated(&'static str),
    #[error("invalid tag {tag} for {what}")]
    BadTag { what: &'static str, tag: u8 },
    #[error("invalid UTF-8 in {0}")]
    BadUtf8(&'static str),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error(
        "{what} format version {version} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        what: &'static str,
        version: u8,
        supported: u8,
    },
    #[error("length {len} of {what} exceeds the limit {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

/// Upper bound of any single length prefix; protects decoders from huge allocations.
pub const MAX_LEN: usize = 64 * 1024 * 1024;

/// The most a decoder reserves ahead for a sequence, in bytes: a count is bounded by the
/// input's length, but each element may be far larger in memory than its one byte, so a short
/// input claiming many elements could otherwise make the decoder reserve many times its size.
/// Beyond this the vector grows as elements actually decode.
const MAX_PREALLOC: usize = 64 * 1024;

/// How many `T` to reserve for a sequence that claims `len` elements.
pub fn prealloc<T>(len: usize) -> usize {
    len.min(MAX_PREALLOC / std::mem::size_of::<T>().max(1))
}

pub trait Encode {
    fn encode(&self, w: &mut Writer);

    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.encode(&mut w);
        w.into_inner()
    }
}

pub trait Decode: Sized {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn fixed(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    pub fn seq<T: Encode>(&mut self, items: &[T]) {
        self.u32(items.len() as u32);
        for i in items {
            i.encode(self);
        }
    }
    pub fn opt<T: Encode>(&mut self, v: &Option<T>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                x.encode(self);
            }
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    fn len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let len = self.u32(what)? as usize;
        if len > MAX_LEN {
            return Err(DecodeError::TooLong {
                what,
                len,
                limit: MAX_LEN,
            });
        }
        Ok(len)
    }
    pub fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.len(what)?;
        Ok(self.take(len, what)?.to_vec())
    }
    pub fn str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.bytes(what)?;
        String::from_utf8(b).map_err(|_| DecodeError::BadUtf8(what))
    }
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { what, tag }),
        }
    }
    pub fn seq<T: Decode>(&mut self, what: &'static str) -> Result<Vec<T>, DecodeError> {
        let len = self.len(what)?;
        // Each element takes at least one byte, so a length beyond the input is a lie.
        if len > self.buf.len() {
            return Err(DecodeError::Truncated(what));
        }
        let mut v = Vec::with_capacity(prealloc::<T>(len));
        for _ in 0..len {
            v.push(T::decode(self)?);
        }
        Ok(v)
    }
    /// Reads a format-version byte and refuses any version but `expected`.
    pub fn format(&mut self, what: &'static str, expected: u8) -> Result<(), DecodeError> {
        match self.u8(what)? {
            v if v == expected => Ok(()),
            tag => Err(DecodeError::BadTag { what, tag }),
        }
    }

    pub fn opt<T: Decode>(&mut self, what: &'static str) -> Result<Option<T>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(self)?)),
            tag => Err(DecodeError::BadTag { what, tag }),
        }
    }
    /// The bytes not read yet, borrowed from the input: lets a caller keep a value's
    /// canonical bytes next to the decoded value.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.buf.len()))
        }
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut Writer) {
        w.opt(self)
    }
}
impl<T: Decode> Decode for Option<T> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.opt("option")
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.str(self)
    }
}
impl Decode for String {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.str("string")
    }
}
impl Encode for Vec<u8> {
    fn encode(&self, w: &mut Writer) {
        w.bytes(self)
    }
}
impl Decode for Vec<u8> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.bytes("bytes")
    }
}
impl Encode for u64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self)
    }
}
impl Decode for u64 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.u64("u64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut b = "abc".to_string().to_bytes();
        b.push(0);
        assert_eq!(String::from_bytes(&b), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn truncated_and_lying_lengths_are_rejected() {
        let b = "abcdef".to_string().to_bytes();
        assert!(matches!(
            String::from_bytes(&b[..5]),
            Err(DecodeError::Truncated(_))
        ));
        let lie = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Vec::<u8>::from_bytes(&lie),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn bad_option_tag_is_rejected() {
        let mut r = Reader::new(&[2]);
        assert!(matches!(
            r.opt::<u64>("x"),
            Err(DecodeError::BadTag { tag: 2, .. })
        ));
    }
}
