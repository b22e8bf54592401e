//! The virtual-channel endpoint: how bytes reach the daemon ([`transport`]) and how one
//! channel's frames become logical sessions ([`endpoint`]).
//!
//! Two modes (DESIGN.md): listen on a Unix socket — or take the one systemd passes with socket
//! activation — where a remoting client's channel plugin connects; or dial a bridge directly
//! (`tcp://HOST:PORT`, development and test rigs). Either way the daemon plays the protocol's
//! `endpoint` role.

pub mod endpoint;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;

/// A virtual-channel address: `unix:/path` or `tcp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl VcAddr {
    /// Parses `unix:/abs/path` or `tcp://IP:PORT`. Errors say what form is expected.
    pub fn parse(s: &str) -> Result<VcAddr, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            let p = p.strip_prefix("//").unwrap_or(p);
            if p.is_empty() || !p.starts_with('/') {
                return Err(format!("{s:?}: expected unix:/absolute/path"));
            }
            return Ok(VcAddr::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            let addr = if let Some(rest) = a.strip_prefix("localhost:") {
                format!("127.0.0.1:{rest}")
            } else {
                a.to_string()
            };
            return addr.parse().map(VcAddr::Tcp).map_err(|_| format!("{s:?}: expected tcp://IP:PORT"));
        }
        Err(format!("{s:?}: expected unix:/path or tcp://IP:PORT"))
    }
}

impl std::fmt::Display for VcAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VcAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            VcAddr::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(VcAddr::parse("unix:/run/x.sock").unwrap(), VcAddr::Unix("/run/x.sock".into()));
        assert_eq!(
            VcAddr::parse("tcp://127.0.0.1:9003").unwrap(),
            VcAddr::Tcp("127.0.0.1:9003".parse().unwrap())
        );
        assert_eq!(VcAddr::parse("tcp://localhost:9003").unwrap().to_string(), "tcp://127.0.0.1:9003");
        assert!(VcAddr::parse("unix:relative").is_err());
        assert!(VcAddr::parse("tcp://nohost").is_err());
        assert!(VcAddr::parse("http://x").is_err());
    }
}
