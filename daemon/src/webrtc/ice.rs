//! `RTCConfiguration` (WebRTC 1.0 §4.2.1) → webrtcbin settings: STUN/TURN servers (RFC 7064 /
//! RFC 7065 URLs), ICE transport policy and bundle policy; and ICE restart, which webrtcbin
//! 1.22 lacks (section "ICE restart" below: new credentials in the SDP, libnice restarted).
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
use gst::glib;
use gst::prelude::*;
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

// ---- ICE restart (RFC 8445 §9, JSEP §5.2.1/§5.3.1, WebRTC 1.0 §4.4.1.6) ----
//
// webrtcbin 1.22 has none: its re-offers and answers copy the ufrag/pwd of its last description
// ("FIXME: deal with ICE restarts"), and nothing restarts libnice's check lists. The engine
// writes fresh credentials into the offer or answer webrtcbin made; webrtcbin hands whatever
// credentials the description it is given carries to libnice (`nice_agent_set_local_credentials`
// / `…_remote_credentials`) on every set-local/remote-description. What is left is libnice's
// side: `nice_agent_restart_stream` drops the check list and the remote candidates but keeps
// the selected pair (its remote candidate becomes the stream's "restart candidate") so media
// goes on over the old pair until a new one is nominated (RFC 8445 §9); DTLS runs over the ICE
// component and is not touched.

/// ICE credentials of one description (RFC 8839 §5.4): `ufrag` 4–256 and `pwd` 22–256
/// ice-chars (`ALPHA / DIGIT / "+" / "/"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

/// RFC 8839 `ice-char`.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl IceCredentials {
    /// Fresh credentials from the kernel CSPRNG (getrandom(2)): an 8-char ufrag (48 bits) and a
    /// 24-char pwd (144 bits; RFC 8445 §5.3 asks for at least 128). Err only when getrandom
    /// fails, which a Linux ≥ 3.17 kernel does not do once booted.
    pub fn generate() -> EngineResult<Self> {
        let mut bytes = [0u8; 32];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: writes at most `len - filled` bytes into the rest of `bytes`.
            let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "getrandom failed: no ICE credentials");
                return Err(EngineError::new(ErrorCode::OperationError, format!("getrandom: {e}")));
            }
            filled += n as usize;
        }
        let chars = |b: &[u8]| b.iter().map(|x| ICE_CHARS[(*x & 63) as usize] as char).collect::<String>();
        Ok(Self { ufrag: chars(&bytes[..8]), pwd: chars(&bytes[8..]) })
    }

    /// The first `a=ice-ufrag`/`a=ice-pwd` of an SDP text (media or session level).
    pub fn of_sdp(sdp: &str) -> Option<Self> {
        let val =
            |key: &str| sdp.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()));
        Some(Self { ufrag: val("a=ice-ufrag:")?, pwd: val("a=ice-pwd:")? })
    }

    /// `sdp` with every `a=ice-ufrag` and `a=ice-pwd` line carrying these credentials (one
    /// transport per bundle group, so all m-lines share them). Line endings are kept.
    pub fn write_into(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            let body = line.trim_end_matches(['\r', '\n']);
            let eol = &line[body.len()..];
            if body.starts_with("a=ice-ufrag:") {
                out.push_str("a=ice-ufrag:");
                out.push_str(&self.ufrag);
                out.push_str(eol);
            } else if body.starts_with("a=ice-pwd:") {
                out.push_str("a=ice-pwd:");
                out.push_str(&self.pwd);
                out.push_str(eol);
            } else {
                out.push_str(line);
            }
        }
        out
    }
}

/// The first ice-ufrag of webrtcbin's current local (`local`) or remote description.
fn current_ufrag(webrtc: &gst::Element, local: bool) -> Option<String> {
    let prop = if local { "current-local-description" } else { "current-remote-description" };
    let desc = webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>(prop)?;
    let msg = desc.sdp();
    (0..msg.medias_len().max(1)).find_map(|i| super::sdp::ufrag(msg, i))
}

/// Whether `msg`, about to be given to webrtcbin as its local (`local`) or remote description,
/// changes that side's ICE credentials (an ICE restart by JSEP §5.2.1/§5.3.1, RFC 8839 §4.4.1.1).
/// False for a first description.
pub fn changes_credentials(webrtc: &gst::Element, local: bool, msg: &gst_sdp::SDPMessageRef) -> bool {
    let Some(current) = current_ufrag(webrtc, local) else { return false };
    let new = (0..msg.medias_len().max(1)).find_map(|i| super::sdp::ufrag(msg, i));
    new.is_some_and(|n| n != current)
}

