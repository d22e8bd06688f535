//! Pods on a private bridge: one network namespace per pod, as a container runtime gives each
//! Kubernetes pod its own network stack, so every pod binds the same fixed ports (2379, 20160)
//! and is reached by its own address.
//!
//! [`PodNet`] owns a bridge on a private `/24` (`10.213.<n>.0/24`) and one namespace per pod,
//! joined to the bridge by a veth pair whose pod end is renamed `eth0`. The bridge lives in a
//! namespace of its own (`fkv<pid>-bridge`), like a node's: when `br_netfilter` is loaded, bridged
//! traffic goes through the iptables `FORWARD` chain of the bridge's namespace, and the host's
//! (a `DROP` policy wherever Docker runs) would cut the pods off from each other; the bridge's
//! own namespace has empty tables. The host joins the bridge through one more veth pair, holding
//! `.1`, so the test process reaches every pod at its address.
//! [`PodNet::write_hosts`] plays cluster DNS: it writes `/etc/netns/<ns>/hosts` for every pod,
//! which `ip netns exec` bind-mounts over `/etc/hosts`. [`command`] turns a program and
//! its arguments into the command that runs it inside a pod: `ip netns exec <ns> ...`, wrapped in
//! a private mount namespace (`unshare --mount`) when the pod has volumes, which are then
//! bind-mounted at their mount paths as the kubelet does, so every pod sees its own volume at the
//! same path. [`skip_reason`] says why a machine cannot do this (not root, no `ip`, no netns).
//!
//! Names derive from the test process's pid (namespaces `fkv<pid>-<pod>`, links `fkv<pid>...`),
//! and the `/24` is one no interface uses yet. Dropping a `PodNet` deletes the namespaces (and
//! with them the bridge and every veth pair), the `/etc/netns` entries and the mount points it
//! created, also while panicking; mount points are left in place while another run's namespaces
//! exist, since it may be mounting on them. It runs blocking commands: build and drop it off the
//! async runtime's threads (`spawn_blocking`), or where blocking is harmless.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// First two octets of every pod subnet.
const SUBNET_PREFIX: [u8; 2] = [10, 213];
/// Host part of the first pod's address; the host's bridge address is `.1`.
const FIRST_POD_HOST: u8 = 10;
/// Where `ip netns exec` looks for per-namespace `/etc` files.
const ETC_NETNS: &str = "/etc/netns";
/// Shell that applies the bind mounts given as `source target ro|rw` triples up to `--`, then
/// execs the rest: it runs inside `unshare --mount --propagation private`, so the mounts are
/// seen by this pod's process only.
const MOUNT_SCRIPT: &str = r#"while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
mount --bind "$1" "$2" || exit 111
if [ "$3" = ro ]; then mount -o remount,bind,ro "$2" || exit 111; fi
shift 3
done
shift
exec "$@""#;

