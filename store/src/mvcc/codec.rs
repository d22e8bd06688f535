//! Key and number codecs of the transactional key space.
//!
//! [`encode_bytes`] / [`decode_bytes`] are TiKV's memcomparable encoding (8-byte
//! groups, each followed by a marker `0xFF - pad`, zero padding): order-preserving
//! and prefix-free, so one encoded key is never a prefix of another. The server
//! also uses them for region boundaries, which clients see in this encoding.
//!
//! Engine keys of transactional data are `b't' + encode_bytes(user_key)` in the
//! lock CF ([`lock_key`]) and the same plus `!ts` big-endian in the write and
//! default CFs ([`versioned_key`]), so newer versions of a key sort first. Raw KV
//! uses prefix `b'r'` in the same column families and never collides.

/// First byte of every transactional engine key.
pub const TXN_PREFIX: u8 = b't';
/// Exclusive end of the transactional key space (`TXN_PREFIX + 1`).
pub const TXN_PREFIX_END: u8 = TXN_PREFIX + 1;

const GROUP: usize = 8;

/// Malformed encoded input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unexpected end of encoded bytes")]
    Eof,
    #[error("bad padding in encoded bytes")]
    BadPadding,
    #[error("key lacks the transactional prefix")]
    BadPrefix,
    #[error("truncated varint")]
    BadVarint,
}

/// Memcomparable encoding of `key` (ascending); the wire contract's codec.
pub use proto::codec::encode_bytes;
use proto::codec::encode_bytes_into;

/// Decodes one memcomparable-encoded key from the start of `input`; trailing
/// bytes (such as a timestamp suffix) are ignored.
pub fn decode_bytes(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    decode_bytes_prefix(input).map(|(key, _)| key)
}

/// Decodes one encoded key from the start of `input` and returns it with the
/// number of bytes it occupied.
pub fn decode_bytes_prefix(input: &[u8]) -> Result<(Vec<u8>, usize), CodecError> {
    proto::codec::decode_bytes_prefix(input).map_err(|e| match e {
        proto::codec::DecodeError::Eof => CodecError::Eof,
        proto::codec::DecodeError::BadPadding => CodecError::BadPadding,
    })
}

/// `!ts` big-endian: larger timestamps sort first.
pub fn encode_u64_desc(ts: u64) -> [u8; 8] {
    (!ts).to_be_bytes()
}

pub fn decode_u64_desc(bytes: [u8; 8]) -> u64 {
    !u64::from_be_bytes(bytes)
}

/// Lock CF key of `user_key`; also the common prefix of its versioned keys.
pub fn lock_key(user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() / GROUP * (GROUP + 1) + GROUP + 10 + 8);
    out.push(TXN_PREFIX);
    encode_bytes_into(&mut out, user_key);
    out
}

/// Write CF / default CF key of `user_key` at `ts`.
pub fn versioned_key(user_key: &[u8], ts: u64) -> Vec<u8> {
    append_ts(lock_key(user_key), ts)
}

pub fn append_ts(mut key: Vec<u8>, ts: u64) -> Vec<u8> {
    key.extend_from_slice(&encode_u64_desc(ts));
    key
}

/// Splits a versioned engine key into its lock-key part and timestamp.
pub fn split_ts(key: &[u8]) -> Result<(&[u8], u64), CodecError> {
    if key.len() < 8 {
        return Err(CodecError::Eof);
    }
    let (prefix, ts) = key.split_at(key.len() - 8);
    let ts: [u8; 8] = ts.try_into().map_err(|_| CodecError::Eof)?;
    Ok((prefix, decode_u64_desc(ts)))
}

/// The user key of a lock-CF key (or of the lock-key part of a versioned key).
pub fn user_key_of(lock_key: &[u8]) -> Result<Vec<u8>, CodecError> {
    match lock_key.split_first() {
        Some((&TXN_PREFIX, rest)) => decode_bytes(rest),
        _ => Err(CodecError::BadPrefix),
    }
}

/// Engine-key bounds `[start, end)` of the user-key range `[lower, upper)`
/// (`None` = to the end of the transactional key space). They hold for all
/// three CFs: every version of a key sorts after its lock key.
pub fn txn_range(lower: &[u8], upper: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let end = match upper {
        Some(u) => lock_key(u),
        None => vec![TXN_PREFIX_END],
    };
    (lock_key(lower), end)
}

