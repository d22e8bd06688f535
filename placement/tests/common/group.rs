//! A group of placement members in this process (real raft over gRPC on loopback, real
//! RocksDB), for the high-availability tests: start, find the leader, stop and restart
//! members.

use std::future;
use std::time::Duration;

use placement::{Config, RunningServer};
use proto::pdpb::pd_client::PdClient;
use testkit::wait;
use tonic::transport::Channel;

/// A free loopback port (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// The config of member `name` of a group started from `initial`.
pub fn member_config(
    dir: &std::path::Path,
    name: &str,
    client: u16,
    peer: u16,
    initial: &str,
) -> Config {
    Config {
        name: name.into(),
        client_urls: format!("http://127.0.0.1:{client}"),
        peer_urls: format!("http://127.0.0.1:{peer}"),
        initial_cluster: Some(initial.to_owned()),
        data_dir: Some(dir.to_path_buf()),
        ..Config::default()
    }
}

pub struct Group {
    pub dirs: Vec<tempfile::TempDir>,
    pub configs: Vec<Config>,
    pub servers: Vec<Option<RunningServer>>,
}

impl Group {
    /// Starts `n` members `pd0..pd{n-1}` with the default config.
    pub async fn start(n: usize) -> Group {
        Group::start_with(n, |_| {}).await
    }

    /// Starts `n` members, each config changed by `tune` first.
    pub async fn start_with(n: usize, tune: impl Fn(&mut Config)) -> Group {
        super::init_logging();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("pd{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let dirs: Vec<_> = (0..n)
            .map(|_| tempfile::tempdir().expect("a temp dir"))
            .collect();
        let configs: Vec<Config> = (0..n)
            .map(|i| {
                let (client, peer) = ports[i];
                let name = format!("pd{i}");
                let mut config = member_config(dirs[i].path(), &name, client, peer, &initial);
                tune(&mut config);
                config
            })
            .collect();
        let started =
            futures::future::join_all(configs.iter().cloned().map(placement::start)).await;
        let servers = started
            .into_iter()
            .map(|s| Some(s.expect("member starts")))
            .collect();
        Group {
            dirs,
            configs,
            servers,
        }
    }

    /// Waits until exactly one running member serves as leader; returns its index.
    pub async fn leader(&self, timeout: Duration) -> usize {
        wait::for_("a single leader among the running members")
            .within(timeout)
            .every(Duration::from_millis(50))
            .until_ok(|| {
                let leaders: Vec<usize> = self
                    .servers
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.as_ref().is_some_and(|s| s.state().is_leader()))
                    .map(|(i, _)| i)
                    .collect();
                future::ready(match leaders[..] {
                    [leader] => Ok(leader),
                    _ => Err(format!("leaders {leaders:?}")),
                })
            })
            .await
            .unwrap_or_else(|timeout| panic!("{timeout}"))
    }

    pub fn server(&self, i: usize) -> &RunningServer {
        self.servers[i].as_ref().expect("member runs")
    }

    pub async fn stop(&mut self, i: usize) {
        self.servers[i]
            .take()
            .expect("member runs")
            .stop()
            .await
            .expect("member stops");
    }

    pub async fn restart(&mut self, i: usize) {
        let server = placement::start(self.configs[i].clone())
            .await
            .expect("member restarts");
        self.servers[i] = Some(server);
    }

    /// Stops every member still running.
    pub async fn stop_all(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// A PD client of one member.
pub async fn client(server: &RunningServer) -> PdClient<Channel> {
    PdClient::connect(server.url())
        .await
        .expect("connect to a placement member")
}
