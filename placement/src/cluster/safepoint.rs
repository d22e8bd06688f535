//! GC safe points: the cluster-wide GC safe point, which only moves forward, and the service
//! safe points with which TiDB, BR and CDC hold GC back for a time-to-live, after PD's
//! `SafePointManager`.
//!
//! The `gc_worker` service always has an entry (safe point 0, never expiring, until TiDB's GC
//! worker moves it); a service may only set a safe point at or above the current minimum.

use std::collections::BTreeMap;

use crate::meta::{MetaWrite, ServiceSafePoint};

/// Service id of TiDB's GC worker, which always has a service safe point.
pub const GC_WORKER_SERVICE: &str = "gc_worker";

/// Outcome of a service safe point update.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceUpdate {
    /// Records to persist (empty when the request changed nothing).
    pub writes: Vec<MetaWrite>,
    /// The minimum service safe point after the update, for the response.
    pub min: ServiceSafePoint,
}

/// GC safe point and service safe points.
#[derive(Debug, Clone, Default)]
pub struct SafePoints {
    gc: u64,
    services: BTreeMap<String, ServiceSafePoint>,
}

impl SafePoints {
    pub fn gc(&self) -> u64 {
        self.gc
    }

    /// The safe point after asking for `requested`: the larger of old and new. A write is
    /// returned only when it moves forward.
    pub fn plan_update_gc(&self, requested: u64) -> (u64, Option<MetaWrite>) {
        if requested > self.gc {
            (requested, Some(MetaWrite::GcSafePoint(requested)))
        } else {
            (self.gc, None)
        }
    }

    pub fn set_gc(&mut self, safe_point: u64) {
        self.gc = self.gc.max(safe_point);
    }

    pub fn put_service(&mut self, sp: ServiceSafePoint) {
        self.services.insert(sp.service_id.clone(), sp);
    }

    pub fn remove_service(&mut self, service_id: &str) {
        self.services.remove(service_id);
    }

    /// Live service safe points at `now_secs`, the `gc_worker` entry included.
    pub fn services(&self, now_secs: i64) -> Vec<ServiceSafePoint> {
        let mut out: Vec<ServiceSafePoint> = self
            .services
            .values()
            .filter(|s| s.expire_at > now_secs)
            .cloned()
            .collect();
        if !self.services.contains_key(GC_WORKER_SERVICE) {
            out.push(ServiceSafePoint {
                service_id: GC_WORKER_SERVICE.to_owned(),
                safe_point: 0,
                expire_at: i64::MAX,
            });
        }
        out
    }

    fn min_service(&self, now_secs: i64) -> ServiceSafePoint {
        self.services(now_secs)
            .into_iter()
            .min_by_key(|s| s.safe_point)
            .expect("gc_worker entry always present")
    }

    /// Plans `UpdateServiceGCSafePoint`: `ttl <= 0` removes the service's safe point; otherwise
    /// it is set to expire `ttl` seconds after `now_secs`, unless it is below the minimum.
    pub fn plan_update_service(
        &self,
        service_id: &str,
        safe_point: u64,
        ttl: i64,
        now_secs: i64,
    ) -> ServiceUpdate {
        let mut writes: Vec<MetaWrite> = self
            .services
            .values()
            .filter(|s| s.expire_at <= now_secs)
            .map(|s| MetaWrite::DeleteServiceSafePoint(s.service_id.clone()))
            .collect();
        let mut view = self.clone();
        view.services.retain(|_, s| s.expire_at > now_secs);
        if ttl <= 0 {
            if view.services.remove(service_id).is_some() {
                writes.push(MetaWrite::DeleteServiceSafePoint(service_id.to_owned()));
            }
            return ServiceUpdate {
                writes,
                min: view.min_service(now_secs),
            };
        }
        let min = view.min_service(now_secs);
        if safe_point < min.safe_point {
            return ServiceUpdate { writes, min };
        }
        let expire_at = now_secs.checked_add(ttl).unwrap_or(i64::MAX);
        let sp = ServiceSafePoint {
            service_id: service_id.to_owned(),
            safe_point,
            expire_at,
        };
        view.services.insert(service_id.to_owned(), sp.clone());
        writes.push(MetaWrite::ServiceSafePoint(sp));
        ServiceUpdate {
            writes,
            min: view.min_service(now_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(sp: &mut SafePoints, writes: &[MetaWrite]) {
        for w in writes {
            match w {
                MetaWrite::ServiceSafePoint(s) => sp.put_service(s.clone()),
                MetaWrite::DeleteServiceSafePoint(id) => sp.remove_service(id),
                MetaWrite::GcSafePoint(v) => sp.set_gc(*v),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn gc_safe_point_only_moves_forward() {
        let mut sp = SafePoints::default();
        let cases = [
            (10, 10, true),
            (5, 10, false),
            (10, 10, false),
            (20, 20, true),
        ];
        for (ask, want, writes) in cases {
            let (got, w) = sp.plan_update_gc(ask);
            assert_eq!(got, want, "ask {ask}");
            assert_eq!(w.is_some(), writes, "ask {ask}");
            apply(&mut sp, w.as_slice());
        }
        assert_eq!(sp.gc(), 20);
    }

    #[test]
    fn service_safe_points_follow_min_and_ttl() {
        let mut sp = SafePoints::default();
        // gc_worker sits at 0, so any service may register.
        let up = sp.plan_update_service("cdc", 100, 60, 1000);
        assert_eq!(up.min.service_id, GC_WORKER_SERVICE);
        apply(&mut sp, &up.writes);
        // gc_worker moves above cdc: cdc becomes the minimum.
        let up = sp.plan_update_service(GC_WORKER_SERVICE, 150, i64::MAX, 1000);
        assert_eq!(up.min.service_id, "cdc");
        assert_eq!(up.min.expire_at, 1060);
        apply(&mut sp, &up.writes);
        // Below the minimum: refused, nothing written.
        let up = sp.plan_update_service("br", 50, 60, 1000);
        assert!(up.writes.is_empty());
        assert_eq!(up.min.safe_point, 100);
        // After cdc expires, the minimum is gc_worker again and cdc is deleted.
        let up = sp.plan_update_service("br", 200, 60, 2000);
        assert_eq!(up.min.service_id, GC_WORKER_SERVICE);
        assert!(up
            .writes
            .contains(&MetaWrite::DeleteServiceSafePoint("cdc".into())));
        apply(&mut sp, &up.writes);
        // ttl <= 0 removes.
        let up = sp.plan_update_service("br", 0, 0, 2000);
        assert_eq!(
            up.writes,
            vec![MetaWrite::DeleteServiceSafePoint("br".into())]
        );
    }
}
