//! Deciding where a grown region should split.
//!
//! [`check`] measures a region's data (bytes and keys, every namespace it
//! owns) and, when it is over the limits, picks the key at the middle of its
//! bytes as the split point, converted to a region boundary valid for every
//! client (`crate::keys::boundary_of`). It reads the engine and is meant for
//! a blocking thread, not the raftstore loop.

use proto::metapb;

use crate::engine::{Engine, EngineError, CF_DEFAULT, CF_WRITE};
use crate::keys::{boundary_of, region_data_ranges};

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
    /// Where to split, if the region is over a limit and can be split.
    pub split_key: Option<Vec<u8>>,
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
        split_key: None,
    };
    if size <= limits.max_size && keys <= limits.max_keys {
        return Ok(result);
    }
    let by_size = size > limits.max_size;
    let (half_size, half_keys) = (size / 2, keys / 2);
    let (mut seen_size, mut seen_keys) = (0u64, 0u64);
    walk(engine, region, |key, n| {
        seen_size += n;
        seen_keys += 1;
        let past_half = if by_size {
            seen_size >= half_size
        } else {
            seen_keys >= half_keys
        };
        if !past_half {
            return true;
        }
        match boundary_of(key) {
            Some(b)
                if b.as_slice() > region.start_key.as_slice()
                    && (region.end_key.is_empty() || b.as_slice() < region.end_key.as_slice()) =>
            {
                result.split_key = Some(b);
                false
            }
            _ => true,
        }
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Modify;
    use crate::keys::RawSpace;

    #[test]
    fn splits_big_regions_in_the_middle_only() {
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
        let small = check(
            &engine,
            &region,
            SplitLimits {
                max_size: 1 << 20,
                max_keys: 1000,
            },
        )
        .unwrap();
        assert_eq!((small.keys, small.split_key), (100, None));
        assert!(small.size > 100 * 100);
        let big = check(
            &engine,
            &region,
            SplitLimits {
                max_size: 5000,
                max_keys: 1000,
            },
        )
        .unwrap();
        let key = big.split_key.expect("a split key");
        let user = proto::codec::decode_bytes(&key).unwrap();
        assert!(
            (b"k045".to_vec()..=b"k055".to_vec()).contains(&user),
            "{user:?}"
        );
        let by_keys = check(
            &engine,
            &region,
            SplitLimits {
                max_size: 1 << 20,
                max_keys: 10,
            },
        )
        .unwrap();
        assert!(by_keys.split_key.is_some());
    }
}
