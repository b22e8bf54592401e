//! `vdimediad` configuration: a TOML file, validated at start with errors that name the key.
//!
//! Lookup order: `--config FILE` if given; else `/etc/vdimedia/vdimediad.toml` if it exists,
//! else `/usr/lib/vdimedia/vdimediad.toml` (packaged defaults), else built-in defaults.
//! Command-line flags override the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::media::AudioBackend;
use crate::vc::VcAddr;

/// Where the daemon looks when no `--config` is given, most specific first.
pub const DEFAULT_CONFIG_PATHS: &[&str] =
    &["/etc/vdimedia/vdimediad.toml", "/usr/lib/vdimedia/vdimediad.toml"];

/// The whole configuration. Every section is optional; unknown keys are errors (a typo must
/// not silently fall back to a default).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub vc: VcConfig,
    #[serde(default)]
    pub audio: AudioConfig,
    /// `[aec]`: the echo-cancellation policy (crate::media::aec).
    #[serde(default)]
    pub aec: crate::media::aec::AecConfig,
    #[serde(default)]
    pub webrtc: WebRtcConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub control: ControlConfig,
}

/// `[control]`: the local admin socket `vdimediactl` talks to (docs/control.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Path of the control socket (mode 0600, same uid or root only). Default: `control.sock`
    /// next to the virtual-channel socket the daemon listens on, else
    /// `$RUNTIME_DIRECTORY/control.sock`, else `$XDG_RUNTIME_DIR/vdimedia/control.sock`.
    pub socket: Option<PathBuf>,
    /// `false` turns the control socket off (kiosks that want no admin surface).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self { socket: None, enabled: true }
    }
}

/// `[vc]`: how the virtual channel reaches the daemon. Exactly one of `listen` / `connect`;
/// with neither, the daemon listens on `$XDG_RUNTIME_DIR/vdimedia/vc.sock` (or takes the socket
/// systemd passes with socket activation, which wins over both).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VcConfig {
    /// `unix:/path` to listen on (a remoting client's channel plugin connects here).
    pub listen: Option<String>,
    /// `tcp://HOST:PORT` or `unix:/path` of a bridge to dial (development and test rigs).
    pub connect: Option<String>,
    /// Largest frame this side accepts and sends, bytes (docs/protocol.md, 256..=65536).
    #[serde(default = "default_max_frame")]
    pub max_frame: u32,
    /// Seconds between redial attempts after a dialled channel drops (1..=300).
    #[serde(default = "default_redial")]
    pub redial_secs: u64,
    /// How long a session whose channel dropped without a `CLOSE` stays parked (its calls
    /// running) waiting for an `OPEN` with its `resume` token, ms (0..=600000; 0 closes such
    /// sessions at once). docs/protocol.md, "Sessions".
    #[serde(default = "default_session_grace")]
    pub session_grace_ms: u64,
}

impl Default for VcConfig {
    fn default() -> Self {
        Self {
            listen: None,
            connect: None,
            max_frame: default_max_frame(),
            redial_secs: default_redial(),
            session_grace_ms: default_session_grace(),
        }
    }
}

fn default_max_frame() -> u32 {
    4096
}
fn default_redial() -> u64 {
    2
}
fn default_session_grace() -> u64 {
    30_000
}

/// `[audio]`: which device stack serves `getUserMedia` and playout.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// `"auto"` (PipeWire when its socket answers, else ALSA), `"pipewire"` or `"alsa"`.
    #[serde(default)]
    pub backend: BackendChoice,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    Pipewire,
    Alsa,
}

impl BackendChoice {
    pub fn resolve(self) -> AudioBackend {
        match self {
            BackendChoice::Auto => AudioBackend::detect(),
            BackendChoice::Pipewire => AudioBackend::PipeWire,
            BackendChoice::Alsa => AudioBackend::Alsa,
        }
    }
}

/// `[webrtc]`: engine-wide WebRTC settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebRtcConfig {
    /// Gather ICE candidates on 127.0.0.1 too. libnice skips loopback when another interface
    /// exists and gathers nothing in a loopback-only namespace; test rigs turn this on.
    #[serde(default)]
    pub loopback_ice: bool,
    /// Receive jitter buffer in ms (10..=1000): lower is less delay, higher rides out more
    /// network jitter.
    #[serde(default = "default_jitter_buffer_ms")]
    pub jitter_buffer_ms: u32,
    /// When GStreamer is loaded and the DTLS certificate made: see [`WarmUp`].
    #[serde(default)]
    pub warm_up: WarmUp,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        Self { loopback_ice: false, jitter_buffer_ms: default_jitter_buffer_ms(), warm_up: WarmUp::default() }
    }
}

/// `[webrtc] warm_up`: when the daemon loads GStreamer's registry and plugins and generates the
/// process-wide DTLS certificate (RSA-2048 in GStreamer 1.22's `dtlsdec`; 0.2–0.9 s on x86-64,
/// longer on ARM). Either way it happens once per process and stays.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WarmUp {
    /// When a page loads the SDK (a logical session opens), in the background: the first call
    /// does not wait for it; an idle daemon with a softphone page open holds about 20 MiB RSS.
    #[default]
    Session,
    /// At the first `RTCPeerConnection`: an idle daemon with a page open stays near 11 MiB, and
    /// the first call of the process waits for the warm-up (x86-64 here: 0.5 s more to the first
    /// offer).
    FirstCall,
}

