//! Logging: journald with structured fields when systemd runs the daemon, stderr otherwise.
//!
//! Under journald every `tracing` field becomes a journal field with the `VDIMEDIA_` prefix
//! (tracing-journald upper-cases the name: `loss_pct` → `VDIMEDIA_LOSS_PCT`). Span fields are
//! written on every line logged inside the span, so `journalctl --user -u vdimediad
//! VDIMEDIA_SESSION=3` shows one page's story and `VDIMEDIA_PC=pc1` one call's.
//!
//! Spans: the channel task runs each logical session inside `session{session}`; the session
//! runs each peer connection's requests and events inside `pc{pc}` (a child of the session
//! span), and webrtcbin's callbacks (GStreamer threads) enter the same `pc` span. Requests add
//! `request{method, request}`. An event never repeats a field its spans carry (journald would
//! store the value twice).
//!
//! | journal field | meaning | on which lines |
//! | --- | --- | --- |
//! | `VDIMEDIA_SESSION` | logical session id (one page) | every line of a session |
//! | `VDIMEDIA_PC` | the page's `RTCPeerConnection` id | every line of a peer connection |
//! | `VDIMEDIA_METHOD`, `VDIMEDIA_REQUEST` | protocol method and request id | lines logged while a request runs |
//! | `VDIMEDIA_EVENT` | W3C event name or summary kind (`iceconnectionstatechange`, `icecandidate`, `candidate-pair`, `call-summary`, `network-thresholds`) | state changes, ICE, summary |
//! | `VDIMEDIA_STATE` | the new state (`connected`, `failed`, …; W3C enum strings) | state-change lines |
//! | `VDIMEDIA_CANDIDATE_TYPE`, `VDIMEDIA_PROTOCOL` | ICE candidate type (`host`, `srflx`, `prflx`, `relay`) and transport | gathered and remote candidates |
//! | `VDIMEDIA_CANDIDATE_PAIR` | selected pair as `local-type/protocol -> remote-type/protocol` | once per connection |
//! | `VDIMEDIA_CODEC` | negotiated codec, lower case (`opus`, `g722`, `pcmu`, `pcma`) | send/receive branch lines, call summary |
//! | `VDIMEDIA_DEVICE`, `VDIMEDIA_AEC`, `VDIMEDIA_AEC_REASON` | device label chosen; which canceller runs (hardware/software/off/none) and why | getUserMedia, playout |
//! | `VDIMEDIA_DURATION_S`, `VDIMEDIA_PACKETS_SENT`, `VDIMEDIA_PACKETS_RECEIVED`, `VDIMEDIA_PACKETS_LOST`, `VDIMEDIA_LOSS_PCT`, `VDIMEDIA_REMOTE_LOSS_PCT`, `VDIMEDIA_JITTER_MS`, `VDIMEDIA_RTT_MS`, `VDIMEDIA_R_FACTOR`, `VDIMEDIA_MOS` | end-of-call figures ([`crate::webrtc::summary`]) | `call-summary` |
//! | `VDIMEDIA_BREACHES` | comma-separated metrics outside the network thresholds | `network-thresholds` (WARN) |
//!
//! Privacy: SDP, ICE credentials (ufrag/pwd) and candidate addresses are logged at `debug`
//! only; at the default `info` level a candidate is its type and transport.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogTarget;

/// Environment variable that overrides the configured filter (a `tracing` EnvFilter).
pub const LOG_ENV: &str = "VDIMEDIA_LOG";

/// Installs the global subscriber. `level` is the configured filter (default `info`).
/// Returns which target was chosen, for the start-up log line.
pub fn init(target: LogTarget, level: Option<&str>) -> &'static str {
    let filter = std::env::var(LOG_ENV)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level.unwrap_or("info")));
    // systemd sets JOURNAL_STREAM when stdout/stderr go to the journal (systemd.exec(5)).
    let want_journald = match target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    if want_journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some("VDIMEDIA".into()))
                    .with_syslog_identifier("vdimediad".into())
                    .with_priority_mappings(priorities());
                tracing_subscriber::registry().with(filter).with(layer).init();
                return "journald";
            }
            Err(e) => eprintln!("vdimediad: journald not reachable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false))
        .init();
    "stderr"
}