/// Why pods in network namespaces cannot run here, or `None` if they can: the caller skips.
pub fn skip_reason() -> Option<String> {
    match std::fs::metadata("/proc/self") {
        Ok(meta) if std::os::unix::fs::MetadataExt::uid(&meta) == 0 => {}
        Ok(_) => return Some("not running as root (network namespaces need it)".to_owned()),
        Err(e) => return Some(format!("cannot tell the effective user (/proc/self: {e})")),
    }
    if let Err(e) = run("ip", &["-V"]) {
        return Some(format!("the `ip` command (iproute2) is not usable: {e}"));
    }
    let probe = format!("fkv{}-probe", std::process::id());
    if let Err(e) = run("ip", &["netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let _ = run("ip", &["netns", "del", &probe]);
    None
}

/// The first host number from `next` up (wrapping round to [`FIRST_POD_HOST`]) not in `used`.
fn next_free_host(next: u8, used: &[u8]) -> Option<u8> {
    (next..255)
        .chain(FIRST_POD_HOST..next)
        .find(|h| !used.contains(h))
}

/// One pod's namespace and address.
#[derive(Clone, Debug)]
pub struct NetPod {
    /// The pod's name, e.g. `basic-store-0`.
    pub name: String,
    /// Its network namespace, for `ip netns exec`.
    pub netns: String,
    /// Its address on the bridge.
    pub ip: Ipv4Addr,
}

/// A volume of a pod: `source` (a host directory) appears at `target` inside the pod.
#[derive(Clone, Debug)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The bridge, the pods' namespaces and everything else that must be removed afterwards.
#[derive(Debug)]
pub struct PodNet {
    tag: String,
    /// The namespace holding the bridge.
    bridge_ns: String,
    bridge: String,
    /// The host's end of its veth pair into the bridge.
    host_link: String,
    subnet: u8,
    pods: Vec<NetPod>,
    /// Where the search for a free address starts: addresses go round the /24 and are not
    /// reused until it wraps, so a restarted pod never takes an address another pod had
    /// seconds before (connections and name lookups may still point at the old owner).
    next_host: u8,
    /// Directories created on the host (`/etc/netns`, mount points), removed in reverse order
    /// if still empty.
    created_dirs: Vec<PathBuf>,
    /// The hosts file last written, given to pods added later.
    hosts: Option<String>,
}

impl PodNet {
    /// Creates the bridge (in its own namespace) on a free `10.213.<n>.0/24` and joins the host
    /// to it with the `.1` address.
    pub fn create() -> Result<PodNet> {
        let pid = std::process::id();
        let tag = format!("fkv{pid}");
        let used = run("ip", &["-o", "-4", "addr", "show"])?;
        // Bounded search for a /24 no interface is on, starting from one the pid picks.
        let subnet = (0..200u32)
            .map(|i| 20 + ((pid + i) % 200) as u8)
            .find(|n| !used.contains(&format!(" {}.{}.{n}.", SUBNET_PREFIX[0], SUBNET_PREFIX[1])))
            .ok_or_else(|| Error::Command {
                command: "pick a subnet".to_owned(),
                reason: "every 10.213.20-219.0/24 is in use".to_owned(),
            })?;
        let net = PodNet {
            bridge_ns: format!("{tag}-bridge"),
            bridge: format!("{tag}br"),
            host_link: format!("{tag}h"),
            tag,
            subnet,
            pods: Vec::new(),
            next_host: FIRST_POD_HOST,
            created_dirs: Vec::new(),
            hosts: None,
        };
        run("ip", &["netns", "add", &net.bridge_ns])?;
        let (bridge_ns, bridge) = (net.bridge_ns.as_str(), net.bridge.as_str());
        ip_in(bridge_ns, &["link", "add", bridge, "type", "bridge"])?;
        ip_in(bridge_ns, &["link", "set", bridge, "up"])?;
        let inner = format!("{}b", net.tag);
        let peer = ["peer", "name", &inner, "netns", bridge_ns];
        let add = ["link", "add", &net.host_link, "type", "veth"];
        run("ip", &[&add[..], &peer[..]].concat())?;
        ip_in(bridge_ns, &["link", "set", &inner, "master", bridge, "up"])?;
        let host = format!("{}/24", net.host_ip());
        run("ip", &["addr", "add", &host, "dev", &net.host_link])?;
        run("ip", &["link", "set", &net.host_link, "up"])?;
        Ok(net)
    }

    /// The host's address on the bridge: the test process reaches pods from it.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.addr(1)
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.subnet, host)
    }

    /// The pods added so far.
    pub fn pods(&self) -> &[NetPod] {
        &self.pods
    }

    /// A namespace for pod `name` with the next free address in turn, joined to the bridge; it gets
    /// the hosts file last written. Pod `name` added before (and not removed) gets its own
    /// namespace and address back.
    pub fn add_pod(&mut self, name: &str) -> Result<NetPod> {
        // A pod set up before (its node agent crashed and came back) keeps its sandbox.
        if let Some(pod) = self.pods.iter().find(|p| p.name == name) {
            return Ok(pod.clone());
        }
        let used: Vec<u8> = self.pods.iter().map(|p| p.ip.octets()[3]).collect();
        let host = next_free_host(self.next_host, &used).ok_or_else(|| Error::Command {
            command: format!("add pod {name}"),
            reason: "the /24 has no address left".to_owned(),
        })?;
        let pod = NetPod {
            name: name.to_owned(),
            netns: format!("{}-{name}", self.tag),
            ip: self.addr(host),
        };
        self.next_host = host
            .checked_add(1)
            .filter(|h| *h < 255)
            .unwrap_or(FIRST_POD_HOST);
        run("ip", &["netns", "add", &pod.netns])?;
        // Recorded before the links exist, so a failure below still deletes the namespace.
        self.pods.push(pod.clone());
        // Both ends are created inside namespaces, so deleting those removes them; the names
        // follow the address, which no two live pods share.
        let (outer, inner) = (
            format!("{}p{host}", self.tag),
            format!("{}q{host}", self.tag),
        );
        let peer = ["peer", "name", &inner, "netns", &pod.netns];
        ip_in(
            &self.bridge_ns,
            &[&["link", "add", &outer, "type", "veth"], &peer[..]].concat(),
        )?;
        ip_in(
            &self.bridge_ns,
            &["link", "set", &outer, "master", &self.bridge, "up"],
        )?;
        ip_in(&pod.netns, &["link", "set", &inner, "name", "eth0"])?;
        ip_in(
            &pod.netns,
            &["addr", "add", &format!("{}/24", pod.ip), "dev", "eth0"],
        )?;
        ip_in(&pod.netns, &["link", "set", "eth0", "up"])?;
        ip_in(&pod.netns, &["link", "set", "lo", "up"])?;
        if let Some(text) = self.hosts.clone() {
            self.write_hosts_of(&pod, &text)?;
        }
        Ok(pod)
    }

    /// Deletes pod `name`'s namespace (and with it its link) and frees its address.
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        let Some(at) = self.pods.iter().position(|p| p.name == name) else {
            return Ok(());
        };
        let pod = self.pods.remove(at);
        let etc = Path::new(ETC_NETNS).join(&pod.netns);
        let _ = std::fs::remove_file(etc.join("hosts"));
        let _ = std::fs::remove_dir(&etc);
        run("ip", &["netns", "del", &pod.netns]).map(drop)
    }

    /// Writes the same hosts file for every pod (and every pod added later): `localhost` plus
    /// one line per address with all its names. Files are rewritten in place, so a running
    /// pod (whose `/etc/hosts` is a bind mount of its file) sees the change.
    pub fn write_hosts(&mut self, entries: &[(Ipv4Addr, Vec<String>)]) -> Result<()> {
        let mut text = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
        for (ip, names) in entries {
            text.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        for pod in self.pods.clone() {
            self.write_hosts_of(&pod, &text)?;
        }
        self.hosts = Some(text);
        Ok(())
    }

    fn write_hosts_of(&mut self, pod: &NetPod, text: &str) -> Result<()> {
        let dir = Path::new(ETC_NETNS).join(&pod.netns);
        self.create_dir(&dir)?;
        let file = dir.join("hosts");
        std::fs::write(&file, text).map_err(|e| Error::io(&file, e))
    }

    /// Makes sure `target` exists as a directory to mount on, remembering what it created so
    /// that drop removes it. An error means the path cannot serve as a mount point here.
    pub fn mount_point(&mut self, target: &Path) -> Result<()> {
        self.create_dir(target)
    }

    fn create_dir(&mut self, dir: &Path) -> Result<()> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.exists())
            .map(Path::to_path_buf)
            .collect();
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).map_err(|e| Error::io(&d, e))?;
            self.created_dirs.push(d);
        }
        if dir.is_dir() {
            Ok(())
        } else {
            Err(Error::io(dir, std::io::ErrorKind::NotADirectory.into()))
        }
    }
}

