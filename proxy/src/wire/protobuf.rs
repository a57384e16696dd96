//! Protobuf wire format walking: tags, varints and field spans, never message types.
//!
//! `fields` yields each top-level field of a message with the exact byte range it
//! occupies, so a caller can copy untouched fields verbatim (unknown ones included)
//! and replace only the one it owns.

use std::ops::Range;

/// Why a byte string is not a well-formed protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated varint")]
    TruncatedVarint,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("field {field} runs past the end of the message")]
    Truncated { field: u32 },
    #[error("field number 0 is not allowed")]
    ZeroField,
    #[error("unsupported wire type {0}")]
    WireType(u8),
}

/// Protobuf wire types the walker understands (groups are long deprecated and absent
/// from every REAPI message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

/// One top-level field: its number, type, the whole span (tag included) and, for
/// length-delimited fields, the span of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub wire_type: WireType,
    /// Tag, length prefix and payload: copy this range to keep the field unchanged.
    pub span: Range<usize>,
    /// The payload alone (for varints: the varint bytes).
    pub value: Range<usize>,
}

/// Decodes a varint at `pos`, returning the value and the position after it.
pub fn read_varint(bytes: &[u8], mut pos: usize) -> Result<(u64, usize), WireError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let Some(&byte) = bytes.get(pos) else {
            return Err(WireError::TruncatedVarint);
        };
        pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, pos));
        }
    }
    Err(WireError::VarintTooLong)
}

/// Appends `value` as a varint.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a length-delimited field (`number`, wire type 2) holding `payload`.
pub fn write_bytes_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    write_varint(out, (u64::from(number) << 3) | 2);
    write_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// Iterates the top-level fields of `message`; stops at the first malformed field.
pub fn fields(message: &[u8]) -> FieldIter<'_> {
    FieldIter {
        message,
        pos: 0,
        failed: false,
    }
}

pub struct FieldIter<'a> {
    message: &'a [u8],
    pos: usize,
    failed: bool,
}

impl FieldIter<'_> {
    fn next_field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let (tag, after_tag) = read_varint(self.message, start)?;
        let number = u32::try_from(tag >> 3).map_err(|_| WireError::ZeroField)?;
        if number == 0 {
            return Err(WireError::ZeroField);
        }
        let (wire_type, value) = match tag & 7 {
            0 => {
                let (_, end) = read_varint(self.message, after_tag)?;
                (WireType::Varint, after_tag..end)
            }
            1 => (WireType::Fixed64, after_tag..after_tag + 8),
            2 => {
                let (len, payload_start) = read_varint(self.message, after_tag)?;
                let len =
                    usize::try_from(len).map_err(|_| WireError::Truncated { field: number })?;
                let end = payload_start
                    .checked_add(len)
                    .ok_or(WireError::Truncated { field: number })?;
                (WireType::LengthDelimited, payload_start..end)
            }
            5 => (WireType::Fixed32, after_tag..after_tag + 4),
            other => return Err(WireError::WireType(other as u8)),
        };
        if value.end > self.message.len() {
            return Err(WireError::Truncated { field: number });
        }
        self.pos = value.end;
        Ok(Field {
            number,
            wire_type,
            span: start..value.end,
            value,
        })
    }
}

impl Iterator for FieldIter<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.message.len() {
            return None;
        }
        let result = self.next_field();
        self.failed = result.is_err();
        Some(result)
    }
}

/// The payload of the last occurrence of length-delimited field `number` (protobuf's
/// "last one wins" rule for non-repeated fields), or `None` when absent.
pub fn last_bytes_field(message: &[u8], number: u32) -> Result<Option<&[u8]>, WireError> {
    let mut found = None;
    for field in fields(message) {
        let field = field?;
        if field.number == number && field.wire_type == WireType::LengthDelimited {
            found = Some(&message[field.value]);
        }
    }
    Ok(found)
}

/// The last varint value of field `number`, or `None` when absent.
pub fn last_varint_field(message: &[u8], number: u32) -> Result<Option<u64>, WireError> {
    let mut found = None;
    for field in fields(message) {
        let field = field?;
        if field.number == number && field.wire_type == WireType::Varint {
            found = Some(read_varint(message, field.value.start)?.0);
        }
    }
    Ok(found)
}

/// Copies `message`, passing every length-delimited field `number` through `replace`
/// and every other byte through unchanged.
pub fn map_bytes_field(
    message: &[u8],
    number: u32,
    mut replace: impl FnMut(&[u8]) -> Result<Vec<u8>, WireError>,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(message.len() + 32);
    for field in fields(message) {
        let field = field?;
        if field.number == number && field.wire_type == WireType::LengthDelimited {
            let payload = replace(&message[field.value])?;
            write_bytes_field(&mut out, number, &payload);
        } else {
            out.extend_from_slice(&message[field.span]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, value);
            assert_eq!(read_varint(&out, 0), Ok((value, out.len())));
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(read_varint(&[0x80], 0), Err(WireError::TruncatedVarint));
        assert_eq!(read_varint(&[0xff; 11], 0), Err(WireError::VarintTooLong));
        // Field 1, length 5, but only 2 bytes follow.
        let short = [0x0a, 0x05, b'a', b'b'];
        assert_eq!(
            fields(&short).next(),
            Some(Err(WireError::Truncated { field: 1 }))
        );
        // A length close to u64::MAX must not overflow the position arithmetic.
        let mut huge = vec![0x0a];
        write_varint(&mut huge, u64::MAX);
        assert!(fields(&huge).next().unwrap().is_err());
        assert_eq!(
            fields(&[0x08 | 3, 0]).next(),
            Some(Err(WireError::WireType(3)))
        );
        assert_eq!(fields(&[0x00]).next(), Some(Err(WireError::ZeroField)));
    }

    #[test]
    fn map_keeps_every_other_field_byte_for_byte() {
        let mut message = Vec::new();
        write_bytes_field(&mut message, 1, b"old");
        message.extend_from_slice(&[0x10, 0x96, 0x01]); // field 2 varint 150
        message.extend_from_slice(&[0x1d, 1, 2, 3, 4]); // field 3 fixed32
        write_bytes_field(&mut message, 999, b"unknown to everyone");
        message.extend_from_slice(&[0x21, 1, 2, 3, 4, 5, 6, 7, 8]); // field 4 fixed64
        let out = map_bytes_field(&message, 1, |old| {
            assert_eq!(old, b"old");
            Ok(b"a much longer new name".to_vec())
        })
        .unwrap();
        let mut expected = Vec::new();
        write_bytes_field(&mut expected, 1, b"a much longer new name");
        expected.extend_from_slice(&message[5..]);
        assert_eq!(out, expected);
        assert_eq!(last_varint_field(&out, 2), Ok(Some(150)));
        assert_eq!(
            last_bytes_field(&out, 999),
            Ok(Some(&b"unknown to everyone"[..]))
        );
    }
}
