//! Which local process is behind a page's WebSocket, and whether it may use the bridge.
//!
//! A page's TCP connection on loopback is traced to a process the way `ss -p` does it: the
//! peer's address and port → the client socket's entry in the kernel's TCP table
//! (`/proc/self/net/tcp`, `tcp6`: its inode and the uid that created it) → the processes
//! holding that inode (`/proc/PID/fd/* -> socket:[INODE]`) → each one's executable
//! (`/proc/PID/exe`), command line and uids. Reading other users' `/proc/PID/fd` and `exe`
//! needs `CAP_SYS_PTRACE` (ptrace access mode READ, proc(5)); the system unit grants it.
//!
//! The lookup races with short-lived clients: a process that exits (or closes the socket)
//! before the lookup is [`PeerError::NotFound`], which the bridge treats as a refusal.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use procfs::process::{FDTarget, Process};

/// One process holding the client end of a page's TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerProcess {
    pub pid: i32,
    /// Real and effective uid (`/proc/PID/status`).
    pub ruid: u32,
    pub euid: u32,
    /// `/proc/PID/exe` without the ` (deleted)` suffix the kernel adds after an upgrade
    /// replaced the binary.
    pub exe: PathBuf,
    /// Whether the executable file (as found now at `exe`) is owned by root and writable by
    /// nobody else; `false` when it cannot be checked.
    pub exe_root_owned: bool,
    /// `/proc/PID/cmdline`, argv[0] first (for Electron apps run by a shared `electron`).
    pub cmdline: Vec<String>,
}

/// The client socket of a page's connection and the processes holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSocket {
    pub inode: u64,
    /// The uid that created the socket (the TCP table's `uid` column): whose page this is.
    pub uid: u32,
    /// Every process with a descriptor for the socket (usually one).
    pub holders: Vec<PeerProcess>,
}

/// Why the process behind a connection is not known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No socket of this machine's TCP table (in the bridge's network namespace) has this
    /// address pair: the page is not on this host, or already closed.
    #[error("no local socket {peer} -> {local} (not a local process, or already closed)")]
    NotLocal { local: SocketAddr, peer: SocketAddr },
    /// The socket exists but no process holding it could be found: it exited meanwhile, or
    /// the bridge may not read its `/proc/PID/fd` (needs `CAP_SYS_PTRACE` for other users).
    #[error("no process holds socket inode {inode} (exited, or /proc/PID/fd not readable)")]
    NotFound { inode: u64 },
    /// `/proc` could not be read.
    #[error("cannot read {what}: {message}")]
    Proc { what: &'static str, message: String },
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, a dual-stack listener) compares equal to IPv4.
fn canonical(a: SocketAddr) -> (IpAddr, u16) {
    let ip = match a.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    (ip, a.port())
}

/// Finds the process(es) behind the TCP connection accepted on `local` from `peer`. Blocking
/// (reads `/proc`); run it off the async workers. Takes a few ms on a desktop-sized process
/// table.
pub fn identify(local: SocketAddr, peer: SocketAddr) -> Result<PeerSocket, PeerError> {
    let me = Process::myself().map_err(|e| PeerError::Proc { what: "/proc/self", message: e.to_string() })?;
    let (want_local, want_remote) = (canonical(peer), canonical(local));
    let mut found = None;
    // A v4 client of a dual-stack listener is in `tcp`, a v6 one in `tcp6`; read `tcp6` only
    // when needed.
    for table in [me.tcp(), me.tcp6()] {
        let entries = match table {
            Ok(e) => e,
            // No IPv6 in this kernel or namespace.
            Err(procfs::ProcError::NotFound(_)) => continue,
            Err(e) => return Err(PeerError::Proc { what: "/proc/self/net/tcp", message: e.to_string() }),
        };
        found = entries
            .into_iter()
            .find(|e| canonical(e.local_address) == want_local && canonical(e.remote_address) == want_remote);
        if found.is_some() {
            break;
        }
    }
    let entry = found.ok_or(PeerError::NotLocal { local, peer })?;
    if entry.inode == 0 {
        // The kernel shows inode 0 for a socket whose owner closed it (e.g. TIME_WAIT).
        return Err(PeerError::NotFound { inode: 0 });
    }
    // The socket's own user first (a stat per process instead of reading every fd table),
    // then everyone: a non-dumpable process's /proc/PID belongs to root, not to its user.
    let mut holders = holders_of(entry.inode, Some(entry.uid))?;
    if holders.is_empty() {
        holders = holders_of(entry.inode, None)?;
    }
    if holders.is_empty() {
        return Err(PeerError::NotFound { inode: entry.inode });
    }
    Ok(PeerSocket { inode: entry.inode, uid: entry.uid, holders })
}

/// Processes (only those whose `/proc/PID` belongs to `owner`, if given) holding `inode`.
fn holders_of(inode: u64, owner: Option<u32>) -> Result<Vec<PeerProcess>, PeerError> {
    let all = procfs::process::all_processes()
        .map_err(|e| PeerError::Proc { what: "/proc", message: e.to_string() })?;
    let mut out = Vec::new();
    for p in all.flatten() {
        if owner.is_some_and(|o| p.uid().ok() != Some(o)) {
            continue;
        }
        // Processes that exit meanwhile, or whose fds we may not read, are skipped.
        let Ok(fds) = p.fd() else { continue };
        let holds = fds.flatten().any(|fd| matches!(fd.target, FDTarget::Socket(i) if i == inode));
        if holds && let Some(pp) = describe(&p) {
            out.push(pp);
        }
    }
    Ok(out)
}

