//! The local control socket `vdimediactl` talks to (docs/control.md): a Unix stream socket,
//! mode 0600 in a 0700 folder, that accepts only peers of the daemon's own uid or root (checked
//! with `SO_PEERCRED`), and speaks JSON lines: one request object per line, one response
//! object per line.
//!
//! Methods: `status` (engine, sessions and their calls, devices, AEC), `devices`, `elements`
//! (which GStreamer elements this process finds), `test-call` (a loopback call through the real
//! engine and devices, see [`test_call`]).
//!
//! Never on the virtual channel: the VC is the page's; this socket is the endpoint admin's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};
use vdimedia_protocol::api::{MediaStreamConstraints, PcState, RtcConfiguration, RtcSdpType};

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::webrtc::{Codec, PcEvent, PcOptions, PeerConnection};

/// File name of the control socket inside the daemon's runtime folder.
pub const SOCKET_NAME: &str = "control.sock";

/// Longest request line accepted, bytes; a longer one is answered with `bad_request` and the
/// connection is closed.
pub const MAX_LINE: usize = 64 * 1024;

/// Longest `test-call`, seconds.
pub const MAX_TEST_CALL_SECS: f64 = 30.0;

/// A GStreamer element a call may need, with the Debian package that ships it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ElementReq {
    /// Factory name.
    pub name: &'static str,
    /// Debian package (or our own plugin) that provides it.
    pub package: &'static str,
    /// Calls cannot work without it (else: one codec or one device stack is lost).
    pub required: bool,
    /// What it is for.
    pub purpose: &'static str,
    /// Another element that does the same job when this one is missing.
    pub fallback: Option<&'static str>,
}

const fn el(
    name: &'static str,
    package: &'static str,
    required: bool,
    purpose: &'static str,
    fallback: Option<&'static str>,
) -> ElementReq {
    ElementReq { name, package, required, purpose, fallback }
}

/// Every element the engine uses, most basic first.
pub const ELEMENTS: &[ElementReq] = &[
    el("webrtcbin", "gstreamer1.0-plugins-bad", true, "WebRTC peer connection", None),
    el("nicesrc", "gstreamer1.0-nice", true, "ICE transport", None),
    el("nicesink", "gstreamer1.0-nice", true, "ICE transport", None),
    el("dtlssrtpenc", "gstreamer1.0-plugins-bad", true, "DTLS-SRTP keying", None),
    el("dtlssrtpdec", "gstreamer1.0-plugins-bad", true, "DTLS-SRTP keying", None),
    el("srtpenc", "gstreamer1.0-plugins-bad", true, "SRTP encryption", None),
    el("srtpdec", "gstreamer1.0-plugins-bad", true, "SRTP decryption", None),
    el("rtpbin", "gstreamer1.0-plugins-good", true, "RTP sessions, jitter buffer", None),
    el("opusenc", "gstreamer1.0-plugins-base", true, "Opus codec", None),
    el("opusdec", "gstreamer1.0-plugins-base", true, "Opus codec", None),
    el("rtpopuspay", "gstreamer1.0-plugins-good", true, "Opus RTP (RFC 7587)", None),
    el("rtpopusdepay", "gstreamer1.0-plugins-good", true, "Opus RTP (RFC 7587)", None),
    el("audioconvert", "gstreamer1.0-plugins-base", true, "sample formats", None),
    el("audioresample", "gstreamer1.0-plugins-base", true, "sample rates", None),
    el("g722enc", "gst-plugin-vdimedia (libgstvdimedia.so)", false, "G.722 codec", Some("avenc_g722")),
    el("g722dec", "gst-plugin-vdimedia (libgstvdimedia.so)", false, "G.722 codec", Some("avdec_g722")),
    el("avenc_g722", "gstreamer1.0-libav", false, "G.722 codec (libav)", Some("g722enc")),
    el("avdec_g722", "gstreamer1.0-libav", false, "G.722 codec (libav)", Some("g722dec")),
    el("rtpg722pay", "gstreamer1.0-plugins-good", false, "G.722 RTP", None),
    el("mulawenc", "gstreamer1.0-plugins-good", false, "PCMU codec", None),
    el("alawenc", "gstreamer1.0-plugins-good", false, "PCMA codec", None),
    el("pipewiresrc", "gstreamer1.0-pipewire", false, "PipeWire capture", Some("alsasrc")),
    el("pipewiresink", "gstreamer1.0-pipewire", false, "PipeWire playout", Some("alsasink")),
    el("alsasrc", "gstreamer1.0-alsa", false, "ALSA capture", Some("pipewiresrc")),
    el("alsasink", "gstreamer1.0-alsa", false, "ALSA playout", Some("pipewiresink")),
];