/// A W3C enum value as its IDL string (`connected`, `have-local-offer`), for `VDIMEDIA_STATE`.
pub fn w3c<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".to_string(),
    }
}

/// `text` with IP addresses and ICE passwords masked, for error texts logged at `warn` that may
/// quote a page's SDP or candidate (privacy: no candidate IPs at the default level). IPv4
/// dotted quads become `x.x.x.x`, IPv6 addresses `x:x::x`, `ice-pwd:VALUE` `ice-pwd:***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pwd = false;
    for (i, tok) in text.split(|c: char| c.is_whitespace()).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if pwd {
            out.push_str("***");
            pwd = false;
            continue;
        }
        if let Some(at) = tok.find("ice-pwd:") {
            out.push_str(&tok[..at + 8]);
            if tok.len() > at + 8 {
                out.push_str("***");
            } else {
                pwd = true;
            }
            continue;
        }
        let core = tok.trim_matches(|c: char| !c.is_ascii_hexdigit() && c != ':' && c != '.');
        let is_v4 = core.split('.').count() == 4
            && core
                .split('.')
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        let is_v6 = core.matches(':').count() >= 2
            && core.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if is_v4 {
            out.push_str(&tok.replace(core, "x.x.x.x"));
        } else if is_v6 {
            out.push_str(&tok.replace(core, "x:x::x"));
        } else {
            out.push_str(tok);
        }
    }
    out
}

/// syslog priorities as journald users expect them (`journalctl -p info` hides debug):
/// ERROR 3, WARN 4, INFO 6, DEBUG and TRACE 7. tracing-journald's default puts INFO at
/// "notice" (5) and DEBUG at "info" (6).
pub fn priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    tracing_journald::PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// The privacy-safe part of an ICE candidate line (RFC 8839 §5.1 `candidate-attribute`):
/// its type and transport, e.g. `host/udp`. The address, port and ufrag are left out, so the
/// result may be logged at `info`. Unparseable input gives `unknown/unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateKind {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub typ: String,
    /// `udp` or `tcp` (lower case).
    pub protocol: String,
}

impl CandidateKind {
    pub fn parse(candidate: &str) -> CandidateKind {
        let c = candidate.trim().trim_start_matches("a=").trim_start_matches("candidate:");
        let parts: Vec<&str> = c.split_ascii_whitespace().collect();
        let protocol = parts.get(2).map_or("unknown".to_string(), |p| p.to_ascii_lowercase());
        let typ = parts
            .iter()
            .position(|p| *p == "typ")
            .and_then(|i| parts.get(i + 1))
            .map_or("unknown".to_string(), |t| t.to_string());
        CandidateKind { typ, protocol }
    }
}

impl std::fmt::Display for CandidateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.typ, self.protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_kind_drops_address_and_port() {
        let k = CandidateKind::parse("candidate:1 1 UDP 2015363327 192.0.2.7 39033 typ host");
        assert_eq!(k.to_string(), "host/udp");
        let k = CandidateKind::parse(
            "a=candidate:4 1 TCP 1015022079 198.51.100.2 9 typ srflx raddr 10.0.0.1 rport 0 tcptype active",
        );
        assert_eq!((k.typ.as_str(), k.protocol.as_str()), ("srflx", "tcp"));
        assert!(!k.to_string().contains("198.51"));
        assert_eq!(CandidateKind::parse("garbage").to_string(), "unknown/unknown");
    }

    #[test]
    fn redact_masks_addresses_and_passwords() {
        let r = redact("malformed ICE candidate candidate:1 1 UDP 5 192.168.1.20 5000 typ host");
        assert!(!r.contains("192.168"), "{r}");
        assert!(r.contains("x.x.x.x 5000 typ host"), "{r}");
        let r = redact("bad a=ice-pwd:s3cr3tPassw0rd and a=ice-pwd: other c=IN IP6 2001:db8::1");
        assert!(!r.contains("s3cr3t") && !r.contains("other") && !r.contains("2001:db8"), "{r}");
        assert_eq!(redact("no peer connection pc1"), "no peer connection pc1");
        assert_eq!(redact("version 1.2.3"), "version 1.2.3");
    }

    #[test]
    fn w3c_names() {
        use vdimedia_protocol::api::RtcSignalingState;
        assert_eq!(w3c(&RtcSignalingState::HaveLocalOffer), "have-local-offer");
    }
}