/// Whether webrtcbin's pending remote offer restarts ICE (its ufrag differs from the current
/// remote description's): the answer to it must carry new local credentials (JSEP §5.3.1).
pub fn remote_offer_restarts(webrtc: &gst::Element) -> bool {
    let Some(pending) =
        webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>("pending-remote-description")
    else {
        return false;
    };
    pending.type_() == gst_webrtc::WebRTCSDPType::Offer && changes_credentials(webrtc, false, pending.sdp())
}

/// The libnice functions used here, resolved once from the libnice webrtcbin already loaded
/// (libgstwebrtcnice links it), so the daemon does not link libnice itself and cross-builds
/// need no libnice-dev. C signatures from libnice 0.1.x `agent.h` / `candidate.h`.
type NiceAgentPtr = *mut glib::gobject_ffi::GObject;
/// `gboolean nice_agent_restart_stream (NiceAgent *agent, guint stream_id)`
type RestartStreamFn = unsafe extern "C" fn(NiceAgentPtr, u32) -> glib::ffi::gboolean;
/// `GSList *nice_agent_get_local_candidates (NiceAgent *agent, guint stream_id, guint component_id)`
type GetLocalCandidatesFn = unsafe extern "C" fn(NiceAgentPtr, u32, u32) -> *mut glib::ffi::GSList;
/// `gchar *nice_agent_generate_local_candidate_sdp (NiceAgent *agent, NiceCandidate *candidate)`
type CandidateSdpFn = unsafe extern "C" fn(NiceAgentPtr, *mut libc::c_void) -> *mut libc::c_char;
/// `void nice_candidate_free (NiceCandidate *candidate)`
type CandidateFreeFn = unsafe extern "C" fn(*mut libc::c_void);

struct NiceFns {
    restart_stream: RestartStreamFn,
    get_local_candidates: GetLocalCandidatesFn,
    candidate_sdp: CandidateSdpFn,
    candidate_free: CandidateFreeFn,
}

fn nice_fns() -> Option<&'static NiceFns> {
    static FNS: OnceLock<Option<NiceFns>> = OnceLock::new();
    FNS.get_or_init(|| {
        type Sym = *mut libc::c_void;
        // SAFETY: dlopen/dlsym with NUL-terminated names; RTLD_NOLOAD only returns a handle for
        // a library already in the process (no new initialisers run); the handle is kept for
        // the process's lifetime. Each address is transmuted to the type named after it, whose
        // signature is libnice's (see the type aliases).
        unsafe {
            let handle = libc::dlopen(c"libnice.so.10".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_NOW);
            if handle.is_null() {
                return None;
            }
            let sym = |name: &std::ffi::CStr| {
                let p = libc::dlsym(handle, name.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(NiceFns {
                restart_stream: std::mem::transmute::<Sym, RestartStreamFn>(sym(
                    c"nice_agent_restart_stream",
                )?),
                get_local_candidates: std::mem::transmute::<Sym, GetLocalCandidatesFn>(sym(
                    c"nice_agent_get_local_candidates",
                )?),
                candidate_sdp: std::mem::transmute::<Sym, CandidateSdpFn>(sym(
                    c"nice_agent_generate_local_candidate_sdp",
                )?),
                candidate_free: std::mem::transmute::<Sym, CandidateFreeFn>(sym(c"nice_candidate_free")?),
            })
        }
    })
    .as_ref()
}

/// Switches off UPnP IGD in webrtcbin's libnice agent; call before the first gathering.
///
/// libnice's `upnp` property defaults to TRUE and webrtcbin 1.22 leaves it so: at each
/// gathering the agent multicasts SSDP discovery (239.255.255.250:1900) on every interface and
/// asks any Internet gateway device that answers to forward a port to each host candidate
/// (UPnP IGD `AddPortMapping`). No browser does this — WebRTC reaches past NATs with STUN/TURN
/// (RFC 8445 §5.1.1) — and on an enterprise LAN a thin client probing routers and opening ports
/// on them is what IT teams block; it also loads a GUPnP/libsoup context into every call.
/// Returns an error (logged by the caller; the call proceeds) when the ICE implementation is
/// not libnice.
pub fn disable_upnp(webrtc: &gst::Element) -> Result<(), String> {
    let agent = nice_agent(webrtc)?;
    if agent.find_property("upnp").is_some() {
        agent.set_property("upnp", false);
    }
    Ok(())
}

/// webrtcbin's libnice agent, type-checked.
fn nice_agent(webrtc: &gst::Element) -> Result<glib::Object, String> {
    let ice = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
    if ice.find_property("agent").is_none() {
        return Err(format!("ICE implementation {} has no libnice agent", ice.type_().name()));
    }
    let agent = ice.property::<glib::Object>("agent");
    if agent.type_().name() != "NiceAgent" {
        return Err(format!("webrtcbin's ICE agent is a {}, not a NiceAgent", agent.type_().name()));
    }
    Ok(agent)
}

/// `(m-line index, libnice stream id)` of webrtcbin's ICE transports (one per bundle group /
/// m-line): transceiver → sender → `transport` (DTLS) → `transport` (ICE) → `stream` →
/// `stream-id`. The m-line is the first transceiver's on that stream.
fn ice_streams(webrtc: &gst::Element) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut idx = 0i32;
    while let Some(trans) =
        webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&idx])
    {
        idx += 1;
        let id = trans
            .property::<Option<gst_webrtc::WebRTCRTPSender>>("sender")
            .and_then(|s| s.property::<Option<gst_webrtc::WebRTCDTLSTransport>>("transport"))
            .map(|d| d.property::<gst_webrtc::WebRTCICETransport>("transport"))
            .filter(|t| t.find_property("stream").is_some())
            .and_then(|t| t.property::<Option<glib::Object>>("stream"))
            .filter(|s| s.find_property("stream-id").is_some())
            .map(|s| s.property::<u32>("stream-id"));
        let mline = trans.property::<u32>("mlineindex");
        if let Some(id) = id
            && !out.iter().any(|(_, s)| *s == id)
        {
            out.push((mline, id));
        }
    }
    out
}

