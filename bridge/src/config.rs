//! Command line and TOML configuration of `vdimedia-bridge`.
//!
//! Precedence: command line > `--config` file > built-in defaults. Every value is validated
//! once, in [`Config::from_cli`], so the rest of the bridge works with a [`Config`] that is
//! known to be consistent (e.g. `--insecure-ws` only on a loopback address).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::peer::ProcessPolicy;

/// Default WebSocket listen address (the page SDK connects to `wss://127.0.0.1:9002/`).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9002);
/// Default virtual-channel mode: wait for `vdimediad --connect tcp://127.0.0.1:9003` to dial in.
pub const DEFAULT_VC_LISTEN: &str = "tcp://127.0.0.1:9003";
/// Default state directory when neither `--state-dir` nor `$STATE_DIRECTORY` is set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vdimedia-bridge";
/// Default largest WebSocket message a page may send, in bytes (the protocol's `max_message`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default number of pages (WebSocket connections) served at once.
pub const DEFAULT_MAX_PAGES: usize = 64;
/// Default time a page has to send its `hello` after connecting, in ms.
pub const DEFAULT_HELLO_TIMEOUT_MS: u64 = 5000;

/// vdimedia-bridge: the VDA-side service between the page SDK (WebSocket) and vdimediad
/// (virtual channel).
///
/// The page's SDK connects to wss://127.0.0.1:9002/ by default. TLS is on by default with a
/// self-signed certificate for 127.0.0.1/localhost generated on first start under the state
/// directory; its SPKI sha256 is logged at startup (for Chromium's
/// --ignore-certificate-errors-spki-list on test rigs).
///
/// Virtual channel, one daemon at a time:
///   --vc-listen tcp://127.0.0.1:9003      the daemon dials us: `vdimediad --connect tcp://127.0.0.1:9003`
///   --vc-connect unix:/run/user/UID/vdimedia/vc.sock   we dial the daemon's socket (or tcp://HOST:PORT)
///   --vc-connect 'unix:/run/user/{uid}/vdimedia/vc.sock'  one channel per user: each page goes
///                                        to the socket of the uid of the process that opened it
///
/// Pages are accepted only from allowed local executables (default: chromium, chrome, msedge,
/// firefox, firefox-esr, firefox-bin; see [security] in the config file); others are closed
/// with 1008 and a reason.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "vdimedia-bridge", version, about, long_about = None, verbatim_doc_comment)]
pub struct Cli {
    /// TOML configuration file; command-line flags override its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// WebSocket listen address [default: 127.0.0.1:9002].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// Serve plain ws:// instead of wss://. Refused unless --listen is a loopback address.
    #[arg(long)]
    pub insecure_ws: bool,

    /// PEM certificate chain for wss:// (with --key); default: a generated self-signed one.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Where the generated certificate is kept [default: $STATE_DIRECTORY or /var/lib/vdimedia-bridge].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Accept the daemon's connection on tcp://IP:PORT [default mode: tcp://127.0.0.1:9003].
    #[arg(long, value_name = "URL", conflicts_with = "vc_connect")]
    pub vc_listen: Option<String>,

    /// Dial the daemon at unix:PATH or tcp://HOST:PORT (redialled with backoff when it drops);
    /// a {uid} in PATH gives one channel per user: the uid of the process behind each page.
    #[arg(long, value_name = "URL")]
    pub vc_connect: Option<String>,

    /// Largest WebSocket message a page may send, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Most pages (WebSocket connections) served at once [default: 64].
    #[arg(long, value_name = "N")]
    pub max_pages: Option<usize>,

    /// Time a page has to send its hello, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub hello_timeout_ms: Option<u64>,

    /// Only pages whose Origin header is in this list are redirected (repeatable);
    /// default: any origin.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,

    /// Executable allowed to open pages (repeatable; replaces [security] allowed_executables):
    /// a file name (root-owned binaries only) or an absolute path.
    #[arg(long = "allow-executable", value_name = "NAME|PATH")]
    pub allowed_executables: Vec<String>,

    /// Accept pages from any local process (development only; no process lookup).
    #[arg(long)]
    pub allow_any_process: bool,