/// One element check: the requirement and whether this process's GStreamer registry has it.
#[derive(Debug, Clone, Serialize)]
pub struct ElementCheck {
    #[serde(flatten)]
    pub element: ElementReq,
    pub present: bool,
}

impl ElementCheck {
    /// A missing element whose job nothing else does: calls (required) or a feature lose it.
    pub fn is_failure(&self, all: &[ElementCheck]) -> bool {
        !self.present
            && !self.element.fallback.is_some_and(|f| all.iter().any(|c| c.element.name == f && c.present))
    }
}

/// Looks every element of [`ELEMENTS`] up in the GStreamer registry (loads no plugin).
/// Initialises GStreamer; fails only when GStreamer itself cannot start.
pub fn check_elements() -> EngineResult<Vec<ElementCheck>> {
    crate::webrtc::init_gstreamer()
        .map_err(|e| EngineError::operation(format!("GStreamer cannot start: {e}")))?;
    Ok(ELEMENTS
        .iter()
        .map(|e| ElementCheck { element: *e, present: gst::ElementFactory::find(e.name).is_some() })
        .collect())
}

/// The default control socket when none is configured: `$RUNTIME_DIRECTORY/control.sock`
/// (systemd `RuntimeDirectory=`), else `$XDG_RUNTIME_DIR/vdimedia/control.sock`.
pub fn default_socket_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several folders separated by ':'; the first is ours.
        let first = dir.to_string_lossy().split(':').next().unwrap_or_default().to_string();
        return Some(PathBuf::from(first).join(SOCKET_NAME));
    }
    std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("vdimedia").join(SOCKET_NAME))
}

/// Where the daemon puts its control socket: `configured` if set, else next to the VC socket
/// it listens on, else [`default_socket_path`].
pub fn socket_path(configured: Option<&Path>, vc_listen: Option<&Path>) -> Option<PathBuf> {
    configured
        .map(Path::to_path_buf)
        .or_else(|| vc_listen.and_then(Path::parent).map(|d| d.join(SOCKET_NAME)))
        .or_else(default_socket_path)
}

/// One request line: `{"id": 1, "method": "status", "params": {}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Echoed in the response; any JSON number the client picks.
    #[serde(default)]
    pub id: u64,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// One response line: `{"id": 1, "result": {...}}` or `{"id": 1, "error": {...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResponse {
    /// The request's id; `null` for a refusal sent before any request.
    pub id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<ControlError>,
}

/// Error codes: `permission_denied`, `bad_request`, `unknown_method`, `invalid_params`,
/// `operation_error` (the engine failed; `message` says why).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ControlError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ControlError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_string(), message: message.into() }
    }
}

impl From<EngineError> for ControlError {
    fn from(e: EngineError) -> Self {
        ControlError::new("operation_error", e.message)
    }
}

/// What the daemon tells `status` about itself besides the engine's state.
#[derive(Debug)]
pub struct DaemonInfo {
    /// How the virtual channel is reached (`unix:/path`, `tcp://…`, `socket-activation`).
    pub vc: String,
    pub started: Instant,
    /// The last device probe and handshake capabilities, reused while calls run.
    probe: Mutex<Option<Probe>>,
}

impl DaemonInfo {
    pub fn new(vc: String, started: Instant) -> Self {
        Self { vc, started, probe: Mutex::new(None) }
    }
}

/// Capabilities and devices from one probe made while no call ran.
#[derive(Debug, Clone)]
struct Probe {
    welcome: vdimedia_protocol::handshake::Welcome,
    devices: Value,
    at: Instant,
}

/// Devices and capabilities now. Calls do not stop the probe: PipeWire is probed by a
/// `pw-dump` child process (`media::backend_pipewire`), so it cannot deadlock a running
/// `pipewiresrc` as the former in-process device provider did (PipeWire 0.3.65). When a probe
/// fails (a typed `operation_error`), the last good one is returned instead, its age in
/// `devicesProbedSecsAgo`/`probedSecsAgo`.
async fn probe(engine: &Arc<Engine>, info: &DaemonInfo) -> Result<Probe, ControlError> {
    let welcome = engine.welcome().await;
    match devices(engine).await {
        Ok(devices) => {
            let p = Probe { welcome, devices, at: Instant::now() };
            *info.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
            Ok(p)
        }
        Err(e) => {
            warn!(error = %e.message, "device probe failed; answering with the last good probe, if any");
            info.probe.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(e)
        }
    }
}

