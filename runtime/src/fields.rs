//! The field encoding of call arguments (and of the example contracts' records): a u32 count,
//! then per field a u32 length and the bytes, integers little-endian. `tallyctl` and the node
//! encode arguments with [`encode`]; contracts decode them with the SDK.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a field list: {0}")]
pub struct FieldsError(&'static str);

/// Encodes fields. An empty list encodes as 4 zero bytes (contracts also accept no bytes).
pub fn encode<T: AsRef<[u8]>>(fields: &[T]) -> Vec<u8> {
    let size: usize = fields.iter().map(|f| 4 + f.as_ref().len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for f in fields {
        let f = f.as_ref();
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FieldsError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(FieldsError("truncated length"))
}

/// Decodes fields; refuses truncation and trailing bytes.
pub fn decode(b: &[u8]) -> Result<Vec<Vec<u8>>, FieldsError> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let count = u32_at(b, 0)? as usize;
    // Every field takes at least 4 bytes; bound the count before allocating for it.
    if count > (b.len() - 4) / 4 {
        return Err(FieldsError("count larger than the input"));
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = u32_at(b, at)? as usize;
        at += 4;
        let f = b
            .get(at..at.saturating_add(n))
            .ok_or(FieldsError("truncated field"))?;
        out.push(f.to_vec());
        at += n;
    }
    if at != b.len() {
        return Err(FieldsError("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let e = encode(&["a", "", "xyz"]);
        assert_eq!(
            e,
            [3, 0, 0, 0, 1, 0, 0, 0, b'a', 0, 0, 0, 0, 3, 0, 0, 0, b'x', b'y', b'z']
        );
        assert_eq!(
            decode(&e).unwrap(),
            [b"a".to_vec(), vec![], b"xyz".to_vec()]
        );
        assert_eq!(decode(&[]).unwrap(), Vec::<Vec<u8>>::new());
        assert!(decode(&e[..e.len() - 1]).is_err());
        let mut extra = e.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        assert!(decode(&[255, 255, 255, 255]).is_err());
    }
}