    /// Create the self-signed certificate in the state directory, or renew it when it expires
    /// within 30 days (same key, so the SPKI pin stays), print its path, pin and expiry, and
    /// exit. Run at install and as the unit's ExecStartPre=.
    #[arg(long)]
    pub make_cert: bool,
}

/// The `--config` TOML file. Keys mirror the long flags with `_` for `-`; unknown keys are an
/// error so a typo never silently falls back to a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub insecure_ws: Option<bool>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub vc_listen: Option<String>,
    pub vc_connect: Option<String>,
    pub max_message_bytes: Option<usize>,
    pub max_pages: Option<usize>,
    pub hello_timeout_ms: Option<u64>,
    pub allow_origins: Option<Vec<String>>,
    pub security: Option<SecurityFile>,
}

/// `[security]` of the config file: which local processes may open pages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFile {
    /// File names (root-owned binaries only) or absolute paths of allowed executables.
    pub allowed_executables: Option<Vec<String>>,
    /// App directories or `.asar` files of Electron apps run by a shared `electron` binary.
    pub allowed_electron_apps: Option<Vec<PathBuf>>,
    /// Accept any local process (development only).
    pub allow_any_process: Option<bool>,
}

/// Whether and how the WebSocket listener speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsSecurity {
    /// `wss://` with the given PEM files, or a self-signed certificate kept in `state_dir`
    /// when `cert`/`key` are `None`.
    Tls { cert: Option<PathBuf>, key: Option<PathBuf> },
    /// Plain `ws://`, only allowed on a loopback listen address.
    Insecure,
}

/// Where the virtual channel's byte stream comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcMode {
    /// Accept the daemon's TCP connection (`vdimediad --connect tcp://ADDR`); one at a time.
    Listen(SocketAddr),
    /// Dial the daemon (or a remoting channel plugin's socket), redialling with backoff.
    Connect(VcTarget),
}

/// A dialable virtual-channel address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcTarget {
    /// `tcp://HOST:PORT`, resolved at every dial.
    Tcp(String),
    /// `unix:PATH` (or `unix://PATH`): a Unix stream socket.
    Unix(PathBuf),
    /// `unix:/run/user/{uid}/vdimedia/vc.sock`: one channel per user. `{uid}` is replaced by
    /// the uid of the process behind each page; a page whose uid has no socket there (owned by
    /// that uid) is refused.
    UnixPerUid(String),
}

impl VcTarget {
    /// The socket path of `uid`'s channel (`UnixPerUid` only).
    pub fn path_for_uid(&self, uid: u32) -> Option<PathBuf> {
        match self {
            VcTarget::UnixPerUid(t) => Some(PathBuf::from(t.replace(UID_PLACEHOLDER, &uid.to_string()))),
            _ => None,
        }
    }
}

/// Placeholder of a per-user `vc_connect` template.
pub const UID_PLACEHOLDER: &str = "{uid}";

impl std::fmt::Display for VcMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VcMode::Listen(a) => write!(f, "listen tcp://{a}"),
            VcMode::Connect(t) => write!(f, "connect {t}"),
        }
    }
}

impl std::fmt::Display for VcTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VcTarget::Tcp(h) => write!(f, "tcp://{h}"),
            VcTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            VcTarget::UnixPerUid(t) => write!(f, "unix:{t}"),
        }
    }
}

/// The validated configuration the bridge runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// WebSocket listen address; port 0 picks an ephemeral port (tests).
    pub listen: SocketAddr,
    pub security: WsSecurity,
    /// Directory of the generated certificate (`bridge-cert.pem`, `bridge-key.pem`).
    pub state_dir: PathBuf,
    pub vc: VcMode,
    /// Largest WebSocket message (and frame) a page may send, in bytes.
    pub max_message_bytes: usize,
    /// Most concurrent pages; further connections get HTTP 503 at the WebSocket handshake.
    pub max_pages: usize,
    /// Time a page has to complete TLS + WebSocket handshakes and send its `hello`.
    pub hello_timeout: Duration,
    /// Allowed `Origin` header values; empty = any.
    pub allow_origins: Vec<String>,
    /// Which local processes may open pages.
    pub process_policy: ProcessPolicy,
}