/// Binds the control socket: creates its folder (0700) if missing, replaces a stale socket,
/// mode 0600. A live socket at `path` (another daemon) is `AddrInUse`.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    crate::vc::transport::bind_unix(path)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Serves the control socket until `shutdown` turns true. Each connection gets its own task;
/// peers of another uid (not root) get a `permission_denied` line and are disconnected.
pub async fn serve(
    listener: UnixListener,
    engine: Arc<Engine>,
    info: DaemonInfo,
    mut shutdown: watch::Receiver<bool>,
) {
    let info = Arc::new(info);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (engine, info) = (engine.clone(), info.clone());
                    tasks.spawn(async move {
                        if let Err(e) = handle(stream, engine, info).await {
                            debug!(error = %e, "control connection ended with an error");
                        }
                    }.instrument(info_span!("control")));
                }
                Err(e) => {
                    warn!(error = %e, "accept on the control socket failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
}

async fn write_line(w: &mut (impl AsyncWriteExt + Unpin), r: &ControlResponse) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

async fn handle(stream: UnixStream, engine: Arc<Engine>, info: Arc<DaemonInfo>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let me = effective_uid();
    let (rd, mut wr) = stream.into_split();
    if cred.uid() != me && cred.uid() != 0 {
        warn!(
            peer_uid = cred.uid(),
            peer_pid = ?cred.pid(),
            daemon_uid = me,
            "control connection refused: peer is neither the daemon's user nor root"
        );
        let r = ControlResponse {
            id: None,
            result: None,
            error: Some(ControlError::new(
                "permission_denied",
                format!(
                    "uid {} may not control this daemon (it runs as uid {me}; only that user or root may)",
                    cred.uid()
                ),
            )),
        };
        return write_line(&mut wr, &r).await;
    }
    debug!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), "control connection accepted");
    let mut rd = BufReader::new(rd).take(u64::MAX);
    let mut line = Vec::new();
    loop {
        line.clear();
        rd.set_limit(MAX_LINE as u64 + 1);
        let n = rd.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            warn!(bytes = line.len(), "control request too long; connection closed");
            let e = ControlError::new("bad_request", format!("request longer than {MAX_LINE} bytes"));
            return write_line(&mut wr, &ControlResponse { id: None, result: None, error: Some(e) }).await;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = match serde_json::from_slice::<ControlRequest>(&line) {
            Ok(req) => {
                info!(method = %req.method, peer_uid = cred.uid(), "control request");
                let result = dispatch(&engine, &info, &req.method, req.params).await;
                if let Err(e) = &result {
                    warn!(method = %req.method, code = %e.code, error = %e.message, "control request failed");
                }
                match result {
                    Ok(v) => ControlResponse { id: Some(req.id), result: Some(v), error: None },
                    Err(e) => ControlResponse { id: Some(req.id), result: None, error: Some(e) },
                }
            }
            Err(e) => {
                warn!(error = %e, "control request is not JSON of the expected shape");
                ControlResponse {
                    id: None,
                    result: None,
                    error: Some(ControlError::new("bad_request", format!("not a request object: {e}"))),
                }
            }
        };
        write_line(&mut wr, &response).await?;
    }
}

async fn dispatch(
    engine: &Arc<Engine>,
    info: &DaemonInfo,
    method: &str,
    params: Value,
) -> Result<Value, ControlError> {
    match method {
        "status" => Ok(status(engine, info).await),
        "devices" => {
            let p = probe(engine, info).await?;
            Ok(json!({
                "backend": engine.devices.backend().as_str(),
                "devices": p.devices,
                "probedSecsAgo": p.at.elapsed().as_secs(),
            }))
        }
        "elements" => {
            // The element-check child's report (or this process's registry once a session
            // initialised GStreamer): asking does not load GStreamer into an idle daemon.
            let report = tokio::task::spawn_blocking(crate::element_check::present_elements)
                .await
                .map_err(|e| ControlError::new("operation_error", e.to_string()))?;
            Ok(json!({ "elements": report.checks() }))
        }
        "test-call" => {
            let opts: TestCallOptions = if params.is_null() {
                TestCallOptions::default()
            } else {
                serde_json::from_value(params)
                    .map_err(|e| ControlError::new("invalid_params", e.to_string()))?
            };
            opts.validate().map_err(|e| ControlError::new("invalid_params", e))?;
            let report = test_call(engine, &opts).await;
            Ok(serde_json::to_value(report).unwrap_or_default())
        }
        other => Err(ControlError::new(
            "unknown_method",
            format!("{other:?} is not a method (status, devices, elements, test-call)"),
        )),
    }
}

