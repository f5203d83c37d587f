//! Several hosts on one machine: each host is a Linux network namespace with one interface, `eth0`,
//! joined by a veth pair to a bridge in a "switch" namespace (`ip netns`, `ip link`; needs root and
//! Debian's `iproute2`). A host's link is cut by taking its switch port down, as a pulled cable
//! would: its address stays, its packets go nowhere, TCP retransmits until the link returns.
//!
//! Addresses come from 198.18.0.0/24, the range RFC 2544 sets aside for benchmarking network
//! devices; the namespaces have no route anywhere else, so no packet of a test can leave them.
//! Used by `vigil bench --cluster` and the multi-host test (`tests/tests/fleet_hosts.rs`).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The namespaces' names start with this, then the owning process id (stale ones, left by a killed
/// run, are removed by the next [`Lan::new`]).
const PREFIX: &str = "vgl";

/// One host of a [`Lan`].
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name given to [`Lan::add_host`].
    pub name: String,
    /// The network namespace.
    pub ns: String,
    pub addr: Ipv4Addr,
    /// The switch's port (veth) of this host, in the switch namespace.
    port: String,
}

impl Host {
    /// `program` to run inside this host (`ip netns exec NS program`; the program replaces `ip`,
    /// so killing the child kills the program).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs `f` on a thread that entered this host's namespace (its sockets are the host's).
    pub fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        within(&self.ns, f)
    }
}

/// Runs `f` on a thread that entered network namespace `ns` (`ip netns`' `/run/netns/NS`): its
/// sockets are the namespace's.
pub fn within<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns(2) on an open namespace file; it changes only this thread's network
        // namespace, and the thread ends after `f`.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "a thread inside the namespace panicked".to_string())?
}

/// A switch and its hosts; every namespace is removed on drop.
#[derive(Debug)]
pub struct Lan {
    prefix: String,
    switch: String,
    hosts: Vec<Host>,
}

/// Runs `ip ARGS`, or says which command failed and why.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "ip {}: cannot start: {e} (Debian package iproute2)",
                args.join(" ")
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces left by runs whose process is gone.
fn stale_namespaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| {
            let Some(rest) = n.strip_prefix(PREFIX) else {
                return false;
            };
            let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .collect()
}

impl Lan {
    /// Whether namespaces can be made here (root and `ip`); the reason when not.
    pub fn check() -> Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root (ip netns add)".into());
        }
        ip(&["-V"])
    }

    /// A switch (a bridge in namespace `vgl<pid><tag>-sw`) without hosts.
    pub fn new(tag: &str) -> Result<Lan, String> {
        Lan::check()?;
        for ns in stale_namespaces() {
            let _ = ip(&["netns", "del", &ns]);
        }
        let prefix = format!("{PREFIX}{}{tag}", std::process::id());
        let lan = Lan {
            switch: format!("{prefix}-sw"),
            prefix,
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &lan.switch])?;
        let sw = lan.switch.as_str();
        ip(&["-n", sw, "link", "set", "lo", "up"])?;
        ip(&["-n", sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        Ok(lan)
    }

    /// Adds host `name` (letters, digits, `-`) at the next address, 198.18.0.10 for the first.
    pub fn add_host(&mut self, name: &str) -> Result<Host, String> {
        let k = self.hosts.len();
        if k >= 200 {
            return Err("a Lan holds at most 200 hosts".into());
        }
        let host = Host {
            name: name.to_string(),
            ns: format!("{}-{name}", self.prefix),
            addr: Ipv4Addr::new(198, 18, 0, 10 + k as u8),
            port: format!("p{k}"),
        };
        ip(&["netns", "add", &host.ns])?;
        // Pushed before the links exist, so that drop removes the namespace if a step fails.
        self.hosts.push(host.clone());
        let (ns, sw) = (host.ns.as_str(), self.switch.as_str());
        ip(&[
            "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &host.port,
            "netns", sw,
        ])?;
        ip(&["-n", sw, "link", "set", &host.port, "master", "br0"])?;
        ip(&["-n", sw, "link", "set", &host.port, "up"])?;
        let cidr = format!("{}/24", host.addr);
        ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// Cuts `host`'s link (its switch port down).
    pub fn cut(&self, host: &Host) -> Result<(), String> {
        ip(&["-n", &self.switch, "link", "set", &host.port, "down"])
    }

    /// Restores `host`'s link.
    pub fn restore(&self, host: &Host) -> Result<(), String> {
        ip(&["-n", &self.switch, "link", "set", &host.port, "up"])
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_reach_each_other_and_a_cut_link_carries_nothing() {
        if let Err(why) = Lan::check() {
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("SKIPPED: {why}");
            return;
        }
        let mut lan = Lan::new("t").unwrap();
        let a = lan.add_host("a").unwrap();
        let b = lan.add_host("b").unwrap();
        assert_eq!(a.addr, Ipv4Addr::new(198, 18, 0, 10));
        let listener = b
            .within(|| std::net::TcpListener::bind("198.18.0.11:0"))
            .unwrap()
            .unwrap();
        let to = listener.local_addr().unwrap();
        let connect = move || {
            std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_millis(500)).is_ok()
        };
        assert!(a.within(connect).unwrap(), "a reaches b");
        lan.cut(&b).unwrap();
        assert!(!a.within(connect).unwrap(), "a does not reach b while cut");
        lan.restore(&b).unwrap();
        let mut ok = false;
        for _ in 0..20 {
            if a.within(connect).unwrap() {
                ok = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(ok, "a reaches b again");
        let ns = a.ns.clone();
        drop(lan);
        assert!(!std::path::Path::new(&format!("/run/netns/{ns}")).exists());
    }
}