/// A configuration that cannot be used, with the reason in words.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not TOML, or not the shape of [`FileConfig`] (unknown key, wrong type), at
    /// `FILE:LINE:COLUMN` (1-based) when the parser knows where.
    #[error("{}: {}", place(path, *at), source.message().trim_end())]
    Parse { path: PathBuf, at: Option<(usize, usize)>, source: Box<toml::de::Error> },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// A value of the config file that is out of range, at `FILE:LINE:COLUMN` (1-based) when
    /// the key is found in the file.
    #[error("{}: {key}: {message}", place(path, *at))]
    InFile { path: PathBuf, at: Option<(usize, usize)>, key: &'static str, message: String },
}

/// `FILE:LINE:COLUMN` or `FILE`.
fn place(path: &Path, at: Option<(usize, usize)>) -> String {
    match at {
        Some((l, c)) => format!("{}:{l}:{c}", path.display()),
        None => path.display().to_string(),
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

impl Config {
    /// A configuration with every default: `wss://127.0.0.1:9002`, generated certificate,
    /// `--vc-listen tcp://127.0.0.1:9003`.
    pub fn with_defaults() -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            security: WsSecurity::Tls { cert: None, key: None },
            state_dir: default_state_dir(),
            vc: VcMode::Listen(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9003)),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
            hello_timeout: Duration::from_millis(DEFAULT_HELLO_TIMEOUT_MS),
            allow_origins: Vec::new(),
            process_policy: ProcessPolicy::default(),
        }
    }

    /// Merges the command line over the `--config` file (if any) over the defaults and
    /// validates the result.
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let Some(path) = &cli.config else {
            return Config::merge(cli, FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let file: FileConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            at: source.span().map(|s| line_col(&text, s.start)),
            source: Box::new(source),
        })?;
        Config::merge(cli, file).map_err(|e| match e {
            // A bad value the file set (and the command line did not override) is reported at
            // its place in the file, as vdimediad does.
            ConfigError::Invalid { key, message } if !cli_sets(cli, key) => match locate(&text, key) {
                Some(at) => ConfigError::InFile { path: path.clone(), at: Some(at), key, message },
                None => ConfigError::Invalid { key, message },
            },
            other => other,
        })
    }

    fn merge(cli: &Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let listen = match (cli.listen, file.listen) {
            (Some(a), _) => a,
            (None, Some(s)) => {
                s.parse().map_err(|e| invalid("listen", format!("{s:?} is not IP:PORT ({e})")))?
            }
            (None, None) => DEFAULT_LISTEN,
        };
        let insecure = cli.insecure_ws || file.insecure_ws.unwrap_or(false);
        let (cert, key) = if cli.cert.is_some() || cli.key.is_some() {
            (cli.cert.clone(), cli.key.clone())
        } else {
            (file.cert, file.key)
        };
        if cert.is_some() != key.is_some() {
            return Err(invalid("cert/key", "give both a certificate and its key, or neither"));
        }
        let security = if insecure {
            if cert.is_some() {
                return Err(invalid(
                    "insecure_ws",
                    "plain ws:// does not use --cert/--key; remove one or the other",
                ));
            }
            if !listen.ip().is_loopback() {
                return Err(invalid(
                    "insecure_ws",
                    format!(
                        "plain ws:// is refused on {listen}: only a loopback address (127.0.0.1, ::1) may serve without TLS"
                    ),
                ));
            }
            WsSecurity::Insecure
        } else {
            WsSecurity::Tls { cert, key }
        };
        let state_dir = cli.state_dir.clone().or(file.state_dir).unwrap_or_else(default_state_dir);

        let vc_listen =
            cli.vc_listen.clone().or(if cli.vc_connect.is_some() { None } else { file.vc_listen });
        let vc_connect =
            cli.vc_connect.clone().or(if cli.vc_listen.is_some() { None } else { file.vc_connect });
        let vc = match (vc_listen, vc_connect) {
            (Some(_), Some(_)) => {
                return Err(invalid("vc", "vc_listen and vc_connect are exclusive: choose one mode"));
            }
            (Some(l), None) => VcMode::Listen(parse_vc_listen(&l)?),
            (None, Some(c)) => VcMode::Connect(parse_vc_target(&c)?),
            (None, None) => VcMode::Listen(parse_vc_listen(DEFAULT_VC_LISTEN)?),
        };

        let max_message_bytes =
            cli.max_message_bytes.or(file.max_message_bytes).unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(1024..=16 * 1024 * 1024).contains(&max_message_bytes) {
            return Err(invalid(
                "max_message_bytes",
                format!("{max_message_bytes} is outside 1024..=16777216"),
            ));
        }
        let max_pages = cli.max_pages.or(file.max_pages).unwrap_or(DEFAULT_MAX_PAGES);
        if !(1..=4096).contains(&max_pages) {
            return Err(invalid("max_pages", format!("{max_pages} is outside 1..=4096")));
        }
        let hello_ms = cli.hello_timeout_ms.or(file.hello_timeout_ms).unwrap_or(DEFAULT_HELLO_TIMEOUT_MS);
        if !(100..=60_000).contains(&hello_ms) {
            return Err(invalid("hello_timeout_ms", format!("{hello_ms} is outside 100..=60000")));
        }
        let allow_origins = if cli.allow_origins.is_empty() {
            file.allow_origins.unwrap_or_default()
        } else {
            cli.allow_origins.clone()
        };
        if let Some(bad) = allow_origins.iter().find(|o| o.is_empty() || o.ends_with('/')) {
            return Err(invalid(
                "allow_origins",
                format!("{bad:?} is not an origin like https://host[:port]"),
            ));
        }

        let sec = file.security.unwrap_or_default();
        let executables = if cli.allowed_executables.is_empty() {
            sec.allowed_executables.unwrap_or_else(|| ProcessPolicy::default().executables)
        } else {
            cli.allowed_executables.clone()
        };
        if let Some(bad) =
            executables.iter().find(|e| e.is_empty() || (e.contains('/') && !e.starts_with('/')))
        {
            return Err(invalid(
                "security.allowed_executables",
                format!("{bad:?}: expected a file name (\"chromium\") or an absolute path"),
            ));
        }
        let electron_apps = sec.allowed_electron_apps.unwrap_or_default();
        if let Some(bad) = electron_apps.iter().find(|p| !p.is_absolute()) {
            return Err(invalid(
                "security.allowed_electron_apps",
                format!("{}: expected an absolute path (app directory or .asar)", bad.display()),
            ));
        }
        let process_policy = ProcessPolicy {
            allow_any: cli.allow_any_process || sec.allow_any_process.unwrap_or(false),
            executables,
            electron_apps,
        };

        Ok(Config {
            listen,
            security,
            state_dir,
            vc,
            max_message_bytes,
            max_pages,
            hello_timeout: Duration::from_millis(hello_ms),
            allow_origins,
            process_policy,
        })
    }
}

