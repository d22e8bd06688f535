//! Where data lives in the engine, and which engine ranges a region owns.
//!
//! User data sits in the `default`/`lock`/`write` column families under one
//! prefix byte per namespace: transactional keys `t` + memcomparable key (see
//! `mvcc::codec`), API V1 raw keys `r` + key, API V2 raw keys `R` + key. A
//! region's boundaries are memcomparable-encoded for transactional and V2 raw
//! keys and plain bytes for V1 raw keys (as the clients compare them), so each
//! namespace maps the region to its own engine range ([`region_data_ranges`]).
//! Snapshots, replica removal and size checks all go through that mapping.

use proto::metapb;

use crate::mvcc::codec::{TXN_PREFIX, TXN_PREFIX_END};

const RAW_V1_PREFIX: u8 = b'r';
const RAW_V2_PREFIX: u8 = b'R';

/// The namespace of raw keys of one API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawSpace {
    V1,
    V2,
}

impl RawSpace {
    fn prefix(self) -> u8 {
        match self {
            RawSpace::V1 => RAW_V1_PREFIX,
            RawSpace::V2 => RAW_V2_PREFIX,
        }
    }

    /// Engine key of raw `key`.
    pub fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(self.prefix());
        k.extend_from_slice(key);
        k
    }

    /// Engine bounds `[lower, upper)` of a raw user range (None = unbounded).
    pub fn bounds(self, lower: &[u8], upper: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
        let upper = match upper {
            Some(u) => self.key(u),
            None => vec![self.prefix() + 1],
        };
        (self.key(lower), upper)
    }
}

fn decoded(boundary: &[u8]) -> Vec<u8> {
    if boundary.is_empty() {
        return vec![];
    }
    crate::mvcc::codec::decode_bytes(boundary).unwrap_or_else(|_| boundary.to_vec())
}

/// Engine ranges `[start, end)` of every namespace that `region` owns.
pub fn region_data_ranges(region: &metapb::Region) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (start, end) = (&region.start_key, &region.end_key);
    let prefixed = |p: u8, k: &[u8]| {
        let mut v = vec![p];
        v.extend_from_slice(k);
        v
    };
    let txn_end = if end.is_empty() {
        vec![TXN_PREFIX_END]
    } else {
        prefixed(TXN_PREFIX, end)
    };
    let v2_upper = (!end.is_empty()).then(|| decoded(end));
    let v1_upper = (!end.is_empty()).then_some(end.as_slice());
    vec![
        (prefixed(TXN_PREFIX, start), txn_end),
        RawSpace::V1.bounds(start, v1_upper),
        RawSpace::V2.bounds(&decoded(start), v2_upper.as_deref()),
    ]
}

/// Engine ranges of `region` (see [`region_data_ranges`]) minus the parts of its key range
/// that any region in `others` covers: what destroying a replica of `region` may delete while
/// the store keeps replicas of `others`.
pub fn exclusive_data_ranges<'a>(
    region: &metapb::Region,
    others: impl Iterator<Item = &'a metapb::Region>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    // Pieces [start, end) of the region's key range ("" end = unbounded) not yet covered.
    let mut pieces = vec![(region.start_key.clone(), region.end_key.clone())];
    for o in others.filter(|o| o.id != region.id) {
        pieces = pieces
            .into_iter()
            .flat_map(|(s, e)| subtract((s, e), (&o.start_key, &o.end_key)))
            .collect();
    }
    pieces
        .into_iter()
        .flat_map(|(start_key, end_key)| {
            region_data_ranges(&metapb::Region {
                start_key,
                end_key,
                ..Default::default()
            })
        })
        .collect()
}

/// `[s, e)` minus `[os, oe)`, in region-key order ("" end = unbounded): up to two pieces.
fn subtract((s, e): (Vec<u8>, Vec<u8>), (os, oe): (&[u8], &[u8])) -> Vec<(Vec<u8>, Vec<u8>)> {
    let below = |a: &[u8], b: &[u8]| b.is_empty() || a < b; // a < b, "" = +inf for b
    let overlaps = below(os, &e) && below(&s, oe);
    if !overlaps {
        return vec![(s, e)];
    }
    let mut out = Vec::new();
    if s.as_slice() < os {
        out.push((s, os.to_vec()));
    }
    if !oe.is_empty() && below(oe, &e) {
        out.push((oe.to_vec(), e));
    }
    out
}