async fn devices(engine: &Arc<Engine>) -> Result<Value, ControlError> {
    let e = engine.clone();
    let list = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || e.devices.enumerate()),
    )
    .await
    .map_err(|_| {
        warn!("device enumeration did not finish within 5 s");
        ControlError::new("operation_error", "device enumeration did not finish within 5 s")
    })?
    .map_err(|e| ControlError::new("operation_error", e.to_string()))??;
    Ok(serde_json::to_value(list).unwrap_or_default())
}

/// The `status` result (docs/control.md): engine identity, uptime, VC, codecs, AEC mode,
/// audio backend, every session with its peer connections (states, negotiated codec, packet
/// counts), and the devices. Does not initialise GStreamer: codecs come from the element-check
/// child's report (`element_check`) until a session has loaded GStreamer. Devices are probed now,
/// calls or not; if that fails, the last good probe is returned (`devicesProbedSecsAgo`).
pub async fn status(engine: &Arc<Engine>, info: &DaemonInfo) -> Value {
    let probed = probe(engine, info).await;
    let mut sessions = Vec::new();
    for s in engine.registry.snapshot() {
        let mut pcs = Vec::new();
        for pc in &s.peer_connections {
            pcs.push(pc_status(pc).await);
        }
        sessions.push(json!({
            "session": s.session,
            "openedSecsAgo": s.opened.elapsed().as_secs(),
            "peerConnections": pcs,
        }));
    }
    let mut v = json!({
        "engine": crate::engine::ENGINE,
        "protocol": vdimedia_protocol::PROTOCOL_VERSION,
        "pid": std::process::id(),
        "uptimeSecs": info.started.elapsed().as_secs(),
        "vc": info.vc,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "audioBackend": engine.devices.backend().as_str(),
        "sessions": sessions,
    });
    match probed {
        Ok(p) => {
            v["codecs"] = json!(p.welcome.capabilities.codecs);
            v["aec"] = json!(p.welcome.capabilities.aec);
            v["devices"] = p.devices;
            v["devicesProbedSecsAgo"] = json!(p.at.elapsed().as_secs());
        }
        Err(e) => {
            v["codecs"] = Value::Null;
            v["aec"] = Value::Null;
            v["devices"] = json!({ "error": e.message });
        }
    }
    v
}

async fn pc_status(pc: &PeerConnection) -> Value {
    let st = pc.state();
    let mut v = json!({
        "id": pc.id(),
        "signalingState": st.signaling_state,
        "iceConnectionState": st.ice_connection_state,
        "connectionState": st.connection_state,
        "codec": negotiated_codec(&st),
    });
    // A bounded wait: a status query must answer even when webrtcbin is busy.
    let stats = tokio::time::timeout(Duration::from_secs(2), pc.get_stats()).await;
    if stats.is_err() {
        warn!(pc = pc.id(), "getStats did not answer within 2 s; status without packet counts");
    }
    if let Ok(Ok(stats)) = stats {
        let sum = |kind: &str, field: &str| -> u64 {
            stats.iter().filter(|s| s["type"] == kind).filter_map(|s| s[field].as_u64()).sum()
        };
        v["packetsSent"] = json!(sum("outbound-rtp", "packetsSent"));
        v["packetsReceived"] = json!(sum("inbound-rtp", "packetsReceived"));
        v["packetsLost"] = json!(sum("inbound-rtp", "packetsLost"));
    }
    v
}

