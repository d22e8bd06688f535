//! RawKV commands: plain key-value pairs, optionally with a TTL.
//!
//! Raw keys live in the column family the client names, in the namespace of
//! their API version (`crate::data_keys::RawSpace`), apart from transactional data.
//! A stored raw value is `[flags][expire-at secs, if flagged][value]`.

use proto::kvrpcpb;

use super::region::{Checked, KeyMode};
use super::{InvalidRequest, Result, Storage};
use crate::clock::now_secs;
use crate::data_keys::RawSpace;
use crate::disk::WriteKind;
use crate::engine::{cf_from_name, CfName, Modify, Snapshot};
use crate::percolator::ResponseBudget;

const FLAG_TTL: u8 = 1;
/// Most pairs one scan may ask for (the clients' own limit, as TiKV's).
const MAX_SCAN_LIMIT: usize = 10240;
/// Most ranges one batch scan may name.
const MAX_BATCH_SCAN_RANGES: usize = 1024;

fn check_scan_limit(limit: u32) -> Result<usize> {
    let limit = limit as usize;
    if limit > MAX_SCAN_LIMIT {
        return Err(InvalidRequest::ScanLimit {
            limit,
            max: MAX_SCAN_LIMIT,
        }
        .into());
    }
    Ok(limit)
}

fn encode_value(value: &[u8], ttl: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + 9);
    if ttl > 0 {
        v.push(FLAG_TTL);
        v.extend_from_slice(&now_secs().saturating_add(ttl).to_be_bytes());
    } else {
        v.push(0);
    }
    v.extend_from_slice(value);
    v
}

/// The live value and its remaining TTL (0 = none); None if expired or corrupt.
fn decode_value(stored: &[u8]) -> Option<(&[u8], u64)> {
    let (&flags, rest) = stored.split_first()?;
    if flags & FLAG_TTL == 0 {
        return Some((rest, 0));
    }
    let expire = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let now = now_secs();
    (expire > now).then(|| (&rest[8..], expire - now))
}

fn get_value(
    snap: &Snapshot<'_>,
    space: RawSpace,
    cf: CfName,
    key: &[u8],
) -> Result<Option<(Vec<u8>, u64)>> {
    Ok(snap
        .get_cf(cf, &space.key(key))?
        .and_then(|v| decode_value(&v).map(|(val, ttl)| (val.to_vec(), ttl))))
}

fn cf(name: &str) -> Result<CfName> {
    cf_from_name(name).map_err(|e| InvalidRequest::UnknownCf(e).into())
}

/// Scans live pairs of `[lower, upper)` in order (or reverse order).
#[allow(clippy::too_many_arguments)]
fn scan(
    snap: &Snapshot<'_>,
    space: RawSpace,
    cf: CfName,
    lower: &[u8],
    upper: Option<&[u8]>,
    limit: usize,
    key_only: bool,
    reverse: bool,
    budget: &mut ResponseBudget,
) -> Result<Vec<kvrpcpb::KvPair>> {
    let (lo, hi) = space.bounds(lower, upper);
    let mut cursor = snap.cursor(cf, Some(lo), Some(hi))?;
    if reverse {
        cursor.seek_to_last();
    } else {
        cursor.seek_to_first();
    }
    let mut out = Vec::new();
    while out.len() < limit && cursor.valid()? {
        if let Some((value, _)) = decode_value(cursor.value()) {
            let value_len = if key_only { 0 } else { value.len() };
            budget.charge(cursor.key().len() + value_len)?;
            out.push(kvrpcpb::KvPair {
                key: cursor.key()[1..].to_vec(),
                value: if key_only { vec![] } else { value.to_vec() },
                ..Default::default()
            });
        }
        if reverse {
            cursor.prev();
        } else {
            cursor.next();
        }
    }
    Ok(out)
}