fn default_jitter_buffer_ms() -> u32 {
    crate::webrtc::peer_connection::DEFAULT_JITTER_BUFFER_MS
}

/// `[limits]`: per-channel and per-session caps; a breach is a typed `limit_exceeded` error.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Peer connections one page may hold at once.
    #[serde(default = "default_max_pcs")]
    pub max_peer_connections: usize,
    /// Capture tracks one page may hold at once.
    #[serde(default = "default_max_tracks")]
    pub max_tracks: usize,
    /// Largest SDP accepted, bytes.
    #[serde(default = "default_max_sdp")]
    pub max_sdp_bytes: usize,
}

fn default_max_pcs() -> usize {
    8
}
fn default_max_tracks() -> usize {
    8
}
fn default_max_sdp() -> usize {
    64 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_peer_connections: default_max_pcs(),
            max_tracks: default_max_tracks(),
            max_sdp_bytes: default_max_sdp(),
        }
    }
}

/// `[log]`: where logs go and how much.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `"info"` or `"vdimediad=debug"`; `VDIMEDIA_LOG` overrides.
    pub level: Option<String>,
    /// `"auto"` (journald when started by systemd, else stderr), `"journald"` or `"stderr"`.
    #[serde(default)]
    pub target: LogTarget,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    #[default]
    Auto,
    Journald,
    Stderr,
}

/// A configuration error. Its message reads like a compiler's: `FILE:LINE:COLUMN: reason`
/// (line and column 1-based; `FILE: reason` when the place is not known), and names the key
/// for a value out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Not TOML, or not the shape of [`Config`] (unknown key, wrong type).
    #[error("{}: {message}", Place(path, *at))]
    Parse { path: PathBuf, at: Option<(usize, usize)>, message: String },
    /// Valid TOML whose value is out of range.
    #[error("{}: {key}: {message}", Place(path, *at))]
    Invalid { path: PathBuf, at: Option<(usize, usize)>, key: &'static str, message: String },
}

impl ConfigError {
    /// 1-based (line, column) of the error in the file, when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { at, .. } | ConfigError::Invalid { at, .. } => *at,
        }
    }
}

/// `FILE:LINE:COLUMN` or `FILE`.
struct Place<'a>(&'a Path, Option<(usize, usize)>);

impl std::fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.0.display()),
            None => write!(f, "{}", self.0.display()),
        }
    }
}

/// 1-based (line, column) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// Where `key` (`section` or `section.name`) is set in `text`, from the TOML parser's spans.
fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    use std::collections::HashMap;
    type Sections = HashMap<String, toml::Spanned<HashMap<String, toml::Spanned<toml::Value>>>>;
    let doc: Sections = toml::from_str(text).ok()?;
    let (section, name) = match key.split_once('.') {
        Some((s, n)) => (s, Some(n)),
        None => (key, None),
    };
    let table = doc.get(section)?;
    let span = match name {
        Some(n) => table.get_ref().get(n)?.span(),
        None => table.span(),
    };
    Some(line_col(text, span.start))
}