/// The codec of the first audio m-line of the current answer, as `name/clock[/channels]`
/// (its first payload type's `a=rtpmap`, RFC 8866 §6.6): the codec both sides send with.
pub fn negotiated_codec(st: &PcState) -> Option<String> {
    let answer = [&st.current_local_description, &st.current_remote_description]
        .into_iter()
        .flatten()
        .find(|d| d.sdp_type == RtcSdpType::Answer)?;
    let mut pt = None;
    for line in answer.sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=audio ") {
            if pt.is_some() {
                break;
            }
            pt = Some(m.split_whitespace().nth(2)?.to_string());
        } else if let (Some(pt), Some(map)) = (&pt, line.strip_prefix("a=rtpmap:"))
            && let Some((p, codec)) = map.split_once(' ')
            && p == pt
        {
            return Some(codec.to_string());
        }
    }
    None
}

/// Parameters of `test-call`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestCallOptions {
    /// How long audio runs once the call is set up, seconds (0.5..=30). Default 3.
    #[serde(default = "default_secs")]
    pub seconds: f64,
    /// Codec to negotiate: `opus`, `G722`, `PCMU` or `PCMA`. Default: the engine's order.
    #[serde(default)]
    pub codec: Option<String>,
}

fn default_secs() -> f64 {
    3.0
}

impl Default for TestCallOptions {
    fn default() -> Self {
        Self { seconds: default_secs(), codec: None }
    }
}

impl TestCallOptions {
    /// Checks the ranges; the error says which value is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.5..=MAX_TEST_CALL_SECS).contains(&self.seconds) {
            return Err(format!("seconds: {} is outside 0.5..={MAX_TEST_CALL_SECS}", self.seconds));
        }
        if let Some(c) = &self.codec {
            codec_by_name(c).ok_or_else(|| format!("codec: {c:?} is not opus, G722, PCMU or PCMA"))?;
        }
        Ok(())
    }
}

fn codec_by_name(name: &str) -> Option<Codec> {
    Codec::DEFAULT_ORDER.iter().copied().find(|c| format!("{c:?}").eq_ignore_ascii_case(name))
}

/// One direction of the test call, as measured at the receiving end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionReport {
    /// What was sent: `microphone (LABEL)` or `test tone 440 Hz`.
    pub source: String,
    /// Where it was played: `speaker (LABEL)` or `meter only`.
    pub sink: String,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Decoded audio that reached the receiving end's sink, seconds.
    pub audio_secs: f64,
    /// RMS level of that audio, dBFS (-120 for digital silence).
    pub level_dbfs: f64,
}

/// What `test-call` found. `passed`: both directions decoded audio, and the tone arrived at
/// a sane level (proof the decode path works; the microphone may legitimately be silent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestCallReport {
    pub passed: bool,
    /// `daemon` (through the running engine) or `in-process` (vdimediactl's own engine).
    pub ran_in: String,
    pub backend: String,
    pub codec: Option<String>,
    /// From createOffer to the first decoded audio both ways, ms.
    pub setup_ms: Option<u64>,
    /// Microphone → far end, and far end's tone → speaker.
    pub uplink: DirectionReport,
    pub downlink: DirectionReport,
    /// Why it failed, or a hint (a silent microphone).
    pub notes: Vec<String>,
}

/// Decoded audio seen at a sink: interleaved S16 samples, their energy.
#[derive(Default, Debug)]
struct Meter {
    frames: u64,
    rate: u32,
    sum_sq: f64,
    samples: u64,
}

impl Meter {
    fn secs(&self) -> f64 {
        if self.rate == 0 { 0.0 } else { self.frames as f64 / self.rate as f64 }
    }
    fn dbfs(&self) -> f64 {
        if self.samples == 0 || self.sum_sq <= 0.0 {
            return -120.0;
        }
        (20.0 * (self.sum_sq / self.samples as f64).sqrt().log10()).max(-120.0)
    }
}

