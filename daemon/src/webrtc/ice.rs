//! `RTCConfiguration` (WebRTC 1.0 §4.2.1) → webrtcbin settings: STUN/TURN servers (RFC 7064 /
//! RFC 7065 URLs), ICE transport policy and bundle policy.

use crate::error::{EngineError, EngineResult};
use vdimedia_protocol::api::{RtcBundlePolicy, RtcConfiguration, RtcIceTransportPolicy};
use vdimedia_protocol::message::ErrorCode;

/// What webrtcbin needs from an `RTCConfiguration`.
#[derive(Debug, Clone, PartialEq)]
pub struct IceSettings {
    /// webrtcbin `stun-server`: `stun://host:port` (webrtcbin takes a single one).
    pub stun_server: Option<String>,
    /// webrtcbin `add-turn-server` URLs: `turn(s)://user:pass@host:port[?transport=tcp]`,
    /// user and password percent-encoded (RFC 3986).
    pub turn_servers: Vec<String>,
    /// webrtcbin `ice-transport-policy` is `relay`.
    pub relay_only: bool,
    /// webrtcbin `bundle-policy`.
    pub bundle_policy: gst_webrtc::WebRTCBundlePolicy,
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn syntax(msg: String) -> EngineError {
    tracing::warn!(reason = %msg, "bad RTCIceServer");
    EngineError::new(ErrorCode::InvalidParams, msg)
}

/// Maps the configuration. Errors follow WebRTC 1.0 §4.4.1.1 "set the configuration": a URL that
/// does not parse or has an unknown scheme → TypeError-like `invalid_params` (the spec's
/// SyntaxError); a TURN URL without username/credential → `invalid_access`.
pub fn settings(config: &RtcConfiguration) -> EngineResult<IceSettings> {
    let mut out = IceSettings {
        relay_only: config.ice_transport_policy == RtcIceTransportPolicy::Relay,
        // Chromium treats "balanced" like max-bundle for a single audio m-line, and webrtcbin's
        // balanced mode is not implemented beyond max-compat; max-bundle is what peers expect.
        bundle_policy: match config.bundle_policy {
            RtcBundlePolicy::Balanced | RtcBundlePolicy::MaxBundle => {
                gst_webrtc::WebRTCBundlePolicy::MaxBundle
            }
            RtcBundlePolicy::MaxCompat => gst_webrtc::WebRTCBundlePolicy::MaxCompat,
        },
        stun_server: None,
        turn_servers: Vec::new(),
    };
    for server in &config.ice_servers {
        for url in server.urls.to_vec() {
            let (scheme, rest) =
                url.split_once(':').ok_or_else(|| syntax(format!("ICE server URL {url:?} has no scheme")))?;
            let (hostport, query) = match rest.split_once('?') {
                Some((h, q)) => (h, Some(q)),
                None => (rest, None),
            };
            let hostport = hostport.trim_start_matches("//");
            if hostport.is_empty() || hostport.contains('@') || hostport.contains('/') {
                return Err(syntax(format!("ICE server URL {url:?} has a bad host")));
            }
            match scheme.to_ascii_lowercase().as_str() {
                "stun" => {
                    let port = if has_port(hostport) { String::new() } else { ":3478".into() };
                    if out.stun_server.is_some() {
                        tracing::warn!(%url, "webrtcbin uses one STUN server; ignoring this one");
                    } else {
                        out.stun_server = Some(format!("stun://{hostport}{port}"));
                    }
                }
                "stuns" => tracing::warn!(%url, "stuns: is not supported by webrtcbin; ignored"),
                s @ ("turn" | "turns") => {
                    let (Some(user), Some(cred)) = (&server.username, &server.credential) else {
                        tracing::warn!(%url, "TURN server without username/credential");
                        return Err(EngineError::new(
                            ErrorCode::InvalidAccess,
                            format!("TURN server {url} needs username and credential"),
                        ));
                    };
                    let transport = match query {
                        None => None,
                        Some(q) => match q.strip_prefix("transport=").map(str::to_ascii_lowercase).as_deref()
                        {
                            Some("udp") => Some("udp"),
                            Some("tcp") => Some("tcp"),
                            _ => {
                                return Err(syntax(format!("ICE server URL {url:?} has a bad query {q:?}")));
                            }
                        },
                    };
                    let default_port = if s == "turns" { ":5349" } else { ":3478" };
                    let port = if has_port(hostport) { "" } else { default_port };
                    let mut u = format!("{s}://{}:{}@{hostport}{port}", url_encode(user), url_encode(cred));
                    if let Some(t) = transport {
                        u.push_str("?transport=");
                        u.push_str(t);
                    }
                    out.turn_servers.push(u);
                }
                other => {
                    return Err(syntax(format!(
                        "ICE server URL scheme {other:?} is not stun/stuns/turn/turns"
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// Whether `host[:port]` / `[v6][:port]` carries a port.
fn has_port(hostport: &str) -> bool {
    match hostport.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => hostport.matches(':').count() == 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdimedia_protocol::api::{OneOrMany, RtcIceServer};

    #[test]
    fn maps_stun_and_turn_urls() {
        let config = RtcConfiguration {
            ice_servers: vec![
                RtcIceServer {
                    urls: OneOrMany::One("stun:127.0.0.1:3478".into()),
                    username: None,
                    credential: None,
                },
                RtcIceServer {
                    urls: OneOrMany::Many(vec![
                        "turn:turn.example?transport=tcp".into(),
                        "turns:[::1]:443".into(),
                    ]),
                    username: Some("a@b".into()),
                    credential: Some("p:w/d".into()),
                },
            ],
            ice_transport_policy: RtcIceTransportPolicy::Relay,
            bundle_policy: RtcBundlePolicy::Balanced,
        };
        let s = settings(&config).unwrap();
        assert_eq!(s.stun_server.as_deref(), Some("stun://127.0.0.1:3478"));
        assert_eq!(
            s.turn_servers,
            vec![
                "turn://a%40b:p%3Aw%2Fd@turn.example:3478?transport=tcp".to_string(),
                "turns://a%40b:p%3Aw%2Fd@[::1]:443".to_string(),
            ]
        );
        assert!(s.relay_only);
        assert_eq!(s.bundle_policy, gst_webrtc::WebRTCBundlePolicy::MaxBundle);
    }

    #[test]
    fn rejects_bad_servers() {
        let bad = |urls: &str, user: Option<&str>| RtcConfiguration {
            ice_servers: vec![RtcIceServer {
                urls: OneOrMany::One(urls.into()),
                username: user.map(Into::into),
                credential: user.map(Into::into),
            }],
            ..Default::default()
        };
        assert_eq!(settings(&bad("http://x", None)).unwrap_err().code, ErrorCode::InvalidParams);
        assert_eq!(settings(&bad("turn:x", None)).unwrap_err().code, ErrorCode::InvalidAccess);
        assert_eq!(
            settings(&bad("turn:x?transport=sctp", Some("u"))).unwrap_err().code,
            ErrorCode::InvalidParams
        );
    }
}