impl Storage {
    fn raw_check<'a>(
        &self,
        ctx: Option<&kvrpcpb::Context>,
        keys: impl IntoIterator<Item = &'a [u8]>,
        allow_empty: bool,
    ) -> Result<Checked> {
        let checked = self.check_context(ctx, KeyMode::Raw)?;
        self.check_keys(&checked, keys, allow_empty)?;
        Ok(checked)
    }

    /// The column family of a raw request; API V2 keeps raw data in the
    /// default one only (TiKV answers a named CF with `CfDeprecated`).
    /// The column family and key namespace a raw request writes or reads.
    fn raw_place(checked: &Checked, cf_name: &str) -> Result<(CfName, RawSpace)> {
        Ok((Self::raw_cf(checked, cf_name)?, Self::raw_space(checked)))
    }

    fn raw_space(checked: &Checked) -> RawSpace {
        if checked.v2 {
            RawSpace::V2
        } else {
            RawSpace::V1
        }
    }

    fn raw_cf(checked: &Checked, name: &str) -> Result<CfName> {
        let cf = cf(name)?;
        if checked.v2 && cf != crate::engine::CF_DEFAULT {
            return Err(InvalidRequest::DeprecatedCf(name.to_owned()).into());
        }
        Ok(cf)
    }

    pub async fn raw_get(&self, req: kvrpcpb::RawGetRequest) -> Result<kvrpcpb::RawGetResponse> {
        let checked = self.raw_check(req.context.as_ref(), [req.key.as_slice()], true)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        self.read(&checked, 0, Vec::new(), move |snap| {
            let v = get_value(snap, space, cf, &req.key)?;
            Ok(kvrpcpb::RawGetResponse {
                not_found: v.is_none(),
                value: v.map(|(v, _)| v).unwrap_or_default(),
                ..Default::default()
            })
        })
        .await
    }

    pub async fn raw_batch_get(
        &self,
        req: kvrpcpb::RawBatchGetRequest,
    ) -> Result<kvrpcpb::RawBatchGetResponse> {
        let checked = self.raw_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            true,
        )?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        self.read(&checked, 0, Vec::new(), move |snap| {
            let mut pairs = Vec::with_capacity(req.keys.len());
            let mut budget = ResponseBudget::default();
            for key in req.keys {
                if let Some((value, _)) = get_value(snap, space, cf, &key)? {
                    budget.charge(key.len() + value.len())?;
                    pairs.push(kvrpcpb::KvPair {
                        key,
                        value,
                        ..Default::default()
                    });
                }
            }
            Ok(kvrpcpb::RawBatchGetResponse {
                pairs,
                ..Default::default()
            })
        })
        .await
    }

    pub async fn raw_get_key_ttl(
        &self,
        req: kvrpcpb::RawGetKeyTtlRequest,
    ) -> Result<kvrpcpb::RawGetKeyTtlResponse> {
        let checked = self.raw_check(req.context.as_ref(), [req.key.as_slice()], true)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        self.read(&checked, 0, Vec::new(), move |snap| {
            let v = get_value(snap, space, cf, &req.key)?;
            Ok(kvrpcpb::RawGetKeyTtlResponse {
                not_found: v.is_none(),
                ttl: v.map(|(_, ttl)| ttl).unwrap_or(0),
                ..Default::default()
            })
        })
        .await
    }

    pub async fn raw_scan(&self, req: kvrpcpb::RawScanRequest) -> Result<kvrpcpb::RawScanResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Raw)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let (lower, upper) = if req.reverse {
            (req.end_key.as_slice(), req.start_key.as_slice())
        } else {
            (req.start_key.as_slice(), req.end_key.as_slice())
        };
        let (lower, upper) = checked.clip(lower, upper);
        let limit = check_scan_limit(req.limit)?;
        self.read(&checked, 0, Vec::new(), move |snap| {
            let kvs = scan(
                snap,
                space,
                cf,
                &lower,
                upper.as_deref(),
                limit,
                req.key_only,
                req.reverse,
                &mut ResponseBudget::default(),
            )?;
            Ok(kvrpcpb::RawScanResponse {
                kvs,
                ..Default::default()
            })
        })
        .await
    }

    pub async fn raw_batch_scan(
        &self,
        req: kvrpcpb::RawBatchScanRequest,
    ) -> Result<kvrpcpb::RawBatchScanResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Raw)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let limit = check_scan_limit(req.each_limit)?;
        if req.ranges.len() > MAX_BATCH_SCAN_RANGES {
            return Err(InvalidRequest::TooManyRanges {
                ranges: req.ranges.len(),
                max: MAX_BATCH_SCAN_RANGES,
            }
            .into());
        }
        let ranges: Vec<_> = req
            .ranges
            .iter()
            .map(|r| {
                let (lo, hi) = if req.reverse {
                    (r.end_key.as_slice(), r.start_key.as_slice())
                } else {
                    (r.start_key.as_slice(), r.end_key.as_slice())
                };
                checked.clip(lo, hi)
            })
            .collect();
        self.read(&checked, 0, Vec::new(), move |snap| {
            let mut kvs = Vec::new();
            let mut budget = ResponseBudget::default();
            for (lo, hi) in ranges {
                kvs.extend(scan(
                    snap,
                    space,
                    cf,
                    &lo,
                    hi.as_deref(),
                    limit,
                    req.key_only,
                    req.reverse,
                    &mut budget,
                )?);
            }
            Ok(kvrpcpb::RawBatchScanResponse {
                kvs,
                ..Default::default()
            })
        })
        .await
    }

    /// Latches `keys`, builds the modifies, replicates them.
    async fn raw_write(
        &self,
        checked: &Checked,
        keys: Vec<Vec<u8>>,
        modifies: Vec<Modify>,
    ) -> Result<()> {
        let _guard = self
            .inner
            .latches
            .acquire(keys.iter().map(Vec::as_slice))
            .await;
        self.propose(&checked.region, None, modifies).await
    }

    pub async fn raw_put(&self, req: kvrpcpb::RawPutRequest) -> Result<kvrpcpb::RawPutResponse> {
        let checked = self.raw_check(req.context.as_ref(), [req.key.as_slice()], true)?;
        self.check_key_sizes([req.key.as_slice()])?;
        self.check_disk(req.context.as_ref(), WriteKind::Grow)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let m = Modify::Put {
            cf,
            key: space.key(&req.key),
            value: encode_value(&req.value, req.ttl),
        };
        self.raw_write(&checked, vec![req.key], vec![m]).await?;
        Ok(kvrpcpb::RawPutResponse::default())
    }

    pub async fn raw_batch_put(
        &self,
        req: kvrpcpb::RawBatchPutRequest,
    ) -> Result<kvrpcpb::RawBatchPutResponse> {
        let checked = self.raw_check(
            req.context.as_ref(),
            req.pairs.iter().map(|p| p.key.as_slice()),
            true,
        )?;
        self.check_key_sizes(req.pairs.iter().map(|p| p.key.as_slice()))?;
        self.check_disk(req.context.as_ref(), WriteKind::Grow)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        if !req.ttls.is_empty() && req.ttls.len() != req.pairs.len() && req.ttls.len() != 1 {
            return Err(InvalidRequest::TtlCount {
                ttls: req.ttls.len(),
                pairs: req.pairs.len(),
            }
            .into());
        }
        let ttl_of = |i: usize| match req.ttls.len() {
            0 => 0,
            1 => req.ttls[0],
            _ => req.ttls[i],
        };
        let modifies = req
            .pairs
            .iter()
            .enumerate()
            .map(|(i, p)| Modify::Put {
                cf,
                key: space.key(&p.key),
                value: encode_value(&p.value, ttl_of(i)),
            })
            .collect();
        let keys = req.pairs.into_iter().map(|p| p.key).collect();
        self.raw_write(&checked, keys, modifies).await?;
        Ok(kvrpcpb::RawBatchPutResponse::default())
    }

    pub async fn raw_delete(
        &self,
        req: kvrpcpb::RawDeleteRequest,
    ) -> Result<kvrpcpb::RawDeleteResponse> {
        let checked = self.raw_check(req.context.as_ref(), [req.key.as_slice()], true)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let m = Modify::Delete {
            cf,
            key: space.key(&req.key),
        };
        self.raw_write(&checked, vec![req.key], vec![m]).await?;
        Ok(kvrpcpb::RawDeleteResponse::default())
    }

    pub async fn raw_batch_delete(
        &self,
        req: kvrpcpb::RawBatchDeleteRequest,
    ) -> Result<kvrpcpb::RawBatchDeleteResponse> {
        let checked = self.raw_check(
            req.context.as_ref(),
            req.keys.iter().map(Vec::as_slice),
            true,
        )?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let modifies = req
            .keys
            .iter()
            .map(|k| Modify::Delete {
                cf,
                key: space.key(k),
            })
            .collect();
        self.raw_write(&checked, req.keys, modifies).await?;
        Ok(kvrpcpb::RawBatchDeleteResponse::default())
    }

    pub async fn raw_delete_range(
        &self,
        req: kvrpcpb::RawDeleteRangeRequest,
    ) -> Result<kvrpcpb::RawDeleteRangeResponse> {
        let checked = self.check_context(req.context.as_ref(), KeyMode::Raw)?;
        checked.check_range(&req.start_key, &req.end_key)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let upper = (!req.end_key.is_empty()).then_some(req.end_key.as_slice());
        let (start, end) = space.bounds(&req.start_key, upper);
        let _guard = self.inner.latches.acquire_all().await;
        self.propose(
            &checked.region,
            None,
            vec![Modify::DeleteRange { cf, start, end }],
        )
        .await?;
        Ok(kvrpcpb::RawDeleteRangeResponse::default())
    }

    pub async fn raw_compare_and_swap(
        &self,
        req: kvrpcpb::RawCasRequest,
    ) -> Result<kvrpcpb::RawCasResponse> {
        let checked = self.raw_check(req.context.as_ref(), [req.key.as_slice()], true)?;
        self.check_key_sizes([req.key.as_slice()])?;
        self.check_disk(req.context.as_ref(), WriteKind::Grow)?;
        let (cf, space) = Self::raw_place(&checked, &req.cf)?;
        let _guard = self.inner.latches.acquire([req.key.as_slice()]).await;
        let key = req.key.clone();
        let (term, current) = self
            .read_in_term(checked.region.id, move |snap| {
                get_value(snap, space, cf, &key)
            })
            .await?;
        let current = current.map(|(v, _)| v);
        let succeed = match &current {
            None => req.previous_not_exist,
            Some(v) => !req.previous_not_exist && *v == req.previous_value,
        };
        if succeed {
            let m = Modify::Put {
                cf,
                key: space.key(&req.key),
                value: encode_value(&req.value, req.ttl),
            };
            self.propose(&checked.region, Some(term), vec![m]).await?;
        }
        Ok(kvrpcpb::RawCasResponse {
            succeed,
            previous_not_exist: current.is_none(),
            previous_value: current.unwrap_or_default(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_encoding_with_and_without_ttl() {
        assert_eq!(decode_value(&encode_value(b"v", 0)), Some((&b"v"[..], 0)));
        let stored = encode_value(b"v", 100);
        let (v, ttl) = decode_value(&stored).unwrap();
        assert_eq!(v, b"v");
        assert!(ttl > 90 && ttl <= 100);
        let mut expired = vec![FLAG_TTL];
        expired.extend_from_slice(&1u64.to_be_bytes());
        assert_eq!(decode_value(&expired), None);
        assert_eq!(decode_value(&[]), None);
        assert_eq!(decode_value(&[FLAG_TTL, 1, 2]), None);
    }
}
