//! Loopback port allocation for the processes a cluster runs.
//!
//! [`PortPlan`] says whether a cluster uses fixed ports (the playground: 2379, 20160+i,
//! 20180+i) or free ones picked at start. Free ports come from [`free_port`]: bind
//! `127.0.0.1:0`, read the port, release it. The port is remembered for the life of the test
//! process so two clusters in one process never get the same one; a port another process grabs
//! between release and the child's bind shows up as "address in use" in the child's log, and the
//! cluster then picks again (see `cluster.rs`).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};

/// How a cluster chooses its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortPlan {
    /// Free loopback ports picked when each process starts.
    Free,
    /// Fixed ports: placement on `pd`, store `i` on `store_base + i` with status
    /// `status_base + i`.
    Fixed {
        pd: u16,
        store_base: u16,
        status_base: u16,
    },
}

impl PortPlan {
    /// The ports TiKV and PD use by default: 2379, 20160+i, 20180+i.
    pub const DEFAULTS: PortPlan = PortPlan::Fixed {
        pd: 2379,
        store_base: 20160,
        status_base: 20180,
    };

    /// The placement port, or a free one.
    pub(crate) fn pd_port(&self) -> Result<u16> {
        match *self {
            PortPlan::Free => free_port(),
            PortPlan::Fixed { pd, .. } => Ok(pd),
        }
    }

    /// `(client, peer)` ports for placement member `index` of a group: `pd + 2i` and
    /// `pd + 2i + 1` (2379/2380, 2381/2382, ...), or free ones.
    pub(crate) fn placement_ports(&self, index: usize) -> Result<(u16, u16)> {
        match *self {
            PortPlan::Free => Ok((free_port()?, free_port()?)),
            PortPlan::Fixed { pd, .. } => {
                let client = offset(pd, index * 2)?;
                Ok((client, offset(client, 1)?))
            }
        }
    }

    /// `(grpc, status)` ports for store `index`, or free ones.
    pub(crate) fn store_ports(&self, index: usize) -> Result<(u16, u16)> {
        match *self {
            PortPlan::Free => Ok((free_port()?, free_port()?)),
            PortPlan::Fixed {
                store_base,
                status_base,
                ..
            } => Ok((offset(store_base, index)?, offset(status_base, index)?)),
        }
    }

    /// Whether a collision can be fixed by picking again.
    pub(crate) fn can_repick(&self) -> bool {
        matches!(self, PortPlan::Free)
    }
}

fn offset(base: u16, index: usize) -> Result<u16> {
    u16::try_from(index)
        .ok()
        .and_then(|i| base.checked_add(i))
        .ok_or_else(|| {
            Error::Ports(std::io::Error::other(format!(
                "port {base} + {index} is out of range"
            )))
        })
}

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that was free a moment ago and that this process has not handed out before.
pub fn free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::Ports)?;
        let port = listener.local_addr().map_err(Error::Ports)?.port();
        drop(listener);
        let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Ports(std::io::Error::other(
        "64 attempts returned ports already handed out",
    )))
}

/// Whether something accepts TCP connections on `host:port`.
pub(crate) async fn is_listening(host: Ipv4Addr, port: u16) -> bool {
    let addr = SocketAddr::from((host, port));
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        assert!(TcpListener::bind(("127.0.0.1", a)).is_ok());
    }

    #[test]
    fn fixed_plan_offsets_by_index() {
        let plan = PortPlan::DEFAULTS;
        assert_eq!(plan.pd_port().unwrap(), 2379);
        assert_eq!(plan.store_ports(0).unwrap(), (20160, 20180));
        assert_eq!(plan.store_ports(2).unwrap(), (20162, 20182));
        assert!(!plan.can_repick());
    }

    #[test]
    fn fixed_plan_rejects_overflow() {
        let plan = PortPlan::Fixed {
            pd: 1,
            store_base: u16::MAX,
            status_base: 1,
        };
        assert!(plan.store_ports(1).is_err());
    }
}
