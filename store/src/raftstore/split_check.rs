//! Deciding where a grown region should split.
//!
//! [`check`] measures a region's data (bytes and keys, every namespace it
//! owns) and, when it is over the limits, picks split points cutting it into
//! pieces of two thirds of the limits, converted to a region boundary valid for every
//! client (`crate::data_keys::boundary_of`). It reads the engine and is meant for
//! a blocking thread, not the raftstore loop.

use proto::metapb;

use crate::data_keys::{boundary_of, region_data_ranges};
use crate::engine::{Engine, EngineError, CF_DEFAULT, CF_WRITE};

/// Most split keys proposed at once.
const MAX_SPLIT_KEYS: usize = 512;

/// When a region is split, in bytes and keys.
#[derive(Debug, Clone, Copy)]
pub struct SplitLimits {
    pub max_size: u64,
    pub max_keys: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCheck {
    pub size: u64,
    pub keys: u64,
    /// Where to split (ascending), if the region is over a limit.
    pub split_keys: Vec<Vec<u8>>,
}

/// Walks the region's `write` and `default` data (the lock CF is transient).
fn walk(
    engine: &Engine,
    region: &metapb::Region,
    mut f: impl FnMut(&[u8], u64) -> bool,
) -> Result<(), EngineError> {
    let snap = engine.snapshot();
    for (start, end) in region_data_ranges(region) {
        for cf in [CF_WRITE, CF_DEFAULT] {
            let mut c = snap.cursor(cf, Some(start.clone()), Some(end.clone()))?;
            c.seek_to_first();
            while c.valid()? {
                if !f(c.key(), (c.key().len() + c.value().len()) as u64) {
                    return Ok(());
                }
                c.next();
            }
        }
    }
    Ok(())
}

/// Measures the region; over a limit, picks split keys cutting it into
/// pieces of about two thirds of the limits (TiKV's split size), all in one
/// pass so a region written once is split fully.
pub fn check(
    engine: &Engine,
    region: &metapb::Region,
    limits: SplitLimits,
) -> Result<SplitCheck, EngineError> {
    let (mut size, mut keys) = (0u64, 0u64);
    walk(engine, region, |_, n| {
        size += n;
        keys += 1;
        true
    })?;
    let mut result = SplitCheck {
        size,
        keys,
        split_keys: Vec::new(),
    };
    if size <= limits.max_size && keys <= limits.max_keys {
        return Ok(result);
    }
    let piece_size = (limits.max_size / 3 * 2).max(1);
    let piece_keys = (limits.max_keys / 3 * 2).max(1);
    let (mut seen_size, mut seen_keys) = (0u64, 0u64);
    let mut last = region.start_key.clone();
    walk(engine, region, |key, n| {
        if seen_size >= piece_size || seen_keys >= piece_keys {
            if let Some(b) = boundary_of(key) {
                let inside = b > last && (region.end_key.is_empty() || b < region.end_key);
                if inside {
                    last = b.clone();
                    result.split_keys.push(b);
                    seen_size = 0;
                    seen_keys = 0;
                }
            }
        }
        seen_size += n;
        seen_keys += 1;
        result.split_keys.len() < MAX_SPLIT_KEYS
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_keys::RawSpace;
    use crate::engine::Modify;

    #[test]
    fn splits_big_regions_into_pieces_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let puts: Vec<Modify> = (0..100u32)
            .map(|i| Modify::Put {
                cf: CF_DEFAULT,
                key: RawSpace::V2.key(format!("k{i:03}").as_bytes()),
                value: vec![0; 100],
            })
            .collect();
        engine.write(&puts, false).unwrap();
        let region = metapb::Region::default();
        let limits = |max_size, max_keys| SplitLimits { max_size, max_keys };
        let small = check(&engine, &region, limits(1 << 20, 1000)).unwrap();
        assert_eq!(small.keys, 100);
        assert!(small.split_keys.is_empty());
        assert!(small.size > 100 * 100);
        // About 11 KB in pieces of 2/3 of 6000 bytes: a few ascending keys.
        let big = check(&engine, &region, limits(6000, 1000)).unwrap();
        assert!(big.split_keys.len() >= 2, "{}", big.split_keys.len());
        assert!(big.split_keys.windows(2).all(|w| w[0] < w[1]));
        let first = proto::codec::decode_bytes(&big.split_keys[0]).unwrap();
        assert!(
            (b"k020".to_vec()..=b"k060".to_vec()).contains(&first),
            "{first:?}"
        );
        // 100 keys in pieces of 2/3 of 30 = 20 keys: four cuts.
        let by_keys = check(&engine, &region, limits(1 << 20, 30)).unwrap();
        assert_eq!(by_keys.split_keys.len(), 4);
    }
}