/// The region boundary at which engine key `key` starts: the memcomparable
/// encoding of its user key, for every namespace (transactional clients decode
/// boundaries and fail on anything else; V1 raw clients compare them as plain
/// bytes, so V1 raw keys that share their first eight bytes all sort below the
/// encoding of any of them and cannot be split apart). None for keys outside the
/// data namespaces.
pub fn boundary_of(key: &[u8]) -> Option<Vec<u8>> {
    let (&prefix, rest) = key.split_first()?;
    match prefix {
        TXN_PREFIX => {
            let (user, _) = crate::mvcc::codec::decode_bytes_prefix(rest).ok()?;
            Some(proto::codec::encode_bytes(&user))
        }
        RAW_V1_PREFIX | RAW_V2_PREFIX => Some(proto::codec::encode_bytes(rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::codec::encode_bytes;

    #[test]
    fn boundaries_are_encoded_user_keys() {
        let mut txn = crate::mvcc::codec::lock_key(b"user");
        txn.extend_from_slice(&[1; 8]);
        assert_eq!(boundary_of(&txn), Some(encode_bytes(b"user")));
        assert_eq!(
            boundary_of(&RawSpace::V1.key(b"k")),
            Some(encode_bytes(b"k"))
        );
        assert_eq!(
            boundary_of(&RawSpace::V2.key(b"k")),
            Some(encode_bytes(b"k"))
        );
        assert_eq!(boundary_of(b"zzz"), None);
    }

    #[test]
    fn exclusive_ranges_leave_out_what_other_regions_cover() {
        let r = |id, s: &str, e: &str| metapb::Region {
            id,
            start_key: s.as_bytes().to_vec(),
            end_key: e.as_bytes().to_vec(),
            ..Default::default()
        };
        let txn_ranges = |rs: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
            rs.into_iter().filter(|(s, _)| s[0] == TXN_PREFIX).collect()
        };
        let t = |k: &str| {
            let mut v = vec![TXN_PREFIX];
            v.extend_from_slice(k.as_bytes());
            v
        };
        let me = r(1, "b", "");
        let alone = exclusive_data_ranges(&me, [r(1, "a", "z")].iter());
        assert_eq!(
            alone,
            region_data_ranges(&me),
            "a region does not exclude itself"
        );
        let inner = [r(2, "d", "f"), r(3, "x", "")];
        assert_eq!(
            txn_ranges(exclusive_data_ranges(&me, inner.iter())),
            vec![(t("b"), t("d")), (t("f"), t("x"))]
        );
        let everything = [r(2, "", "")];
        assert!(exclusive_data_ranges(&me, everything.iter()).is_empty());
        let disjoint = [r(2, "", "b")];
        assert_eq!(
            exclusive_data_ranges(&me, disjoint.iter()),
            region_data_ranges(&me)
        );
    }

    #[test]
    fn namespaces_do_not_overlap() {
        let all = region_data_ranges(&metapb::Region::default());
        let mut sorted = all.clone();
        sorted.sort();
        for w in sorted.windows(2) {
            assert!(w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
        }
        assert_eq!(RawSpace::V2.key(b"k")[0], b'R');
        assert_eq!(RawSpace::V1.bounds(b"", None), (vec![b'r'], vec![b's']));
    }

    #[test]
    fn region_ranges_follow_each_namespace_comparison() {
        let region = metapb::Region {
            start_key: encode_bytes(b"b"),
            end_key: encode_bytes(b"m"),
            ..Default::default()
        };
        let ranges = region_data_ranges(&region);
        let inside = |k: &[u8]| {
            ranges
                .iter()
                .any(|(s, e)| k >= s.as_slice() && k < e.as_slice())
        };
        // Transactional: the encoded key with a timestamp suffix.
        let mut txn = crate::mvcc::codec::lock_key(b"c");
        txn.extend_from_slice(&[0; 8]);
        assert!(inside(&txn));
        assert!(!inside(&crate::mvcc::codec::lock_key(b"m")));
        // V2 raw keys compare decoded; V1 raw keys compare as bytes.
        assert!(inside(&RawSpace::V2.key(b"c")));
        assert!(!inside(&RawSpace::V2.key(b"m")));
        assert!(inside(&RawSpace::V1.key(b"c")));
        assert!(
            inside(&RawSpace::V1.key(b"m")),
            "b\"m\" < enc(\"m\") as bytes"
        );
    }
}
