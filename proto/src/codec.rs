//! Key encodings that are part of the wire contract.
//!
//! Region boundaries that clients decode are TiKV's memcomparable encoding of
//! the user key ([`encode_bytes`]): 8-byte groups, each followed by the marker
//! `0xFF - pad`, zero padding; order-preserving and prefix-free. API V2 keys
//! start with a 4-byte keyspace prefix ([`keyspace_prefix`]).

const GROUP: usize = 8;
const MARKER: u8 = 0xFF;

/// Malformed memcomparable input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Eof,
    BadPadding,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Eof => f.write_str("unexpected end of encoded bytes"),
            DecodeError::BadPadding => f.write_str("bad padding in encoded bytes"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Memcomparable encoding of `key` (ascending order).
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1));
    encode_bytes_into(&mut out, key);
    out
}

/// Appends the memcomparable encoding of `key` to `out`.
pub fn encode_bytes_into(out: &mut Vec<u8>, key: &[u8]) {
    let mut chunks = key.chunks_exact(GROUP);
    for chunk in &mut chunks {
        out.extend_from_slice(chunk);
        out.push(MARKER);
    }
    let rest = chunks.remainder();
    let pad = GROUP - rest.len();
    out.extend_from_slice(rest);
    out.extend(std::iter::repeat_n(0, pad));
    out.push(MARKER - pad as u8);
}

/// Decodes one encoded key from the start of `input`; returns it and the
/// number of bytes consumed (trailing bytes, e.g. a timestamp, are left).
pub fn decode_bytes_prefix(input: &[u8]) -> Result<(Vec<u8>, usize), DecodeError> {
    let mut key = Vec::with_capacity(input.len() / (GROUP + 1) * GROUP);
    let mut offset = 0;
    loop {
        let group = input
            .get(offset..offset + GROUP + 1)
            .ok_or(DecodeError::Eof)?;
        offset += GROUP + 1;
        let pad = (MARKER - group[GROUP]) as usize;
        if pad == 0 {
            key.extend_from_slice(&group[..GROUP]);
            continue;
        }
        if pad > GROUP || group[GROUP - pad..GROUP].iter().any(|&b| b != 0) {
            return Err(DecodeError::BadPadding);
        }
        key.extend_from_slice(&group[..GROUP - pad]);
        return Ok((key, offset));
    }
}

/// Decodes a whole encoded key.
pub fn decode_bytes(input: &[u8]) -> Result<Vec<u8>, DecodeError> {
    decode_bytes_prefix(input).map(|(k, _)| k)
}

/// API V2 key mode byte: raw keys start with `r`, transactional with `x`.
pub const RAW_MODE: u8 = b'r';
pub const TXN_MODE: u8 = b'x';

/// The 4-byte prefix of keyspace `id` (24 bits) in `mode`.
pub fn keyspace_prefix(mode: u8, id: u32) -> [u8; 4] {
    let b = id.to_be_bytes();
    [mode, b[1], b[2], b[3]]
}

/// Encoded region boundaries that keep keyspace `id`'s raw and transactional
/// data in regions of their own (as PD splits them when a keyspace is made).
pub fn keyspace_boundaries(id: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(4);
    for mode in [RAW_MODE, TXN_MODE] {
        out.push(encode_bytes(&keyspace_prefix(mode, id)));
        // The id after the largest one wraps into the next mode byte.
        let next = if id + 1 >= 1 << 24 {
            vec![mode + 1]
        } else {
            keyspace_prefix(mode, id + 1).to_vec()
        };
        out.push(encode_bytes(&next));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_and_round_trip() {
        assert_eq!(encode_bytes(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        assert_eq!(
            encode_bytes(b"\x01\x02\x03"),
            vec![1, 2, 3, 0, 0, 0, 0, 0, 0xFA]
        );
        assert_eq!(
            encode_bytes(b"12345678"),
            b"12345678\xFF\x00\x00\x00\x00\x00\x00\x00\x00\xF7".to_vec()
        );
        for k in [&b""[..], b"a", b"12345678", b"123456789", &[0u8; 17]] {
            assert_eq!(decode_bytes(&encode_bytes(k)).unwrap(), k);
        }
        assert_eq!(decode_bytes(b"abc"), Err(DecodeError::Eof));
        assert_eq!(
            decode_bytes(&[1, 0, 0, 0, 0, 0, 0, 9, 0xF8]),
            Err(DecodeError::BadPadding)
        );
    }

    #[test]
    fn order_is_preserved() {
        let keys: [&[u8]; 6] = [b"", b"\x00", b"a", b"a\x00", b"ab", b"b"];
        for w in keys.windows(2) {
            assert!(
                encode_bytes(w[0]) < encode_bytes(w[1]),
                "{:?} < {:?}",
                w[0],
                w[1]
            );
        }
    }

    #[test]
    fn keyspace_boundaries_bracket_the_keyspace() {
        let b = keyspace_boundaries(0);
        assert_eq!(b.len(), 4);
        assert_eq!(decode_bytes(&b[0]).unwrap(), b"r\0\0\0");
        assert_eq!(decode_bytes(&b[1]).unwrap(), b"r\0\0\x01");
        assert_eq!(decode_bytes(&b[3]).unwrap(), b"x\0\0\x01");
        let key = encode_bytes(b"x\0\0\0user-key");
        assert!(b[2] <= key && key < b[3]);
        assert_eq!(
            decode_bytes(&keyspace_boundaries(0xFF_FFFF)[1]).unwrap(),
            b"s"
        );
    }
}