/// Program and arguments that run `program args` inside `pod`, with `mounts` bind-mounted
/// (mount points must exist: see [`PodNet::mount_point`]). The process execs through the
/// wrappers, so its pid is the program's.
pub fn command(
    pod: &NetPod,
    mounts: &[BindMount],
    program: &Path,
    args: &[String],
) -> (PathBuf, Vec<String>) {
    let mut inner = vec!["ip".to_owned(), "netns".into(), "exec".into()];
    inner.push(pod.netns.clone());
    inner.push(program.display().to_string());
    inner.extend(args.iter().cloned());
    if mounts.is_empty() {
        return (PathBuf::from("ip"), inner[1..].to_vec());
    }
    let mut out: Vec<String> = ["--mount", "--propagation", "private", "--", "sh", "-c"]
        .map(str::to_owned)
        .to_vec();
    out.push(MOUNT_SCRIPT.to_owned());
    out.push("sh".to_owned());
    for m in mounts {
        out.push(m.source.display().to_string());
        out.push(m.target.display().to_string());
        out.push(if m.read_only { "ro" } else { "rw" }.to_owned());
    }
    out.push("--".to_owned());
    out.extend(inner);
    (PathBuf::from("unshare"), out)
}

impl Drop for PodNet {
    fn drop(&mut self) {
        for pod in &self.pods {
            if let Err(e) = run("ip", &["netns", "del", &pod.netns]) {
                eprintln!("netns cleanup: {e}");
            }
            let etc = Path::new(ETC_NETNS).join(&pod.netns);
            let _ = std::fs::remove_file(etc.join("hosts"));
        }
        // Deleting the bridge's namespace destroys the bridge and its veth ends, and with them
        // their peers (the host's link included).
        if let Err(e) = run("ip", &["netns", "del", &self.bridge_ns]) {
            eprintln!("netns cleanup: {e}");
        }
        let _ = run("ip", &["link", "del", &self.host_link]);
        // Removing a directory another mount namespace mounts on detaches that mount there: a
        // concurrent run that found our mount points and uses them keeps them.
        let others_live = run("ip", &["netns", "list"])
            .map(|list| {
                list.lines()
                    .any(|l| l.starts_with("fkv") && !l.starts_with(&format!("{}-", self.tag)))
            })
            .unwrap_or(true);
        for dir in self.created_dirs.iter().rev() {
            if others_live && !dir.starts_with(ETC_NETNS) {
                eprintln!(
                    "netns cleanup: leaving {} to a concurrent run",
                    dir.display()
                );
                continue;
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `ip -n <netns> args...`.
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<String> {
    run("ip", &[&["-n", netns][..], args].concat())
}

/// `tc -n <netns> args...`.
pub(crate) fn tc_in(netns: &str, args: &[&str]) -> Result<String> {
    run("tc", &[&["-n", netns][..], args].concat())
}

/// Runs a setup command to completion; its stdout, or an error with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> NetPod {
        NetPod {
            name: "p-0".into(),
            netns: "fkv1-p-0".into(),
            ip: Ipv4Addr::new(10, 213, 30, 10),
        }
    }

    #[test]
    fn addresses_go_round_the_subnet_before_one_is_reused() {
        // A pod removed at .10 does not give its address to the next pod...
        assert_eq!(next_free_host(12, &[11]), Some(12));
        // ...until the range wraps, and then only free ones are taken.
        assert_eq!(next_free_host(254, &[254]), Some(FIRST_POD_HOST));
        assert_eq!(next_free_host(254, &[254, 10, 11]), Some(12));
        let all: Vec<u8> = (FIRST_POD_HOST..255).collect();
        assert_eq!(next_free_host(FIRST_POD_HOST, &all), None);
    }

    #[test]
    fn without_volumes_the_command_is_ip_netns_exec() {
        let (program, args) = command(&pod(), &[], Path::new("/bin/store"), &["--x=1".into()]);
        assert_eq!(program, PathBuf::from("ip"));
        assert_eq!(args, ["netns", "exec", "fkv1-p-0", "/bin/store", "--x=1"]);
    }

    #[test]
    fn volumes_are_mounted_in_a_private_mount_namespace() {
        let mounts = [BindMount {
            source: "/tmp/a".into(),
            target: "/etc/store".into(),
            read_only: true,
        }];
        let (program, args) = command(&pod(), &mounts, Path::new("/bin/store"), &[]);
        assert_eq!(program, PathBuf::from("unshare"));
        let dashes: Vec<usize> = (0..args.len()).filter(|&i| args[i] == "--").collect();
        assert_eq!(dashes.len(), 2, "{args:?}");
        let after = &args[dashes[1] + 1..];
        assert_eq!(after, ["ip", "netns", "exec", "fkv1-p-0", "/bin/store"]);
        let triple = &args[dashes[1] - 3..dashes[1]];
        assert_eq!(triple, ["/tmp/a", "/etc/store", "ro"]);
    }
}
