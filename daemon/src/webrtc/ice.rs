//! `RTCConfiguration` (WebRTC 1.0 §4.2.1) → webrtcbin settings: STUN/TURN servers (RFC 7064 /
//! RFC 7065 URLs), ICE transport policy and bundle policy.
//!
//! `turns:` (TURN over TLS) is terminated here, not in libnice: libnice 0.1.21 maps webrtcbin's
//! `turns://` to `NICE_RELAY_TYPE_TURN_TLS` but, in the RFC 5245 mode webrtcbin uses, opens a
//! plain TCP connection for it (it only wraps pseudo-TLS for Google/MSOC modes). A real TLS-only
//! TURN server (TLS on 443 behind a firewall that blocks UDP) would never answer, and coturn, which
//! also accepts plain TCP on its TLS port, would silently run the call unencrypted. So each
//! `turns:` server gets a loopback forwarder ([`turns_forwarder`]): libnice speaks TURN over plain
//! TCP to `127.0.0.1:<port>`, the forwarder speaks TLS (rustls, certificate verified against the
//! system CAs, `SSL_CERT_FILE` overriding them as for OpenSSL) to the server.

use crate::error::{EngineError, EngineResult};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use vdimedia_protocol::api::{RtcBundlePolicy, RtcConfiguration, RtcIceTransportPolicy};
use vdimedia_protocol::message::ErrorCode;

/// What webrtcbin needs from an `RTCConfiguration`.
#[derive(Debug, Clone, PartialEq)]
pub struct IceSettings {
    /// webrtcbin `stun-server`: `stun://host:port` (webrtcbin takes a single one).
    pub stun_server: Option<String>,
    /// webrtcbin `add-turn-server` URLs: `turn://user:pass@host:port[?transport=tcp]`, user and
    /// password percent-encoded (RFC 3986). A `turns:` server appears as
    /// `turn://user:pass@127.0.0.1:<forwarder port>?transport=tcp` (see the module docs).
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
                    let auth = format!("{}:{}", url_encode(user), url_encode(cred));
                    if s == "turns" {
                        if transport == Some("udp") {
                            // turns:…?transport=udp is TURN over DTLS (RFC 7350): nothing here
                            // speaks it. Skipped like an unreachable server, not a bad config.
                            tracing::warn!(%url, "TURN over DTLS is not supported; server ignored");
                            continue;
                        }
                        let local = turns_forwarder(&format!("{hostport}{port}"))?;
                        out.turn_servers.push(format!("turn://{auth}@{local}?transport=tcp"));
                        continue;
                    }
                    let mut u = format!("{s}://{auth}@{hostport}{port}");
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

/// The loopback address of the TLS forwarder for the TURN server `server` (`host:port` or
/// `[v6]:port`), started on first use and kept for the daemon's lifetime (one per server, shared
/// by every peer connection: libnice opens a TCP connection per allocation, each is forwarded
/// over its own TLS session). It forwards nothing but bytes: the TURN credentials stay in
/// libnice's TURN messages, so a local process using it gains nothing over dialling the server.
///
/// Each accepted connection: TCP to `server` (10 s timeout), TLS handshake (10 s) verifying the
/// certificate for the URL's host name or IP address against [`trusted_roots`]; on any failure
/// the local connection is closed and a warning logged, so libnice's allocation fails and,
/// under the `relay` policy, ICE fails.
pub fn turns_forwarder(server: &str) -> EngineResult<SocketAddr> {
    static FORWARDERS: OnceLock<Mutex<HashMap<String, SocketAddr>>> = OnceLock::new();
    let map = FORWARDERS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(local) = map.get(server) {
        return Ok(*local);
    }
    let host = match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => server,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| syntax(format!("TURN server host {host:?} is not a TLS server name: {e}")))?;
    let tls = tls_client_config()?;
    let runtime = forwarder_runtime()?;
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| forwarder_err(format!("cannot listen on 127.0.0.1 for the TURN TLS forwarder: {e}")))?;
    let local = listener.local_addr().map_err(|e| forwarder_err(e.to_string()))?;
    let target = server.to_string();
    runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(server = %target, error = %e, "TURN TLS forwarder cannot start");
                return;
            }
        };
        let connector = tokio_rustls::TlsConnector::from(tls);
        loop {
            match listener.accept().await {
                Ok((inbound, _)) => {
                    tokio::spawn(forward_over_tls(inbound, target.clone(), name.clone(), connector.clone()));
                }
                Err(e) => {
                    tracing::warn!(server = %target, error = %e, "TURN TLS forwarder: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!(server = %server, %local, "turns: server reached through a local TLS forwarder");
    map.insert(server.to_string(), local);
    Ok(local)
}

/// One libnice TCP connection → one TLS session to the TURN server, bytes copied both ways.
async fn forward_over_tls(
    mut inbound: tokio::net::TcpStream,
    server: String,
    name: rustls::pki_types::ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
) {
    const STEP_TIMEOUT: Duration = Duration::from_secs(10);
    let tcp = match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(&server)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::warn!(%server, error = %e, "TURN over TLS: cannot connect to the server");
            return;
        }
        Err(_) => {
            tracing::warn!(%server, "TURN over TLS: connecting to the server timed out (10 s)");
            return;
        }
    };
    // Small TURN/RTP frames: no Nagle delay on either leg.
    let _ = tcp.set_nodelay(true);
    let _ = inbound.set_nodelay(true);
    let mut tls = match tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%server, error = %e, "TURN over TLS: handshake failed (certificate not trusted?)");
            return;
        }
        Err(_) => {
            tracing::warn!(%server, "TURN over TLS: handshake timed out (10 s)");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    tracing::info!(%server, protocol = ?session.protocol_version(), "TURN over TLS: connected");
    match tokio::io::copy_bidirectional(&mut inbound, &mut tls).await {
        Ok((up, down)) => tracing::debug!(%server, up, down, "TURN over TLS: connection closed (bytes)"),
        Err(e) => tracing::debug!(%server, error = %e, "TURN over TLS: connection ended"),
    }
}