/// Whether the command line gives the value named by an [`ConfigError::Invalid`] key.
fn cli_sets(cli: &Cli, key: &str) -> bool {
    match key {
        "listen" => cli.listen.is_some(),
        "insecure_ws" => cli.insecure_ws,
        "vc_listen" => cli.vc_listen.is_some(),
        "vc_connect" => cli.vc_connect.is_some(),
        "max_message_bytes" => cli.max_message_bytes.is_some(),
        "max_pages" => cli.max_pages.is_some(),
        "hello_timeout_ms" => cli.hello_timeout_ms.is_some(),
        "allow_origins" => !cli.allow_origins.is_empty(),
        "security.allowed_executables" => !cli.allowed_executables.is_empty(),
        _ => false,
    }
}

/// 1-based (line, column) where `key` (`name` or `section.name`) is set in `text`.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    use std::collections::HashMap;
    #[derive(Deserialize)]
    struct Sections {
        #[serde(default)]
        security: HashMap<String, toml::Spanned<toml::Value>>,
    }
    let span = match key.split_once('.') {
        None => {
            let doc: HashMap<String, toml::Spanned<toml::Value>> = toml::from_str(text).ok()?;
            doc.get(key)?.span()
        }
        Some(("security", name)) => {
            let doc: Sections = toml::from_str(text).ok()?;
            doc.security.get(name)?.span()
        }
        Some(_) => return None,
    };
    Some(line_col(text, span.start))
}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`; the first entry if several) or
/// `/var/lib/vdimedia-bridge`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .and_then(|v| v.to_str().and_then(|s| s.split(':').next()).map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// Parses `tcp://IP:PORT` (an IP literal: a listener binds, it does not resolve).
pub fn parse_vc_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    let rest = s
        .strip_prefix("tcp://")
        .ok_or_else(|| invalid("vc_listen", format!("{s:?}: expected tcp://IP:PORT")))?;
    rest.trim_end_matches('/')
        .parse()
        .map_err(|e| invalid("vc_listen", format!("{s:?}: expected tcp://IP:PORT ({e})")))
}

