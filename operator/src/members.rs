//! Placement member scale and upgrade without losing quorum, decided by pure planners over
//! what placement's PD API reports (`/pd/api/v1/members`, `/pd/api/v1/health`). Nothing is kept
//! between passes: membership and leadership are read afresh each time.
//!
//! - Scale out adds one member at a time: the next pod is created only when every existing pod
//!   is a member and healthy. A new StatefulSet starts all its members at once (they bootstrap
//!   together from `--initial-cluster`).
//! - Scale in removes the highest ordinal first, one member at a time and only while every other
//!   member is healthy: leadership moves away from it if it leads
//!   (`POST /pd/api/v1/leader/transfer/{name}`), then it leaves the cluster
//!   (`DELETE /pd/api/v1/members/name/{name}`), and only once it is gone from the member list
//!   does the StatefulSet shrink. Never below one member.
//! - A rolling upgrade releases one pod at a time by partition, highest ordinal first, after
//!   every member is healthy; a pod that leads hands leadership to another member first.

use crate::builders::{name, Component};
use crate::crd::{PlacementMember, TikvCluster};
use crate::placement::PlacementView;
use crate::upgrade::{Rollout, UpgradeStep};

/// What to do with the placement StatefulSet's replica count this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberStep {
    /// Apply this count (a new StatefulSet, or the spec is met).
    Replicas(i32),
    /// Add one member, `pod`, growing to `replicas`.
    Grow { replicas: i32, pod: String },
    /// Keep `keep` pods and move leadership from `from` to `to` before `from` leaves.
    TransferLeader { keep: i32, from: String, to: String },
    /// Keep `keep` pods and ask placement to remove member `name`.
    DeleteMember { keep: i32, name: String },
    /// Member `pod` has left placement: shrink to `replicas`.
    Remove { replicas: i32, pod: String },
    /// Keep `keep` pods until the cluster allows the next step.
    Wait {
        keep: i32,
        reason: &'static str,
        message: String,
    },
}

impl MemberStep {
    /// The replica count to apply.
    pub fn replicas(&self) -> i32 {
        match self {
            MemberStep::Replicas(n)
            | MemberStep::Grow { replicas: n, .. }
            | MemberStep::Remove { replicas: n, .. } => *n,
            MemberStep::TransferLeader { keep, .. }
            | MemberStep::DeleteMember { keep, .. }
            | MemberStep::Wait { keep, .. } => *keep,
        }
    }

    /// Whether the StatefulSet is still moving toward the spec's member count.
    pub fn scaling(&self) -> bool {
        !matches!(self, MemberStep::Replicas(_))
    }
}

/// `<cluster>-placement-<ordinal>`, which is also the member's name (`--name=$(POD_NAME)`).
pub fn member_name(tc: &TikvCluster, ordinal: i32) -> String {
    format!("{}-{ordinal}", name(tc, Component::Placement))
}

fn ordinal_of(tc: &TikvCluster, member: &str) -> Option<i32> {
    let prefix = format!("{}-", name(tc, Component::Placement));
    member.strip_prefix(&prefix)?.parse().ok()
}

fn member<'a>(view: &'a PlacementView, name: &str) -> Option<&'a PlacementMember> {
    view.members.iter().find(|m| m.name == name)
}

/// A healthy member other than `leaving` to take leadership, the highest ordinal first when
/// `highest` (during an upgrade those already run the new revision), the lowest otherwise
/// (during scale-in those stay longest).
fn successor(
    tc: &TikvCluster,
    view: &PlacementView,
    leaving: &str,
    highest: bool,
) -> Option<String> {
    let mut healthy: Vec<_> = view
        .members
        .iter()
        .filter(|m| m.health && m.name != leaving)
        .map(|m| (ordinal_of(tc, &m.name).unwrap_or(i32::MAX), m.name.clone()))
        .collect();
    healthy.sort();
    let pick = if highest {
        healthy.pop()
    } else {
        healthy.into_iter().next()
    };
    pick.map(|(_, name)| name)
}

/// The first member that is not healthy, if any.
fn unhealthy(view: &PlacementView, except: Option<&str>) -> Option<String> {
    view.members
        .iter()
        .find(|m| !m.health && Some(m.name.as_str()) != except)
        .map(|m| m.name.clone())
}