impl Config {
    /// Loads `explicit` if given, else the first of [`DEFAULT_CONFIG_PATHS`] that exists, else
    /// the defaults. Returns the config and the path it came from.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from).find(|p| p.exists()),
        };
        let Some(path) = path else {
            return Ok((Config::default(), None));
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let config = Config::parse(&text, &path)?;
        Ok((config, Some(path)))
    }

    /// Parses and validates TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            at: e.span().map(|s| line_col(text, s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        config.validate(path).map_err(|e| match e {
            ConfigError::Invalid { path, key, message, .. } => {
                ConfigError::Invalid { at: locate(text, key), path, key, message }
            }
            other => other,
        })?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key, message: String| ConfigError::Invalid { path: path.to_path_buf(), at: None, key, message };
        if self.vc.listen.is_some() && self.vc.connect.is_some() {
            return Err(invalid("vc", "set either listen or connect, not both".into()));
        }
        if let Some(l) = &self.vc.listen {
            match VcAddr::parse(l) {
                Ok(VcAddr::Unix(_)) => {}
                Ok(VcAddr::Tcp(_)) => {
                    return Err(invalid("vc.listen", "only unix:/path can be listened on".into()));
                }
                Err(e) => return Err(invalid("vc.listen", e)),
            }
        }
        if let Some(c) = &self.vc.connect {
            VcAddr::parse(c).map_err(|e| invalid("vc.connect", e))?;
        }
        if !(256..=65536).contains(&self.vc.max_frame) {
            return Err(invalid("vc.max_frame", format!("{} is outside 256..=65536", self.vc.max_frame)));
        }
        if !(1..=300).contains(&self.vc.redial_secs) {
            return Err(invalid("vc.redial_secs", format!("{} is outside 1..=300", self.vc.redial_secs)));
        }
        if self.vc.session_grace_ms > 600_000 {
            return Err(invalid(
                "vc.session_grace_ms",
                format!("{} is outside 0..=600000", self.vc.session_grace_ms),
            ));
        }
        if !(10..=1000).contains(&self.webrtc.jitter_buffer_ms) {
            return Err(invalid(
                "webrtc.jitter_buffer_ms",
                format!("{} is outside 10..=1000", self.webrtc.jitter_buffer_ms),
            ));
        }
        if self.limits.max_peer_connections == 0 || self.limits.max_peer_connections > 64 {
            return Err(invalid("limits.max_peer_connections", "must be 1..=64".into()));
        }
        if self.limits.max_tracks == 0 || self.limits.max_tracks > 64 {
            return Err(invalid("limits.max_tracks", "must be 1..=64".into()));
        }
        if !(1024..=1 << 20).contains(&self.limits.max_sdp_bytes) {
            return Err(invalid("limits.max_sdp_bytes", "must be 1024..=1048576".into()));
        }
        if let Some(level) = &self.log.level {
            tracing_subscriber::EnvFilter::try_new(level).map_err(|e| invalid("log.level", e.to_string()))?;
        }
        if let Some(sock) = &self.control.socket
            && !sock.is_absolute()
        {
            return Err(invalid("control.socket", format!("{} is not an absolute path", sock.display())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.vc.max_frame, 4096);
        assert_eq!(c.limits.max_peer_connections, 8);
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            r#"
            [vc]
            connect = "tcp://127.0.0.1:9003"
            max_frame = 1600
            [audio]
            backend = "alsa"
            [webrtc]
            loopback_ice = true
            warm_up = "first-call"
            [limits]
            max_peer_connections = 2
            [log]
            level = "debug"
            target = "stderr"
            "#,
        )
        .unwrap();
        assert_eq!(c.vc.max_frame, 1600);
        assert_eq!(c.audio.backend, BackendChoice::Alsa);
        assert!(c.webrtc.loopback_ice);
        assert_eq!(c.webrtc.warm_up, WarmUp::FirstCall);
        assert_eq!(parse("").unwrap().webrtc.warm_up, WarmUp::Session);
        assert_eq!(c.limits.max_peer_connections, 2);
        assert_eq!(c.limits.max_tracks, 8);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("[vc]\nlisten = \"tcp://1.2.3.4:5\"").unwrap_err().to_string();
        assert!(e.contains("vc.listen"), "{e}");
        let e = parse("[vc]\nmax_frame = 10").unwrap_err().to_string();
        assert!(e.contains("vc.max_frame"), "{e}");
        let e = parse("[audio]\nbackend = \"oss\"").unwrap_err().to_string();
        assert!(e.contains("backend") || e.contains("oss"), "{e}");
        let e = parse("[vc]\nlisen = \"unix:/x\"").unwrap_err().to_string();
        assert!(e.contains("lisen"), "typo must be reported: {e}");
        let e = parse("[vc]\nlisten=\"unix:/a\"\nconnect=\"unix:/b\"").unwrap_err().to_string();
        assert!(e.contains("not both"), "{e}");
        let e = parse("[webrtc]\njitter_buffer_ms = 5").unwrap_err().to_string();
        assert!(e.contains("webrtc.jitter_buffer_ms"), "{e}");
        let e = parse("[webrtc]\nwarm_up = \"never\"").unwrap_err().to_string();
        assert!(e.starts_with("test.toml:2:") && e.contains("never") && e.contains("first-call"), "{e}");
        let e = parse("[log]\nlevel = \"[[[\"").unwrap_err().to_string();
        assert!(e.contains("log.level"), "{e}");
    }

    #[test]
    fn errors_give_file_line_and_column() {
        // A value out of range: the value's place.
        let e = parse("# comment\n[vc]\nconnect = \"tcp://127.0.0.1:1\"\nmax_frame = 7\n").unwrap_err();
        assert_eq!(e.location(), Some((4, 13)), "{e}");
        assert!(e.to_string().starts_with("test.toml:4:13: vc.max_frame: 7 is outside"), "{e}");
        // Broken TOML: the parser's place.
        let e = parse("[vc]\nmax_frame = = 3\n").unwrap_err();
        assert_eq!(e.location().map(|l| l.0), Some(2), "{e}");
        assert!(e.to_string().starts_with("test.toml:2:"), "{e}");
        // An unknown key: its line, and the message names it.
        let e = parse("[audio]\nbackend = \"alsa\"\n\n[vc]\nlisen = \"unix:/x\"\n").unwrap_err();
        assert_eq!(e.location().map(|l| l.0), Some(5), "{e}");
        assert!(e.to_string().contains("lisen"), "{e}");
        // A whole-section problem points at the section.
        let e = parse("[vc]\nlisten = \"unix:/a\"\nconnect = \"unix:/b\"\n").unwrap_err();
        assert!(e.to_string().starts_with("test.toml:1:"), "{e}");
        let e = parse("[control]\nsocket = \"rel/ctl.sock\"\n").unwrap_err();
        assert!(e.to_string().starts_with("test.toml:2:10: control.socket:"), "{e}");
    }
}