/// The local candidates (`(m-line index, "candidate:…")`) libnice holds for webrtcbin's ICE
/// streams (component 1: rtcp-mux). After a restart libnice gathers nothing new (its local
/// candidates stay), so these are signalled again for the new credentials (trickle ICE, RFC
/// 8838 §4: the far end dropped the old generation's). Empty when libnice is not reachable.
pub fn local_candidates(webrtc: &gst::Element) -> Vec<(u32, String)> {
    let (Some(fns), Ok(agent)) = (nice_fns(), nice_agent(webrtc)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (mline, stream) in ice_streams(webrtc) {
        // SAFETY: `agent` is a live NiceAgent (type checked, reference held). The list and its
        // candidates are ours (transfer full): each candidate's SDP string is copied then
        // g_free'd, each candidate freed with nice_candidate_free, the list with g_slist_free.
        unsafe {
            let list = (fns.get_local_candidates)(agent.as_ptr(), stream, 1);
            let mut node = list;
            while !node.is_null() {
                let cand = (*node).data;
                let text = (fns.candidate_sdp)(agent.as_ptr(), cand);
                if !text.is_null() {
                    let line = std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned();
                    glib::ffi::g_free(text.cast());
                    out.push((mline, line.trim().trim_start_matches("a=").to_string()));
                }
                (fns.candidate_free)(cand);
                node = (*node).next;
            }
            glib::ffi::g_slist_free(list);
        }
    }
    out
}

/// Restarts ICE in webrtcbin's libnice agent (`nice_agent_restart_stream` on every stream), as
/// RFC 8445 §9 asks before new credentials are used: new checks, old selected pair kept until
/// a new pair is nominated. Call it before giving webrtcbin the offer (local or remote) with
/// the new credentials: webrtcbin then sets them on libnice. Returns the restarted stream ids;
/// Err when webrtcbin's ICE is not libnice or the symbols are missing (the caller goes on
/// without a restart and logs it).
pub fn restart_streams(webrtc: &gst::Element) -> Result<Vec<u32>, String> {
    let agent = nice_agent(webrtc)?;
    let fns = nice_fns().ok_or("libnice.so.10 (nice_agent_restart_stream & co.) is not loaded")?;
    let ids: Vec<u32> = ice_streams(webrtc).into_iter().map(|(_, id)| id).collect();
    if ids.is_empty() {
        return Err("no ICE stream to restart".into());
    }
    for id in &ids {
        // SAFETY: `agent` is a live NiceAgent (type checked, reference held for the call);
        // libnice locks the agent itself and returns FALSE for an unknown stream.
        let ok = unsafe { (fns.restart_stream)(agent.as_ptr(), *id) };
        if ok == glib::ffi::GFALSE {
            return Err(format!("nice_agent_restart_stream refused stream {id}"));
        }
    }
    Ok(ids)
}

/// `sdp` (an offer or answer webrtcbin made) with fresh [`IceCredentials`]: an ICE restart's
/// offer (JSEP §5.2.1 "iceRestart") or the answer to a remote restart (JSEP §5.3.1). `why`
/// goes to the log.
pub fn with_new_credentials(sdp: &str, why: &str) -> EngineResult<String> {
    let new = IceCredentials::generate()?;
    let old = IceCredentials::of_sdp(sdp).map(|c| c.ufrag).unwrap_or_default();
    // ICE credentials only at debug level (issue 7, privacy).
    tracing::info!(event = "ice-restart", "ICE restart: new local credentials ({why})");
    tracing::debug!(old_ufrag = %old, new_ufrag = %new.ufrag, "ICE restart credentials");
    Ok(new.write_into(sdp))
}

/// Called just before webrtcbin is given `msg` as its local (`local`) or remote description
/// (`offer`: of type offer). An offer that changes that side's credentials restarts libnice's
/// streams ([`restart_streams`]; a failure is logged and the description still goes in, as
/// before restarts existed). A local description with new credentials also gives the local
/// candidates to signal again once webrtcbin took it.
pub fn before_description(
    webrtc: &gst::Element,
    local: bool,
    offer: bool,
    msg: &gst_sdp::SDPMessageRef,
) -> RestartStep {
    let mut step = RestartStep::default();
    if !changes_credentials(webrtc, local, msg) {
        return step;
    }
    if offer {
        match restart_streams(webrtc) {
            Ok(ids) => {
                step.restarted = true;
                tracing::info!(event = "ice-restart", local, streams = ?ids, "ICE restart: libnice streams restarted");
            }
            Err(e) => tracing::warn!(event = "ice-restart", local, reason = %e,
                "ICE restart: libnice could not be restarted; new credentials without new checks"),
        }
    }
    if local {
        step.candidates = local_candidates(webrtc);
    }
    step
}

/// `sdp` (an offer or answer webrtcbin just made, no restart asked) with the credentials of
/// webrtcbin's local description (pending, else current). webrtcbin 1.22 copies the
/// credentials of the last SDP it *generated*, which after a restart are the pre-restart ones
/// the engine replaced; a re-offer with them would restart ICE again by accident.
pub fn with_current_credentials(webrtc: &gst::Element, sdp: &str) -> String {
    let Some(desc) = webrtc.property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
    else {
        return sdp.to_string();
    };
    let msg = desc.sdp();
    let current = (0..msg.medias_len().max(1)).find_map(|i| {
        let ufrag = super::sdp::ufrag(msg, i)?;
        let pwd =
            msg.media(i).and_then(|m| m.attribute_val("ice-pwd")).or_else(|| msg.attribute_val("ice-pwd"))?;
        Some(IceCredentials { ufrag, pwd: pwd.to_string() })
    });
    match current {
        Some(c) if IceCredentials::of_sdp(sdp).as_ref() != Some(&c) => c.write_into(sdp),
        _ => sdp.to_string(),
    }
}

/// What [`before_description`] did.
#[derive(Debug, Default)]
pub struct RestartStep {
    /// libnice's streams were restarted.
    pub restarted: bool,
    /// Local candidates to signal again once webrtcbin took the description.
    pub candidates: Vec<(u32, String)>,
}

/// An ICE restart in progress, as far as the page-visible states go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restarting {
    /// None running (or its checks ended).
    #[default]
    No,
    /// Begun while the page saw `connected`/`completed`.
    FromConnected,
    /// Begun from `new`, `checking`, `disconnected` or `failed`.
    FromElsewhere,
}