/// The next member scale step, given the placement StatefulSet's current replica count.
pub fn plan_members(
    tc: &TikvCluster,
    running: Option<i32>,
    view: Option<&PlacementView>,
) -> MemberStep {
    let desired = tc.spec.placement.replicas.max(1);
    let Some(running) = running.filter(|r| *r > 0) else {
        return MemberStep::Replicas(desired);
    };
    if running == desired {
        return MemberStep::Replicas(desired);
    }
    let Some(view) = view else {
        return MemberStep::Wait {
            keep: running,
            reason: "MembersWaitingForPlacement",
            message: format!(
                "placement is not answering; placement stays at {running} members until it does"
            ),
        };
    };
    if running < desired {
        for ordinal in 0..running {
            let pod = member_name(tc, ordinal);
            let problem = match member(view, &pod) {
                Some(m) if m.health => continue,
                Some(_) => "is a member but not healthy yet",
                None => "has not joined placement yet",
            };
            return MemberStep::Wait {
                keep: running,
                reason: "ScaleOutWaitingForMember",
                message: format!("{pod} {problem}; the next member waits"),
            };
        }
        return MemberStep::Grow {
            replicas: running + 1,
            pod: member_name(tc, running),
        };
    }
    let target = member_name(tc, running - 1);
    if member(view, &target).is_none() {
        return MemberStep::Remove {
            replicas: running - 1,
            pod: target,
        };
    }
    if let Some(sick) = unhealthy(view, Some(&target)) {
        return MemberStep::Wait {
            keep: running,
            reason: "ScaleInWaitingForHealthyMembers",
            message: format!("{sick} is not healthy; {target} stays so quorum holds"),
        };
    }
    if view.leader.as_deref() == Some(target.as_str()) {
        return match successor(tc, view, &target, false) {
            Some(to) => MemberStep::TransferLeader {
                keep: running,
                from: target,
                to,
            },
            None => MemberStep::Wait {
                keep: running,
                reason: "ScaleInWaitingForHealthyMembers",
                message: format!("no other healthy member can take leadership from {target}"),
            },
        };
    }
    MemberStep::DeleteMember {
        keep: running,
        name: target,
    }
}