/// `audioconvert ! capsfilter(S16LE) ! <then>` with a probe that meters what passes.
fn metering_bin(then: gst::Element) -> EngineResult<(gst::Element, Arc<Mutex<Meter>>)> {
    let err = |e: gst::glib::BoolError| EngineError::operation(e.to_string());
    let bin = gst::Bin::new();
    let convert = gst::ElementFactory::make("audioconvert").build().map_err(err)?;
    let capsf = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::builder("audio/x-raw").field("format", "S16LE").build())
        .build()
        .map_err(err)?;
    bin.add_many([&convert, &capsf, &then]).map_err(err)?;
    gst::Element::link_many([&convert, &capsf, &then]).map_err(err)?;
    let ghost =
        gst::GhostPad::with_target(&convert.static_pad("sink").expect("audioconvert sink")).map_err(err)?;
    bin.add_pad(&ghost).map_err(err)?;
    let meter = Arc::new(Mutex::new(Meter::default()));
    let m = meter.clone();
    capsf.static_pad("src").expect("capsfilter src").add_probe(
        gst::PadProbeType::BUFFER,
        move |pad, info| {
            let (Some(buf), Some(caps)) = (info.buffer(), pad.current_caps()) else {
                return gst::PadProbeReturn::Ok;
            };
            let s = caps.structure(0);
            let rate = s.and_then(|s| s.get::<i32>("rate").ok()).unwrap_or(0).max(0) as u32;
            let channels = s.and_then(|s| s.get::<i32>("channels").ok()).unwrap_or(1).max(1) as u64;
            let Ok(map) = buf.map_readable() else {
                return gst::PadProbeReturn::Ok;
            };
            let energy: f64 = map
                .chunks_exact(2)
                .map(|b| {
                    let v = i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0;
                    v * v
                })
                .sum();
            let n = (map.len() / 2) as u64;
            let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
            m.rate = rate;
            m.frames += n / channels;
            m.samples += n;
            m.sum_sq += energy;
            gst::PadProbeReturn::Ok
        },
    );
    Ok((bin.upcast(), meter))
}

/// A loopback call through the real engine: peer connection A sends the default microphone
/// (`getUserMedia({audio: true})`) and plays what it receives on the default output; B sends a
/// 440 Hz tone and meters what it receives. Both are webrtcbin pipelines of this process,
/// connected over 127.0.0.1 ICE with DTLS-SRTP, negotiated like a page would (offer from A).
/// Runs `opts.seconds` after first audio and reports packets and levels each way.
pub async fn test_call(engine: &Arc<Engine>, opts: &TestCallOptions) -> TestCallReport {
    let mut report = TestCallReport {
        ran_in: "daemon".into(),
        backend: engine.devices.backend().as_str().to_string(),
        ..Default::default()
    };
    if let Err(e) = run_test_call(engine, opts, &mut report).await {
        warn!(error = %e.message, "test call failed");
        report.passed = false;
        report.notes.push(e.message);
    }
    report
}

