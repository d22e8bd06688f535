//! Leader election over a `coordination.k8s.io/v1` Lease, so two operator replicas can run and
//! only one reconciles. [`decide`] is the pure rule; [`LeaseLock`] reads and writes the Lease,
//! relying on `resourceVersion` so two candidates cannot both win one round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tracing::{info, warn};

use crate::Result;

/// What a candidate should do with the Lease as it finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder stopped renewing: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease.
    Wait { holder: String },
}

/// The rule: a lease not renewed within its duration is free.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    let ttl = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec.renew_time.as_ref().map(|t| t.0.as_second());
    match renewed {
        Some(at) if !holder.is_empty() && now.as_second() < at + ttl => Decision::Wait {
            holder: holder.to_owned(),
        },
        _ => Decision::Acquire,
    }
}

/// One candidate's handle on the Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    ttl: Duration,
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, ttl: Duration) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            ttl,
        }
    }

    /// Tries once to take or renew the Lease; true when we hold it afterwards.
    pub async fn try_hold(&self) -> Result<bool> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let Decision::Wait { holder } = &decision else {
            let mut spec = current
                .as_ref()
                .and_then(|l| l.spec.clone())
                .unwrap_or_default();
            if decision == Decision::Acquire {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                info!(identity = %self.identity, lease = %self.name, "acquiring leadership");
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.lease_duration_seconds = Some(self.ttl.as_secs() as i32);
            spec.renew_time = Some(MicroTime(now));
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    resource_version: current
                        .as_ref()
                        .and_then(|l| l.metadata.resource_version.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            let pp = PostParams::default();
            let written = match current {
                None => self.api.create(&pp, &lease).await,
                Some(_) => self.api.replace(&self.name, &pp, &lease).await,
            };
            return match written {
                Ok(_) => Ok(true),
                // Someone else wrote first (409 Conflict): they won this round.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        tracing::debug!(%holder, "another replica leads");
        Ok(false)
    }

    /// Blocks until this replica holds the Lease.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match self.try_hold().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.ttl / 3).await;
        }
    }

    /// Renews every third of the lease duration; returns when leadership is lost (a renewal
    /// that does not land within the lease duration).
    pub async fn keep(&self) {
        let mut last_held = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.ttl / 3).await;
            match self.try_hold().await {
                Ok(true) => last_held = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => warn!(error = %e, "lease renewal failed"),
            }
            if last_held.elapsed() >= self.ttl {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn free_or_expired_lease_is_acquired() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(100)),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&spec("b", 80)), "a", at(100)),
            Decision::Acquire
        );
    }

    #[test]
    fn live_lease_of_another_is_respected() {
        assert_eq!(
            decide(Some(&spec("b", 90)), "a", at(100)),
            Decision::Wait { holder: "b".into() }
        );
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(decide(Some(&spec("a", 1)), "a", at(100)), Decision::Renew);
    }
}