/// The next upgrade step for placement. `pods` is how many pods run now; `scaling` holds the
/// roll while members are added or removed.
pub fn plan_member_upgrade(
    tc: &TikvCluster,
    r: &Rollout,
    pods: i32,
    scaling: bool,
    view: Option<&PlacementView>,
) -> UpgradeStep {
    if r.template_changed {
        // Pods that exist keep their revision; pods created from here on get the new one.
        return UpgradeStep::Hold {
            partition: pods.max(0),
            reason: "UpgradeStarting",
        };
    }
    let p = r.partition.min(r.replicas);
    if p == 0 {
        return UpgradeStep::Steady;
    }
    let hold = |reason| UpgradeStep::Hold {
        partition: p,
        reason,
    };
    if scaling {
        return hold("UpgradeWaitingForScale");
    }
    if r.updated < r.replicas - p || r.ready < r.replicas {
        return hold("UpgradeWaitingForReady");
    }
    let Some(view) = view else {
        return hold("UpgradeWaitingForPlacement");
    };
    let all_members = (0..r.replicas).all(|o| member(view, &member_name(tc, o)).is_some());
    if !all_members || unhealthy(view, None).is_some() {
        return hold("UpgradeWaitingForHealthyMembers");
    }
    let ordinal = p - 1;
    let pod = member_name(tc, ordinal);
    if view.leader.as_deref() == Some(pod.as_str()) {
        if let Some(to) = successor(tc, view, &pod, true) {
            return UpgradeStep::TransferLeader {
                partition: p,
                from: pod,
                to,
            };
        }
    }
    UpgradeStep::Restart { ordinal }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::fixtures::cluster;
    use crate::crd::{PlacementSpec, TikvClusterSpec};

    fn tc(replicas: i32) -> TikvCluster {
        cluster(TikvClusterSpec {
            placement: PlacementSpec {
                replicas,
                ..PlacementSpec::default()
            },
            ..TikvClusterSpec::default()
        })
    }

    /// Members 0..n, healthy unless listed in `sick`, led by `leader`.
    fn view(n: i32, sick: &[i32], leader: i32) -> PlacementView {
        let t = tc(1);
        PlacementView {
            members: (0..n)
                .map(|o| PlacementMember {
                    name: member_name(&t, o),
                    member_id: o as u64 + 100,
                    health: !sick.contains(&o),
                    ..PlacementMember::default()
                })
                .collect(),
            leader: Some(member_name(&t, leader)),
            ..PlacementView::default()
        }
    }

    #[test]
    fn a_new_statefulset_starts_every_member() {
        assert_eq!(plan_members(&tc(3), None, None), MemberStep::Replicas(3));
        assert_eq!(plan_members(&tc(3), Some(3), None), MemberStep::Replicas(3));
    }

    #[test]
    fn scale_out_adds_one_member_after_the_previous_is_healthy() {
        let t = tc(5);
        assert_eq!(
            plan_members(&t, Some(3), Some(&view(3, &[], 0))),
            MemberStep::Grow {
                replicas: 4,
                pod: "basic-placement-3".into()
            }
        );
        // Pod 3 runs but has not joined: wait.
        let step = plan_members(&t, Some(4), Some(&view(3, &[], 0)));
        assert_eq!(step.replicas(), 4);
        assert!(
            matches!(&step, MemberStep::Wait { reason: "ScaleOutWaitingForMember", message, .. }
                if message.contains("basic-placement-3 has not joined")),
            "{step:?}"
        );
        // Joined but unhealthy: wait.
        let step = plan_members(&t, Some(4), Some(&view(4, &[3], 0)));
        assert_eq!(step.replicas(), 4);
        // Healthy: the next one.
        assert_eq!(
            plan_members(&t, Some(4), Some(&view(4, &[], 0))).replicas(),
            5
        );
        // Placement silent: nothing grows.
        assert_eq!(plan_members(&t, Some(4), None).replicas(), 4);
    }

    #[test]
    fn scale_in_transfers_leadership_deletes_the_member_then_shrinks() {
        let t = tc(1);
        assert_eq!(
            plan_members(&t, Some(3), Some(&view(3, &[], 2))),
            MemberStep::TransferLeader {
                keep: 3,
                from: "basic-placement-2".into(),
                to: "basic-placement-0".into()
            }
        );
        assert_eq!(
            plan_members(&t, Some(3), Some(&view(3, &[], 0))),
            MemberStep::DeleteMember {
                keep: 3,
                name: "basic-placement-2".into()
            }
        );
        assert_eq!(
            plan_members(&t, Some(3), Some(&view(2, &[], 0))),
            MemberStep::Remove {
                replicas: 2,
                pod: "basic-placement-2".into()
            }
        );
        // Another member unhealthy: removing one more could cost quorum.
        let step = plan_members(&t, Some(3), Some(&view(3, &[1], 0)));
        assert!(
            matches!(
                step,
                MemberStep::Wait {
                    keep: 3,
                    reason: "ScaleInWaitingForHealthyMembers",
                    ..
                }
            ),
            "{step:?}"
        );
        // Never below one, whatever the spec says.
        assert_eq!(plan_members(&tc(0), Some(1), None), MemberStep::Replicas(1));
    }

    fn rollout(partition: i32, updated: i32, ready: i32) -> Rollout {
        Rollout {
            replicas: 3,
            partition,
            template_changed: false,
            updated,
            ready,
        }
    }

    #[test]
    fn upgrade_moves_leadership_off_a_pod_before_it_restarts() {
        let t = tc(3);
        let changed = Rollout {
            template_changed: true,
            ..rollout(0, 3, 3)
        };
        assert_eq!(
            plan_member_upgrade(&t, &changed, 3, false, None).partition(),
            3
        );
        // Pod 2 leads: leadership goes to another member, partition stays.
        assert_eq!(
            plan_member_upgrade(&t, &rollout(3, 0, 3), 3, false, Some(&view(3, &[], 2))),
            UpgradeStep::TransferLeader {
                partition: 3,
                from: "basic-placement-2".into(),
                to: "basic-placement-1".into()
            }
        );
        // Pod 2 no longer leads: it restarts.
        assert_eq!(
            plan_member_upgrade(&t, &rollout(3, 0, 3), 3, false, Some(&view(3, &[], 1))),
            UpgradeStep::Restart { ordinal: 2 }
        );
        // Back but a member is unhealthy: hold.
        assert_eq!(
            plan_member_upgrade(&t, &rollout(2, 1, 3), 3, false, Some(&view(3, &[2], 1))),
            UpgradeStep::Hold {
                partition: 2,
                reason: "UpgradeWaitingForHealthyMembers"
            }
        );
        // Pod 1 leads now; it hands over to pod 2, already upgraded.
        assert_eq!(
            plan_member_upgrade(&t, &rollout(2, 1, 3), 3, false, Some(&view(3, &[], 1))),
            UpgradeStep::TransferLeader {
                partition: 2,
                from: "basic-placement-1".into(),
                to: "basic-placement-2".into()
            }
        );
        // Not ready: hold; scaling: hold.
        assert_eq!(
            plan_member_upgrade(&t, &rollout(2, 1, 2), 3, false, Some(&view(3, &[], 0)))
                .partition(),
            2
        );
        assert_eq!(
            plan_member_upgrade(&t, &rollout(2, 1, 3), 3, true, Some(&view(3, &[], 0))),
            UpgradeStep::Hold {
                partition: 2,
                reason: "UpgradeWaitingForScale"
            }
        );
        assert_eq!(
            plan_member_upgrade(&t, &rollout(0, 3, 3), 3, false, None),
            UpgradeStep::Steady
        );
    }
}