/// Parses `tcp://HOST:PORT`, `unix:PATH` or `unix://PATH`.
pub fn parse_vc_target(s: &str) -> Result<VcTarget, ConfigError> {
    if let Some(rest) = s.strip_prefix("tcp://") {
        if rest.contains(UID_PLACEHOLDER) {
            return Err(invalid(
                "vc_connect",
                format!("{s:?}: {UID_PLACEHOLDER} is only supported in unix:PATH"),
            ));
        }
        let rest = rest.trim_end_matches('/');
        let ok = rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !ok {
            return Err(invalid("vc_connect", format!("{s:?}: expected tcp://HOST:PORT")));
        }
        return Ok(VcTarget::Tcp(rest.to_string()));
    }
    if let Some(rest) = s.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(invalid("vc_connect", format!("{s:?}: expected unix:/ABSOLUTE/PATH")));
        }
        // A brace is a mistyped placeholder, not a path anyone means.
        if path.replace(UID_PLACEHOLDER, "0").contains(['{', '}']) {
            return Err(invalid("vc_connect", format!("{s:?}: the only placeholder is {UID_PLACEHOLDER}")));
        }
        if path.contains(UID_PLACEHOLDER) {
            return Ok(VcTarget::UnixPerUid(path.to_string()));
        }
        return Ok(VcTarget::Unix(PathBuf::from(path)));
    }
    Err(invalid("vc_connect", format!("{s:?}: expected unix:PATH or tcp://HOST:PORT")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["vdimedia-bridge"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("cli parses")
    }

    #[test]
    fn defaults() {
        let c = Config::from_cli(&cli(&[])).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.security, WsSecurity::Tls { cert: None, key: None });
        assert_eq!(c.vc, VcMode::Listen("127.0.0.1:9003".parse().unwrap()));
        assert_eq!(c.max_pages, 64);
        assert_eq!(c.max_message_bytes, 1 << 20);
    }

    #[test]
    fn insecure_only_on_loopback() {
        let c = Config::from_cli(&cli(&["--insecure-ws", "--listen", "127.0.0.1:9100"])).unwrap();
        assert_eq!(c.security, WsSecurity::Insecure);
        let c = Config::from_cli(&cli(&["--insecure-ws", "--listen", "[::1]:9100"])).unwrap();
        assert_eq!(c.security, WsSecurity::Insecure);
        let e = Config::from_cli(&cli(&["--insecure-ws", "--listen", "0.0.0.0:9100"])).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = Config::from_cli(&cli(&["--insecure-ws", "--listen", "192.168.1.2:9100"])).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn vc_urls() {
        assert_eq!(
            parse_vc_target("unix:/run/user/1000/vdimedia/vc.sock").unwrap(),
            VcTarget::Unix("/run/user/1000/vdimedia/vc.sock".into())
        );
        assert_eq!(parse_vc_target("unix:///tmp/x.sock").unwrap(), VcTarget::Unix("/tmp/x.sock".into()));
        assert_eq!(
            parse_vc_target("tcp://thin-client:9003").unwrap(),
            VcTarget::Tcp("thin-client:9003".into())
        );
        assert!(parse_vc_target("tcp://nohost").is_err());
        assert!(parse_vc_target("unix:relative.sock").is_err());
        assert!(parse_vc_target("http://x:1").is_err());
        assert!(parse_vc_listen("tcp://localhost:9003").is_err());
        assert!(
            Cli::try_parse_from(["b", "--vc-listen", "tcp://127.0.0.1:1", "--vc-connect", "unix:/x"])
                .is_err()
        );
    }

    #[test]
    fn security_section_and_per_uid_template() {
        let c = Config::from_cli(&cli(&[])).unwrap();
        assert!(!c.process_policy.allow_any);
        assert!(c.process_policy.executables.iter().any(|e| e == "chromium"));
        let dir = std::env::temp_dir().join(format!("vdimedia-bridge-cfg-sec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bridge.toml");
        std::fs::write(
            &path,
            "vc_connect = \"unix:/run/user/{uid}/vdimedia/vc.sock\"\n[security]\nallowed_executables = [\"chromium\", \"/opt/acme/phone\"]\nallowed_electron_apps = [\"/usr/lib/acme\"]\n",
        )
        .unwrap();
        let c = Config::from_cli(&cli(&["--config", path.to_str().unwrap()])).unwrap();
        let VcMode::Connect(t) = &c.vc else { panic!("{:?}", c.vc) };
        assert_eq!(t.path_for_uid(1001).unwrap(), PathBuf::from("/run/user/1001/vdimedia/vc.sock"));
        assert_eq!(c.process_policy.executables, vec!["chromium".to_string(), "/opt/acme/phone".into()]);
        assert_eq!(c.process_policy.electron_apps, vec![PathBuf::from("/usr/lib/acme")]);
        // The command line replaces the list and may switch the check off.
        let c = Config::from_cli(&cli(&[
            "--config",
            path.to_str().unwrap(),
            "--allow-executable",
            "firefox",
            "--allow-any-process",
        ]))
        .unwrap();
        assert_eq!(c.process_policy.executables, vec!["firefox".to_string()]);
        assert!(c.process_policy.allow_any);
        assert!(parse_vc_target("unix:/run/{user}/vc.sock").is_err());
        assert!(parse_vc_target("tcp://{uid}:9003").is_err());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn packaged_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config/vdimedia-bridge.toml");
        let c = Config::from_cli(&cli(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(c.security, WsSecurity::Tls { cert: None, key: None });
        assert_eq!(c.process_policy, ProcessPolicy::default());
        let VcMode::Connect(t) = &c.vc else { panic!("{:?}", c.vc) };
        assert_eq!(t.path_for_uid(1000).unwrap(), PathBuf::from("/run/user/1000/vdimedia/vc.sock"));
    }

    #[test]
    fn file_and_override() {
        let dir = std::env::temp_dir().join(format!("vdimedia-bridge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bridge.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9555\"\nvc_connect = \"unix:/tmp/vc.sock\"\nmax_pages = 8\n",
        )
        .unwrap();
        let c = Config::from_cli(&cli(&["--config", path.to_str().unwrap(), "--max-pages", "9"])).unwrap();
        assert_eq!(c.listen.port(), 9555);
        assert_eq!(c.vc, VcMode::Connect(VcTarget::Unix("/tmp/vc.sock".into())));
        assert_eq!(c.max_pages, 9);
        // The command line's mode replaces the file's.
        let c = Config::from_cli(&cli(&[
            "--config",
            path.to_str().unwrap(),
            "--vc-listen",
            "tcp://127.0.0.1:9777",
        ]))
        .unwrap();
        assert_eq!(c.vc, VcMode::Listen("127.0.0.1:9777".parse().unwrap()));

        std::fs::write(&path, "lisen = \"127.0.0.1:9555\"\n").unwrap();
        let e = Config::from_cli(&cli(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("lisen"), "{e}");

        std::fs::write(&path, "max_pages = 0\n").unwrap();
        let e = Config::from_cli(&cli(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("max_pages"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