/// The smallest key greater than every key that starts with `lock_key`.
/// Encoded keys end with a marker below 0xFF, so bumping the last byte works.
pub fn prefix_end(lock_key: &[u8]) -> Vec<u8> {
    let mut end = lock_key.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint, advancing `input`.
pub fn get_varint(input: &mut &[u8]) -> Result<u64, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(CodecError::BadVarint)?;
        *input = rest;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CodecError::BadVarint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_from_tikv() {
        let cases: [(&[u8], &[u8]); 5] = [
            (&[], &[0, 0, 0, 0, 0, 0, 0, 0, 247]),
            (&[1, 2, 3], &[1, 2, 3, 0, 0, 0, 0, 0, 250]),
            (&[1, 2, 3, 0], &[1, 2, 3, 0, 0, 0, 0, 0, 251]),
            (
                &[1, 2, 3, 4, 5, 6, 7, 8],
                &[1, 2, 3, 4, 5, 6, 7, 8, 255, 0, 0, 0, 0, 0, 0, 0, 0, 247],
            ),
            (
                &[1, 2, 3, 4, 5, 6, 7, 8, 9],
                &[1, 2, 3, 4, 5, 6, 7, 8, 255, 9, 0, 0, 0, 0, 0, 0, 0, 248],
            ),
        ];
        for (raw, enc) in cases {
            assert_eq!(encode_bytes(raw), enc);
            assert_eq!(decode_bytes(enc).unwrap(), raw);
        }
    }

    #[test]
    fn round_trip_and_order() {
        let mut keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 0],
            vec![0xFF; 7],
            vec![0xFF; 8],
            vec![0xFF; 9],
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefghi".to_vec(),
            b"b".to_vec(),
        ];
        keys.sort();
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_bytes(k)).collect();
        for (k, e) in keys.iter().zip(&encoded) {
            let (dec, used) = decode_bytes_prefix(e).unwrap();
            assert_eq!(&dec, k);
            assert_eq!(used, e.len());
        }
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "order kept");
        // Prefix-free: no encoded key is a prefix of another.
        for a in &encoded {
            for b in &encoded {
                assert!(a == b || !b.starts_with(a));
            }
        }
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(decode_bytes(&[1, 2, 3]), Err(CodecError::Eof));
        assert_eq!(
            decode_bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 255]),
            Err(CodecError::Eof)
        );
        assert_eq!(
            decode_bytes(&[1, 2, 3, 0, 0, 0, 0, 1, 250]),
            Err(CodecError::BadPadding)
        );
        assert_eq!(decode_bytes(&[0; 9]), Err(CodecError::BadPadding));
        // Trailing bytes (a timestamp) are ignored.
        let k = versioned_key(b"key", 5);
        assert_eq!(decode_bytes(&k[1..]).unwrap(), b"key");
    }

    #[test]
    fn versioned_keys_sort_newest_first() {
        let k = b"k";
        assert!(versioned_key(k, 10) < versioned_key(k, 9));
        assert!(lock_key(k) < versioned_key(k, u64::MAX));
        assert!(versioned_key(k, 0) < prefix_end(&lock_key(k)));
        assert!(prefix_end(&lock_key(k)) <= lock_key(b"k\0"));
        let vk = versioned_key(k, 42);
        let (prefix, ts) = split_ts(&vk).unwrap();
        assert_eq!((prefix, ts), (lock_key(k).as_slice(), 42));
        assert_eq!(user_key_of(prefix).unwrap(), k);
        assert_eq!(user_key_of(b"r123"), Err(CodecError::BadPrefix));
        let (start, end) = txn_range(b"", None);
        assert_eq!((start[0], end), (TXN_PREFIX, vec![TXN_PREFIX_END]));
    }

    #[test]
    fn varint_round_trip() {
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = vec![];
            put_varint(&mut buf, v);
            let mut s = buf.as_slice();
            assert_eq!(get_varint(&mut s).unwrap(), v);
            assert!(s.is_empty());
        }
        assert_eq!(get_varint(&mut &[0x80][..]), Err(CodecError::BadVarint));
    }
}