fn forwarder_err(msg: String) -> EngineError {
    tracing::error!(reason = %msg, "TURN TLS forwarder");
    EngineError::new(ErrorCode::OperationError, msg)
}

/// The forwarders' runtime: one small thread for the daemon's lifetime, independent of whichever
/// runtime (or none) created the peer connection.
fn forwarder_runtime() -> EngineResult<tokio::runtime::Handle> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| e.to_string())?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("turns-forwarder".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| e.to_string())?;
            Ok(handle)
        })
        .clone()
        .map_err(|e| forwarder_err(format!("cannot start the TURN TLS forwarder thread: {e}")))
}

/// Where [`trusted_roots`] reads CA certificates (PEM): `$SSL_CERT_FILE` (OpenSSL's variable),
/// else Debian's bundle.
pub fn trusted_roots_path() -> PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"))
}

/// The CA certificates TURN servers' certificates must chain to (see [`trusted_roots_path`]).
/// An unreadable file gives an empty store (every handshake then fails, with a warning).
pub fn trusted_roots() -> rustls::RootCertStore {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let path = trusted_roots_path();
    let mut roots = rustls::RootCertStore::empty();
    match CertificateDer::pem_file_iter(&path) {
        Ok(certs) => {
            let (added, ignored) = roots.add_parsable_certificates(certs.flatten());
            tracing::debug!(path = %path.display(), added, ignored, "CA certificates for turns:");
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read CA certificates for turns:")
        }
    }
    if roots.is_empty() {
        tracing::warn!(path = %path.display(), "no trusted CA certificate: turns: servers will fail verification");
    }
    roots
}

fn tls_client_config() -> EngineResult<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(trusted_roots())
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(|e| forwarder_err(format!("TLS client configuration: {e}")))
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
        assert_eq!(s.turn_servers.len(), 2);
        assert_eq!(s.turn_servers[0], "turn://a%40b:p%3Aw%2Fd@turn.example:3478?transport=tcp");
        // turns: → plain TURN/TCP to the loopback TLS forwarder, the same one for the same server.
        let local = turns_forwarder("[::1]:443").unwrap();
        assert_eq!(s.turn_servers[1], format!("turn://a%40b:p%3Aw%2Fd@{local}?transport=tcp"));
        assert!(local.ip().is_loopback());
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