/// The ICE connection and connection states the page sees while a restart runs. libnice puts
/// its component back to gathering and checking (webrtcbin: ICE `new`, then `checking`;
/// connection `connecting`), but WebRTC 1.0 §5.6 (RTCIceTransportState) says a restart from
/// `completed` goes to `connected`, one from `connected` changes nothing (media goes on over
/// the old pair, RFC 8445 §9) and one from `disconnected`/`failed` goes to `checking`. Ends
/// (`restarting` = [`Restarting::No`]) when webrtcbin reports both states up again, or a
/// failure.
pub fn states_during_restart(
    restarting: &mut Restarting,
    ice: vdimedia_protocol::api::RtcIceConnectionState,
    conn: vdimedia_protocol::api::RtcPeerConnectionState,
) -> (vdimedia_protocol::api::RtcIceConnectionState, vdimedia_protocol::api::RtcPeerConnectionState) {
    use vdimedia_protocol::api::{RtcIceConnectionState as I, RtcPeerConnectionState as C};
    if *restarting == Restarting::No {
        return (ice, conn);
    }
    let ice_busy = matches!(ice, I::New | I::Checking);
    let conn_busy = matches!(conn, C::New | C::Connecting);
    // webrtcbin updates its connection state after its ICE state: wait for both.
    let healthy = matches!(ice, I::New | I::Checking | I::Connected | I::Completed);
    if !healthy || (!ice_busy && !conn_busy) {
        *restarting = Restarting::No;
        return (ice, conn);
    }
    let (busy_ice, busy_conn) = if *restarting == Restarting::FromConnected {
        (I::Connected, C::Connected)
    } else {
        (I::Checking, C::Connecting)
    };
    (if ice_busy { busy_ice } else { ice }, if conn_busy { busy_conn } else { conn })
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

    #[test]
    fn fresh_ice_credentials_follow_rfc_8839_and_differ() {
        let a = IceCredentials::generate().unwrap();
        let b = IceCredentials::generate().unwrap();
        assert_ne!(a, b);
        for c in [&a, &b] {
            assert!(c.ufrag.len() >= 4 && c.pwd.len() >= 22, "{c:?}");
            assert!(c.ufrag.bytes().chain(c.pwd.bytes()).all(|x| ICE_CHARS.contains(&x)), "{c:?}");
        }
    }

    #[test]
    fn credentials_are_rewritten_in_every_m_line_keeping_line_endings() {
        let sdp = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old1\r\n\
                   a=ice-pwd:oldoldoldoldoldoldoldold\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old1\r\n\
                   a=ice-pwd:oldoldoldoldoldoldoldold\r\na=ice-options:trickle\r\n";
        assert_eq!(IceCredentials::of_sdp(sdp).unwrap().ufrag, "old1");
        let new = IceCredentials { ufrag: "NeW+".into(), pwd: "p/".repeat(11) };
        let out = new.write_into(sdp);
        assert_eq!(IceCredentials::of_sdp(&out), Some(new));
        assert!(!out.contains("old"), "{out}");
        assert_eq!(out.matches("\r\n").count(), sdp.matches("\r\n").count());
        assert!(out.contains("a=ice-options:trickle\r\n"));
    }

    #[test]
    fn a_restart_from_connected_stays_connected_until_checks_end() {
        use vdimedia_protocol::api::{RtcIceConnectionState as I, RtcPeerConnectionState as C};
        let mut r = Restarting::FromConnected;
        assert_eq!(states_during_restart(&mut r, I::New, C::Connecting), (I::Connected, C::Connected));
        assert_eq!(states_during_restart(&mut r, I::Checking, C::Connecting), (I::Connected, C::Connected));
        // ICE back up before webrtcbin's connection state: still masked.
        assert_eq!(states_during_restart(&mut r, I::Completed, C::Connecting), (I::Completed, C::Connected));
        assert_eq!(r, Restarting::FromConnected);
        assert_eq!(states_during_restart(&mut r, I::Completed, C::Connected), (I::Completed, C::Connected));
        assert_eq!(r, Restarting::No, "done once both are up");
        assert_eq!(states_during_restart(&mut r, I::Checking, C::Connecting), (I::Checking, C::Connecting));
        // From disconnected/failed the page sees checking (not libnice's `new`), then the result.
        let mut r = Restarting::FromElsewhere;
        assert_eq!(states_during_restart(&mut r, I::New, C::Connecting), (I::Checking, C::Connecting));
        assert_eq!(states_during_restart(&mut r, I::Failed, C::Failed), (I::Failed, C::Failed));
        assert_eq!(r, Restarting::No);
    }
}