async fn run_test_call(
    engine: &Arc<Engine>,
    opts: &TestCallOptions,
    report: &mut TestCallReport,
) -> EngineResult<()> {
    engine.warm_up().await?;
    let e = engine.clone();
    let (tracks, output) = tokio::task::spawn_blocking(move || {
        let constraints: MediaStreamConstraints =
            serde_json::from_value(json!({ "audio": true })).expect("static constraints");
        let tracks = e.devices.get_user_media(&constraints)?;
        let output = e.devices.output(None)?;
        EngineResult::Ok((tracks, output))
    })
    .await
    .map_err(|e| EngineError::operation(format!("device task failed: {e}")))??;
    let mic =
        tracks.into_iter().next().ok_or_else(|| EngineError::operation("getUserMedia gave no track"))?;
    let mic_label = mic.info().label;
    report.uplink.source = format!("microphone ({mic_label})");
    report.uplink.sink = "meter only".into();
    report.downlink.source = "test tone 440 Hz".into();
    report.downlink.sink = format!("speaker ({})", output.label);

    let codecs = match opts.codec.as_deref().and_then(codec_by_name) {
        Some(c) => vec![c],
        None => Codec::DEFAULT_ORDER.to_vec(),
    };
    let options =
        PcOptions { loopback_ice: true, codecs, jitter_buffer_ms: engine.config.webrtc.jitter_buffer_ms };
    let (tx_a, mut rx_a) = tokio::sync::mpsc::unbounded_channel();
    let (tx_b, mut rx_b) = tokio::sync::mpsc::unbounded_channel();
    let config = RtcConfiguration::default();
    let a = PeerConnection::with_options("test-call-a", &config, options.clone(), tx_a)?;
    let b = PeerConnection::with_options("test-call-b", &config, options, tx_b)?;
    // Closed on every path out, so the devices are released; counted as live calls meanwhile.
    struct CloseOnDrop(PeerConnection, PeerConnection, Arc<Engine>);
    impl Drop for CloseOnDrop {
        fn drop(&mut self) {
            self.0.close();
            self.1.close();
            self.2.peer_connections.fetch_sub(2, std::sync::atomic::Ordering::Relaxed);
        }
    }
    engine.peer_connections.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
    let _guard = CloseOnDrop(a.clone(), b.clone(), engine.clone());

    let started = Instant::now();
    let tone = gst::ElementFactory::make("audiotestsrc")
        .property("is-live", true)
        .property("freq", 440.0f64)
        .property("volume", 0.5f64)
        .property("samplesperbuffer", 960i32)
        .build()
        .map_err(|e| {
            EngineError::operation(format!("audiotestsrc: {e} (install gstreamer1.0-plugins-base)"))
        })?;
    a.add_track("test-call-mic", mic.make_source()?, vec!["test-call-a".into()])?;
    let offer = a.create_offer(&Default::default()).await?;
    a.set_local_description(Some(offer.clone())).await?;
    b.set_remote_description(offer).await?;
    b.add_track("test-call-tone", tone, vec!["test-call-b".into()])?;
    b.create_answer().await?;
    b.set_local_description(None).await?;
    let answer = b
        .state()
        .local_description
        .ok_or_else(|| EngineError::operation("the answerer has no local description"))?;
    a.set_remote_description(answer).await?;
    report.codec = negotiated_codec(&a.state());

    let (speaker_meter, from_b) = metering_bin(output.make_sink()?)?;
    let fakesink = gst::ElementFactory::make("fakesink")
        .property("sync", true)
        .property("async", false)
        .build()
        .map_err(|e| EngineError::operation(e.to_string()))?;
    let (b_meter, from_a) = metering_bin(fakesink)?;
    let track_of = |pc: &PeerConnection| {
        pc.state().transceivers.first().map(|t| t.receiver.track.id.clone()).unwrap_or_default()
    };
    a.set_playout(&track_of(&a), Some(speaker_meter))?;
    b.set_playout(&track_of(&b), Some(b_meter))?;

    // Trickle candidates between the two until both hear audio, then for `seconds` more.
    let lock = |m: &Arc<Mutex<Meter>>| m.lock().unwrap_or_else(|e| e.into_inner()).secs();
    let setup_deadline = Instant::now() + Duration::from_secs(15);
    let mut run_until: Option<Instant> = None;
    loop {
        while let Ok(ev) = rx_a.try_recv() {
            if let PcEvent::IceCandidate(c) = ev {
                b.add_ice_candidate(c).await?;
            }
        }
        while let Ok(ev) = rx_b.try_recv() {
            if let PcEvent::IceCandidate(c) = ev {
                a.add_ice_candidate(c).await?;
            }
        }
        let now = Instant::now();
        match run_until {
            None if lock(&from_a) > 0.0 && lock(&from_b) > 0.0 => {
                report.setup_ms = Some(started.elapsed().as_millis() as u64);
                run_until = Some(now + Duration::from_secs_f64(opts.seconds));
            }
            None if now > setup_deadline => {
                report.notes.push(format!(
                    "no audio within 15 s (ICE {:?}, connection {:?})",
                    a.state().ice_connection_state,
                    a.state().connection_state
                ));
                break;
            }
            Some(t) if now >= t => break,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let count = |stats: &[Value], kind: &str, field: &str| -> u64 {
        stats.iter().filter(|s| s["type"] == kind).filter_map(|s| s[field].as_u64()).sum()
    };
    let sa = a.get_stats().await.unwrap_or_default();
    let sb = b.get_stats().await.unwrap_or_default();
    report.uplink.packets_sent = count(&sa, "outbound-rtp", "packetsSent");
    report.uplink.packets_received = count(&sb, "inbound-rtp", "packetsReceived");
    report.downlink.packets_sent = count(&sb, "outbound-rtp", "packetsSent");
    report.downlink.packets_received = count(&sa, "inbound-rtp", "packetsReceived");
    {
        let m = from_a.lock().unwrap_or_else(|e| e.into_inner());
        report.uplink.audio_secs = (m.secs() * 100.0).round() / 100.0;
        report.uplink.level_dbfs = (m.dbfs() * 10.0).round() / 10.0;
    }
    {
        let m = from_b.lock().unwrap_or_else(|e| e.into_inner());
        report.downlink.audio_secs = (m.secs() * 100.0).round() / 100.0;
        report.downlink.level_dbfs = (m.dbfs() * 10.0).round() / 10.0;
    }
    let want = opts.seconds * 0.5;
    let up_ok = report.uplink.packets_received > 0 && report.uplink.audio_secs >= want;
    let down_ok = report.downlink.packets_received > 0
        && report.downlink.audio_secs >= want
        && report.downlink.level_dbfs > -30.0;
    if !up_ok {
        report.notes.push(format!(
            "microphone → far end: {} packets, {:.2} s decoded (want ≥ {want:.2} s)",
            report.uplink.packets_received, report.uplink.audio_secs
        ));
    } else if report.uplink.level_dbfs <= -90.0 {
        report.notes.push("the microphone delivers digital silence: is it muted or unplugged?".into());
    }
    if !down_ok {
        report.notes.push(format!(
            "far end → speaker: {} packets, {:.2} s decoded at {:.1} dBFS (want ≥ {want:.2} s above -30 dBFS)",
            report.downlink.packets_received, report.downlink.audio_secs, report.downlink.level_dbfs
        ));
    }
    report.passed = up_ok && down_ok;
    info!(
        passed = report.passed,
        codec = ?report.codec,
        up_packets = report.uplink.packets_received,
        down_packets = report.downlink.packets_received,
        "test call done"
    );
    Ok(())
}

/// Error of a control-socket client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket is absent or refuses connections: the daemon is not running there.
    #[error("cannot connect to {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: the daemon closed the connection without an answer")]
    Closed { path: PathBuf },
    #[error("{path}: unreadable answer: {message}")]
    BadAnswer { path: PathBuf, message: String },
    /// The daemon answered with an error (e.g. `permission_denied`).
    #[error("{0}")]
    Refused(ControlError),
    #[error("{path}: no answer within {secs} s")]
    Timeout { path: PathBuf, secs: u64 },
}

/// Sends one request to the control socket at `path` and returns its `result`.
pub async fn request(
    path: &Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let secs = timeout.as_secs();
    let fut = async {
        let io = |source| ClientError::Io { path: path.to_path_buf(), source };
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect { path: path.to_path_buf(), source })?;
        let (rd, mut wr) = stream.into_split();
        let req = ControlRequest { id: 1, method: method.to_string(), params };
        let mut line = serde_json::to_vec(&req).unwrap_or_default();
        line.push(b'\n');
        // A refused peer may find the socket already closed: read the refusal anyway.
        let written = wr.write_all(&line).await;
        let mut answer = String::new();
        let n = BufReader::new(rd).read_line(&mut answer).await.map_err(io)?;
        if n == 0 {
            written.map_err(io)?;
            return Err(ClientError::Closed { path: path.to_path_buf() });
        }
        let r: ControlResponse = serde_json::from_str(&answer)
            .map_err(|e| ClientError::BadAnswer { path: path.to_path_buf(), message: e.to_string() })?;
        match (r.result, r.error) {
            (_, Some(e)) => Err(ClientError::Refused(e)),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout { path: path.to_path_buf(), secs }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_of_the_answer() {
        let answer =
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 9 0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:9 G722/8000\r\n";
        let mut st: PcState = serde_json::from_value(json!({
            "signalingState": "stable", "iceGatheringState": "complete",
            "iceConnectionState": "connected", "connectionState": "connected",
            "localDescription": null, "remoteDescription": null,
            "currentLocalDescription": null, "currentRemoteDescription": {"type": "answer", "sdp": answer},
            "pendingLocalDescription": null, "pendingRemoteDescription": null, "transceivers": []
        }))
        .unwrap();
        assert_eq!(negotiated_codec(&st).as_deref(), Some("G722/8000"));
        st.current_remote_description = None;
        assert_eq!(negotiated_codec(&st), None);
    }

    #[test]
    fn socket_path_prefers_config_then_vc_folder() {
        assert_eq!(
            socket_path(Some(Path::new("/x/c.sock")), Some(Path::new("/y/vc.sock"))),
            Some(PathBuf::from("/x/c.sock"))
        );
        assert_eq!(socket_path(None, Some(Path::new("/y/vc.sock"))), Some(PathBuf::from("/y/control.sock")));
    }

    #[test]
    fn test_call_options_are_checked() {
        assert!(TestCallOptions { seconds: 0.1, codec: None }.validate().is_err());
        assert!(TestCallOptions { seconds: 2.0, codec: Some("speex".into()) }.validate().is_err());
        assert!(TestCallOptions { seconds: 2.0, codec: Some("pcmu".into()) }.validate().is_ok());
    }
}