fn describe(p: &Process) -> Option<PeerProcess> {
    let status = p.status().ok()?;
    let exe = p.exe().ok()?;
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    };
    Some(PeerProcess {
        pid: p.pid,
        ruid: status.ruid,
        euid: status.euid,
        exe_root_owned: root_owned(&exe),
        exe,
        cmdline: p.cmdline().unwrap_or_default(),
    })
}

/// Owned by root and not writable by group or others: a user cannot have put it there under
/// an allowed name.
fn root_owned(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}

/// Which local processes may open pages, from `[security]` in the config file.
///
/// A rule without `/` (`"chromium"`) matches an executable with that file name, but only one
/// owned by root and writable by nobody else (so `~/bin/chromium` does not pass); a rule with
/// `/` (`"/opt/Foo/foo"`) matches that exact path. An Electron app started through a shared
/// `electron` binary matches an `allowed_electron_apps` entry (an app directory or `.asar`)
/// when the executable's name starts with `electron` and one of its arguments is that path or
/// inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPolicy {
    /// Accept every process (development only): no lookup unless the VC is per-uid.
    pub allow_any: bool,
    pub executables: Vec<String>,
    pub electron_apps: Vec<PathBuf>,
}

/// The default `allowed_executables`: Chromium (Debian runs `/usr/lib/chromium/chromium`),
/// Chrome (`/opt/google/chrome/chrome`), Edge (`/opt/microsoft/msedge/msedge`) and Firefox
/// (`firefox`, Debian's `firefox-esr`, Mozilla's tarball `firefox-bin`).
pub const DEFAULT_ALLOWED_EXECUTABLES: &[&str] =
    &["chromium", "chrome", "msedge", "firefox", "firefox-esr", "firefox-bin"];

impl Default for ProcessPolicy {
    fn default() -> Self {
        ProcessPolicy {
            allow_any: false,
            executables: DEFAULT_ALLOWED_EXECUTABLES.iter().map(|s| s.to_string()).collect(),
            electron_apps: Vec::new(),
        }
    }
}

impl ProcessPolicy {
    /// The rule that admits `p` (e.g. `"chromium"`), or `None`.
    pub fn rule_for(&self, p: &PeerProcess) -> Option<String> {
        let name = p.exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
        for rule in &self.executables {
            let ok =
                if rule.contains('/') { p.exe == Path::new(rule) } else { rule == name && p.exe_root_owned };
            if ok {
                return Some(rule.clone());
            }
        }
        if name.starts_with("electron") {
            for app in &self.electron_apps {
                if p.cmdline.iter().skip(1).any(|a| Path::new(a).starts_with(app)) {
                    return Some(format!("electron app {}", app.display()));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(exe: &str, root_owned: bool, cmdline: &[&str]) -> PeerProcess {
        PeerProcess {
            pid: 1,
            ruid: 1000,
            euid: 1000,
            exe: exe.into(),
            exe_root_owned: root_owned,
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules() {
        let mut p = ProcessPolicy::default();
        assert_eq!(p.rule_for(&proc("/usr/lib/chromium/chromium", true, &[])).as_deref(), Some("chromium"));
        assert_eq!(p.rule_for(&proc("/opt/google/chrome/chrome", true, &[])).as_deref(), Some("chrome"));
        assert_eq!(
            p.rule_for(&proc("/usr/lib/firefox-esr/firefox-esr", true, &[])).as_deref(),
            Some("firefox-esr")
        );
        // A user's own file named like a browser does not pass a name rule.
        assert_eq!(p.rule_for(&proc("/home/u/bin/chromium", false, &[])), None);
        assert_eq!(p.rule_for(&proc("/usr/bin/python3.11", true, &[])), None);
        assert_eq!(p.rule_for(&proc("/usr/lib/chromium/chromium-helper", true, &[])), None);
        p.executables.push("/home/u/softphone/softphone".into());
        assert!(p.rule_for(&proc("/home/u/softphone/softphone", false, &[])).is_some());
        assert!(p.rule_for(&proc("/home/u/other/softphone", false, &[])).is_none());
        p.electron_apps.push("/usr/lib/acme-phone".into());
        let e = proc("/usr/lib/electron/electron", true, &["electron", "/usr/lib/acme-phone/app.asar"]);
        assert_eq!(p.rule_for(&e).as_deref(), Some("electron app /usr/lib/acme-phone"));
        let e = proc("/usr/lib/electron/electron", true, &["electron", "/usr/lib/acme-phoney/app.asar"]);
        assert_eq!(p.rule_for(&e), None);
    }

    #[test]
    fn mapped_addresses_compare_equal() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(canonical(a), canonical(b));
    }

    #[test]
    fn finds_this_process_behind_a_loopback_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, peer) = l.accept().unwrap();
        let t = std::time::Instant::now();
        let found = identify(s.local_addr().unwrap(), peer).unwrap();
        eprintln!(
            "identify: {:?} over {} processes",
            t.elapsed(),
            procfs::process::all_processes().unwrap().count()
        );
        assert_eq!(found.holders.len(), 1, "{found:?}");
        assert_eq!(found.holders[0].pid as u32, std::process::id());
        assert_eq!(found.holders[0].exe, std::env::current_exe().unwrap());
        assert_eq!(found.uid, unsafe { libc::geteuid() });
        drop(c);
        // A client that closed (or exited) before the lookup is refused, not guessed.
        let e = identify(s.local_addr().unwrap(), peer).unwrap_err();
        assert!(matches!(e, PeerError::NotFound { .. } | PeerError::NotLocal { .. }), "{e}");
        // The address pair of a closed connection is not a local process's.
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = identify(t.local_addr().unwrap(), "127.0.0.1:1".parse().unwrap()).unwrap_err();
        assert!(matches!(e, PeerError::NotLocal { .. }), "{e}");
    }
}
