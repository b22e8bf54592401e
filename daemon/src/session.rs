//! One logical session = one page. Owns the page's W3C objects (peer connections, capture
//! tracks, playout bindings) and turns each request (docs/protocol.md, "Methods") into a call
//! on them. This is the one hop from a method name to the module that implements it:
//!
//! | method | implemented by |
//! | --- | --- |
//! | `devices.enumerate`, `media.getUserMedia` | [`crate::media::MediaDevices`] |
//! | `track.*` | [`crate::media::LocalTrack`] + the peer connections sending it |
//! | `pc.*` | [`crate::webrtc::PeerConnection`] (webrtcbin) |
//! | `playout.*` | [`crate::media::AudioOutput`] sinks on the peer connection's pipeline |
//! | `ringtone.*` | [`crate::media::ringtone::Ringtone`], a pipeline of its own per ringtone |
//!
//! Requests are served one at a time, in order, like the W3C operations chain; a peer
//! connection's events that were produced while a request ran are sent before its response
//! (the spec fires `signalingstatechange` before `setLocalDescription` resolves).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamMap;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::{Instrument, Span, debug, info, info_span, warn};
use vdimedia_protocol::SessionId;
use vdimedia_protocol::api::{
    MediaStreamConstraints, RtcConfiguration, RtcIceCandidateInit, RtcOfferOptions,
    RtcRtpTransceiverDirection, RtcSessionDescriptionInit, RtcSignalingState,
};
use vdimedia_protocol::message::{ErrorBody, ErrorCode, Message, Request};

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::media::LocalTrack;
use crate::media::ringtone::{self, Ringtone, RingtoneEvent, RingtoneOptions};
use crate::vc::endpoint::Outbound;
use crate::webrtc::summary::CallSummary;
use crate::webrtc::{PcEvent, PcOptions, PeerConnection, TransceiverKindOrTrack};

/// Longest object id a page may choose (docs/protocol.md, "Methods").
const MAX_ID_LEN: usize = 64;

/// How long the final `getStats()` for the end-of-call summary may take before the connection
/// is closed without one: a page's close must not hang on a stuck pipeline.
const SUMMARY_STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Input to a session task from its channel.
#[derive(Debug)]
pub enum SessionInput {
    Message(Message),
    Close,
}

/// A remote track as announced by `pc.track`: which peer connection plays it, which streams
/// it belongs to.
struct RemoteTrack {
    pc: String,
    streams: Vec<String>,
}

/// An `<audio>` element bound to a remote stream (`playout.attach`): the tracks it plays now
/// and the output they play on.
struct Playout {
    stream: String,
    tracks: Vec<String>,
    sink_id: Option<String>,
}

pub struct Session {
    id: SessionId,
    engine: Arc<Engine>,
    out: mpsc::UnboundedSender<Outbound>,
    pcs: HashMap<String, PeerConnection>,
    events: StreamMap<String, UnboundedReceiverStream<PcEvent>>,
    tracks: HashMap<String, LocalTrack>,
    remote_tracks: HashMap<String, RemoteTrack>,
    playouts: HashMap<String, Playout>,
    /// The `session{session}` span this task runs in; peer connections' spans are its children.
    span: Span,
    /// When each peer connection first reached `connected` (the summary's call duration).
    connected_at: HashMap<String, Instant>,
    /// PipeWire as last seen ([`crate::media::monitor::PipeWireStatus`]): up, the generation
    /// the calls' devices are open on, and whether they were released for an outage.
    pw_up: bool,
    pw_generation: u64,
    pw_released: bool,
    /// Ids of peer connections the page closed. Their pipelines (webrtcbin with its ICE and
    /// signalling threads, decoders, device streams) are freed at `pc.close`, not when the page
    /// goes away, and later requests naming them get `invalid_state`. At most
    /// [`MAX_CLOSED_IDS`] are remembered (ids only).
    closed_pcs: std::collections::HashSet<String>,
    /// Ringtones playing now, by the page's id (`ringtone.play`); at most
    /// [`ringtone::MAX_RINGTONES_PER_SESSION`]. Each owns a pipeline, freed when it stops.
    ringtones: HashMap<String, Ringtone>,
    /// Where ringtones report their end or failure (held here so the receiver never closes).
    ringtone_tx: mpsc::UnboundedSender<RingtoneEvent>,
    ringtone_rx: mpsc::UnboundedReceiver<RingtoneEvent>,
}

/// How many closed peer-connection ids a session remembers for `invalid_state` answers; past
/// it, a request naming a closed one gets `not_found` instead.
const MAX_CLOSED_IDS: usize = 1024;

impl Session {
    pub fn new(id: SessionId, engine: Arc<Engine>, out: mpsc::UnboundedSender<Outbound>) -> Self {
        let (ringtone_tx, ringtone_rx) = mpsc::unbounded_channel();
        Self {
            id,
            engine,
            out,
            pcs: HashMap::new(),
            events: StreamMap::new(),
            tracks: HashMap::new(),
            remote_tracks: HashMap::new(),
            playouts: HashMap::new(),
            span: Span::none(),
            connected_at: HashMap::new(),
            pw_up: true,
            pw_generation: 0,
            pw_released: false,
            closed_pcs: std::collections::HashSet::new(),
            ringtones: HashMap::new(),
            ringtone_tx,
            ringtone_rx,
        }
    }

    /// Serves requests until the channel closes the session, then closes every peer
    /// connection and releases every device of this page.
    pub async fn run(mut self, mut input: mpsc::UnboundedReceiver<SessionInput>) {
        // The channel task instruments this future with the session span.
        self.span = Span::current();
        self.engine.registry.open_session(self.id);
        let mut device_changes = self.engine.device_watch.subscribe();
        let mut pipewire = self.engine.device_watch.pipewire_status();
        self.pw_generation = pipewire.borrow_and_update().generation;
        loop {
            tokio::select! {
                Ok(()) = device_changes.changed() => {
                    self.emit("devices.change", json!({}));
                    self.on_devices_changed().await;
                }
                Ok(()) = pipewire.changed() => {
                    let status = *pipewire.borrow_and_update();
                    self.on_pipewire_status(status).await;
                }
                msg = input.recv() => match msg {
                    Some(SessionInput::Message(Message::Request(req))) => {
                        let id = req.id;
                        let outcome = self.dispatch(req).await;
                        let after = self.drain_events_around_response().await;
                        let response = match outcome {
                            Ok(v) => Message::response_ok(id, v),
                            Err(e) => Message::response_err(id, e.to_body()),
                        };
                        self.send(Outbound::Message(self.id, response));
                        for (pc, ev) in after {
                            self.on_pc_event(&pc, ev).await;
                        }
                    }
                    Some(SessionInput::Message(other)) => {
                        warn!(message = ?kind_of(&other), "page sent a non-request message; ignored");
                        self.send(Outbound::Error(
                            self.id,
                            ErrorBody::new(ErrorCode::BadMessage, "pages may send requests only"),
                        ));
                    }
                    Some(SessionInput::Close) | None => break,
                },
                Some((pc, ev)) = self.events.next(), if !self.events.is_empty() => {
                    self.on_pc_event(&pc, ev).await;
                }
                Some(ev) = self.ringtone_rx.recv() => self.on_ringtone_event(ev),
            }
        }
        self.close_all().await;
    }

    fn send(&self, out: Outbound) {
        // The channel task is gone only when the channel is; then nothing can be delivered.
        let _ = self.out.send(out);
    }

    fn emit(&self, event: &str, params: Value) {
        self.send(Outbound::Message(self.id, Message::event(event, params)));
    }

    /// Handles every peer-connection event the request produced. The ones the W3C
    /// set-description steps fire before the promise settles (`signalingstatechange`, `track`)
    /// are sent now, ahead of the response; the rest (ICE gathering, candidates, connection
    /// states, `negotiationneeded`) are returned to be sent after it, where a browser fires them
    /// — a page must not see a local candidate before its `setLocalDescription` resolved.
    async fn drain_events_around_response(&mut self) -> Vec<(String, PcEvent)> {
        let mut after = Vec::new();
        while let Some(Some((pc, ev))) = self.events.next().now_or_never() {
            // `track` goes ahead of the response even when an ICE or connection state change
            // the description caused is already queued (early media on a pranswer): those are
            // queued tasks in a browser. A signaling change keeps its place after one, as
            // Chromium fires `negotiationneeded` before `stable` on a rollback.
            let before_response = matches!(ev, PcEvent::Track { .. })
                || after.is_empty() && matches!(ev, PcEvent::SignalingStateChange(_));
            if before_response {
                self.on_pc_event(&pc, ev).await;
            } else {
                after.push((pc, ev));
            }
        }
        after
    }

    /// The span of peer connection `pc` (its requests and events run inside it), or the
    /// session's when there is no such connection.
    fn pc_span(&self, pc: &str) -> Span {
        self.pcs.get(pc).map_or_else(|| self.span.clone(), |p| p.span().clone())
    }

    async fn on_pc_event(&mut self, pc: &str, ev: PcEvent) {
        let span = self.pc_span(pc);
        self.on_pc_event_in_span(pc, ev).instrument(span).await
    }

    async fn on_pc_event_in_span(&mut self, pc: &str, ev: PcEvent) {
        match ev {
            PcEvent::SignalingStateChange(s) => {
                debug!(signaling_state = ?s, "signalingstatechange sent to the page");
                self.emit("pc.signalingstatechange", json!({"pc": pc, "state": s}));
            }
            PcEvent::IceGatheringStateChange(s) => {
                debug!(ice_gathering_state = ?s, "icegatheringstatechange sent to the page");
                self.emit("pc.icegatheringstatechange", json!({"pc": pc, "state": s}));
            }
            PcEvent::IceConnectionStateChange(s) => {
                debug!(ice_state = ?s, "iceconnectionstatechange sent to the page");
                self.emit("pc.iceconnectionstatechange", json!({"pc": pc, "state": s}));
            }
            PcEvent::ConnectionStateChange(s) => {
                debug!(connection_state = ?s, "connectionstatechange sent to the page");
                if s == vdimedia_protocol::api::RtcPeerConnectionState::Connected {
                    self.connected_at.entry(pc.to_string()).or_insert_with(Instant::now);
                }
                self.emit("pc.connectionstatechange", json!({"pc": pc, "state": s}));
            }
            PcEvent::IceCandidate(c) => {
                debug!(candidate = ?c.as_ref().map(|c| &c.candidate), "icecandidate sent to the page");
                self.emit("pc.icecandidate", json!({"pc": pc, "candidate": c}));
            }
            PcEvent::NegotiationNeeded => {
                debug!("negotiationneeded sent to the page");
                self.emit("pc.negotiationneeded", json!({"pc": pc}));
            }
            PcEvent::Track { transceiver, track, streams } => {
                debug!(track = %track.id, streams = ?streams, "remote track sent to the page");
                self.remote_tracks
                    .insert(track.id.clone(), RemoteTrack { pc: pc.to_string(), streams: streams.clone() });
                self.emit(
                    "pc.track",
                    json!({"pc": pc, "transceiver": transceiver, "track": track, "streams": streams}),
                );
                // A stream already bound to an element plays its new track at once.
                let mut sink = None;
                for pl in self.playouts.values_mut().filter(|p| streams.contains(&p.stream)) {
                    if !pl.tracks.contains(&track.id) {
                        pl.tracks.push(track.id.clone());
                    }
                    sink = Some(pl.sink_id.clone());
                }
                if let Some(sink_id) = sink
                    && let Err(e) = self.play_track(&track.id, sink_id.as_deref()).await
                {
                    warn!(track = %track.id, error = %e, "cannot play the new remote track");
                }
            }
        }
    }

    async fn dispatch(&mut self, req: Request) -> EngineResult<Value> {
        let method = req.method.as_str();
        let parent = match req.params.get("pc").and_then(Value::as_str) {
            Some(pc) => self.pc_span(pc),
            None => self.span.clone(),
        };
        let span = info_span!(parent: &parent, "request", method, request = req.id);
        let result = self.dispatch_inner(method, req.params).instrument(span.clone()).await;
        if let Err(e) = &result {
            // Error texts may quote the page's SDP or candidate: addresses masked at warn.
            span.in_scope(|| {
                warn!(code = ?e.code, error = %crate::logging::redact(&e.message), "request failed");
                debug!(error = %e.message, "request failed (unredacted)");
            });
        }
        result
    }

    async fn dispatch_inner(&mut self, method: &str, params: Value) -> EngineResult<Value> {
        match method {
            "devices.enumerate" => {
                let devices = self.engine.devices.clone();
                let list = blocking(move || devices.enumerate()).await?;
                Ok(json!({"devices": list}))
            }
            "media.getUserMedia" => {
                let p: GetUserMediaParams = parse(params)?;
                if self.tracks.len() >= self.engine.config.limits.max_tracks {
                    return Err(limit("capture tracks", self.engine.config.limits.max_tracks));
                }
                let devices = self.engine.devices.clone();
                let tracks = blocking(move || devices.get_user_media(&p.constraints)).await?;
                let stream_id = new_id("stream");
                let infos: Vec<_> = tracks.iter().map(|t| t.info()).collect();
                for t in tracks {
                    debug!(track = %t.id, device_id = %t.settings.device_id, label = %t.label, "capture track created");
                    self.tracks.insert(t.id.clone(), t);
                }
                Ok(json!({"stream": {"id": stream_id}, "tracks": infos}))
            }
            "track.stop" => {
                let p: TrackParams = parse(params)?;
                if self.tracks.remove(&p.track).is_none() {
                    return Err(EngineError::not_found(format!("no capture track {}", p.track)));
                }
                // W3C stop() ends the source: release the device in every peer connection that
                // sends this track (its sender then sends nothing).
                for pc in self.pcs.values().filter(|pc| !is_closed(pc)) {
                    let senders: Vec<String> = pc
                        .state()
                        .transceivers
                        .into_iter()
                        .filter(|t| t.sender.track.as_deref() == Some(p.track.as_str()))
                        .map(|t| t.sender.id)
                        .collect();
                    for sender in senders {
                        pc.remove_track(&sender)?;
                    }
                }
                info!(track = %p.track, "capture track stopped");
                Ok(json!({}))
            }
            "track.applyConstraints" => {
                let p: ApplyConstraintsParams = parse(params)?;
                let old = self
                    .tracks
                    .get(&p.track)
                    .ok_or_else(|| EngineError::not_found(format!("no capture track {}", p.track)))?
                    .clone();
                let devices = self.engine.devices.clone();
                let current = old.clone();
                let constraints = p.constraints;
                // An OverconstrainedError leaves the track as it was (Media Capture §4.3.8).
                let next = blocking(move || devices.apply_constraints(&current, &constraints)).await?;
                let changes = crate::media::constraints::settings_changes(&old.settings, &next.settings);
                let mut senders = 0;
                if !changes.is_empty() || next.aec().mode != old.aec().mode {
                    // Built once before any sender is touched: a missing element fails here,
                    // with every call still on the old capture.
                    drop(next.make_source()?);
                    for pc in self.pcs.values().filter(|pc| !is_closed(pc)) {
                        senders += pc.replace_track_source(&p.track, || next.make_source())?;
                    }
                }
                let aec = next.aec();
                let what =
                    if changes.is_empty() { "nothing changed".to_string() } else { changes.join(", ") };
                info!(EVENT = "track-constraints", track = %p.track, DEVICE = %next.label, senders,
                      aec = aec.mode.as_str(), aec_reason = %aec.reason,
                      "applyConstraints: {what}; aec={} reason={}", aec.mode, aec.reason);
                let result = json!({"settings": next.settings, "label": next.label});
                self.tracks.insert(p.track, next);
                Ok(result)
            }
            "track.setEnabled" => {
                let p: SetEnabledParams = parse(params)?;
                if !self.tracks.contains_key(&p.track) {
                    return Err(EngineError::not_found(format!("no capture track {}", p.track)));
                }
                for pc in self.pcs.values() {
                    let _ = pc.set_track_enabled(&p.track, p.enabled);
                }
                Ok(json!({}))
            }
            "pc.create" => {
                let p: CreateParams = parse(params)?;
                check_id(&p.pc)?;
                if self.pcs.contains_key(&p.pc) || self.closed_pcs.contains(&p.pc) {
                    return Err(EngineError::invalid_params(format!("peer connection {} exists", p.pc)));
                }
                if self.pcs.len() >= self.engine.config.limits.max_peer_connections {
                    return Err(limit("peer connections", self.engine.config.limits.max_peer_connections));
                }
                self.engine.warm_up().await?;
                let (tx, rx) = mpsc::unbounded_channel();
                let mut options = PcOptions::default();
                options.loopback_ice |= self.engine.config.webrtc.loopback_ice;
                options.jitter_buffer_ms = self.engine.config.webrtc.jitter_buffer_ms;
                // Made inside the session span, so the connection's span is the session's child
                // (not the request's).
                let pc = self
                    .span
                    .in_scope(|| PeerConnection::with_options(&p.pc, &p.configuration, options, tx))?;
                pc.span().in_scope(|| {
                    debug!(ice_servers = p.configuration.ice_servers.len(), "ICE servers configured")
                });
                self.events.insert(p.pc.clone(), UnboundedReceiverStream::new(rx));
                self.engine.registry.add_peer_connection(self.id, pc.clone());
                self.pcs.insert(p.pc, pc);
                self.engine.peer_connections.fetch_add(1, Ordering::Relaxed);
                Ok(json!({}))
            }
            "pc.createOffer" => {
                let p: OfferParams = parse(params)?;
                let d = self.pc(&p.pc)?.create_offer(&p.options).await?;
                Ok(to_value(&d))
            }
            "pc.createAnswer" => {
                let p: PcParams = parse(params)?;
                let d = self.pc(&p.pc)?.create_answer().await?;
                Ok(to_value(&d))
            }
            "pc.setLocalDescription" => {
                let p: DescriptionParams = parse(params)?;
                if let Some(d) = &p.description {
                    self.check_sdp(d)?;
                }
                let s = self.pc(&p.pc)?.set_local_description(p.description).await?;
                Ok(to_value(&s))
            }
            "pc.setRemoteDescription" => {
                let p: DescriptionParams = parse(params)?;
                let Some(d) = p.description else {
                    return Err(EngineError::invalid_params("description is required"));
                };
                self.check_sdp(&d)?;
                let s = self.pc(&p.pc)?.set_remote_description(d).await?;
                Ok(to_value(&s))
            }
            "pc.addIceCandidate" => {
                let p: CandidateParams = parse(params)?;
                self.pc(&p.pc)?.add_ice_candidate(p.candidate).await?;
                Ok(json!({}))
            }
            "pc.addTrack" => {
                let p: AddTrackParams = parse(params)?;
                let track = self
                    .tracks
                    .get(&p.track)
                    .ok_or_else(|| EngineError::not_found(format!("no capture track {}", p.track)))?;
                let source = track.make_source()?;
                let t = self.pc(&p.pc)?.add_track(&p.track, source, p.streams)?;
                debug!(track = %p.track, transceiver = %t.id, "track added");
                Ok(json!({"transceiver": t}))
            }
            "pc.addTransceiver" => {
                let p: AddTransceiverParams = parse(params)?;
                let direction = p.init.direction.unwrap_or(RtcRtpTransceiverDirection::Sendrecv);
                let t = match (&p.track, p.kind.as_deref()) {
                    (Some(track_id), _) => {
                        let track = self
                            .tracks
                            .get(track_id)
                            .ok_or_else(|| EngineError::not_found(format!("no capture track {track_id}")))?;
                        let source = track.make_source()?;
                        self.pc(&p.pc)?.add_transceiver(
                            TransceiverKindOrTrack::Track { id: track_id.clone(), source },
                            direction,
                            p.init.streams,
                        )?
                    }
                    (None, Some("audio")) => self.pc(&p.pc)?.add_transceiver(
                        TransceiverKindOrTrack::Kind("audio".into()),
                        direction,
                        p.init.streams,
                    )?,
                    (None, Some(kind)) => {
                        return Err(EngineError::new(
                            ErrorCode::InvalidParams,
                            format!("kind {kind:?} is not supported; only audio is remoted"),
                        ));
                    }
                    (None, None) => return Err(EngineError::invalid_params("kind or track is required")),
                };
                if let Some(max) = p.init.send_encodings.first().and_then(|e| e.max_bitrate) {
                    self.pc(&p.pc)?.set_max_bitrate(&t.sender.id, Some(max))?;
                }
                Ok(json!({"transceiver": t}))
            }
            "pc.setParameters" => {
                let p: SetParametersParams = parse(params)?;
                let max = p.parameters.encodings.first().and_then(|e| e.max_bitrate);
                self.pc(&p.pc)?.set_max_bitrate(&p.sender, max)?;
                Ok(json!({}))
            }
            "pc.removeTrack" => {
                let p: RemoveTrackParams = parse(params)?;
                self.pc(&p.pc)?.remove_track(&p.sender)?;
                Ok(json!({}))
            }
            "pc.setDirection" => {
                let p: SetDirectionParams = parse(params)?;
                let t = self.pc(&p.pc)?.set_direction(&p.transceiver, p.direction)?;
                Ok(json!({"transceiver": t}))
            }
            "pc.stopTransceiver" => {
                let p: TransceiverParams = parse(params)?;
                let t = self.pc(&p.pc)?.stop_transceiver(&p.transceiver)?;
                Ok(json!({"transceiver": t}))
            }
            "pc.setCodecPreferences" => {
                let p: CodecPreferencesParams = parse(params)?;
                let mut codecs = Vec::new();
                for c in &p.codecs {
                    let name = c.mime_type.split_once('/').map_or(c.mime_type.as_str(), |(_, n)| n);
                    codecs.push((name.to_string(), c.clock_rate));
                }
                self.pc(&p.pc)?.set_codec_preferences(&p.transceiver, &codecs)?;
                Ok(json!({}))
            }
            "pc.replaceTrack" => {
                let p: ReplaceTrackParams = parse(params)?;
                let track = match &p.track {
                    Some(id) => {
                        let track = self
                            .tracks
                            .get(id)
                            .ok_or_else(|| EngineError::not_found(format!("no capture track {id}")))?;
                        Some((id.clone(), track.make_source()?))
                    }
                    None => None,
                };
                self.pc(&p.pc)?.replace_track(&p.sender, track)?;
                Ok(json!({}))
            }
            "pc.insertDtmf" => {
                let p: InsertDtmfParams = parse(params)?;
                self.pc(&p.pc)?.insert_dtmf(&p.sender, &p.tones, p.duration, p.inter_tone_gap)?;
                Ok(json!({}))
            }
            "pc.getStats" => {
                let p: PcParams = parse(params)?;
                let stats = self.pc(&p.pc)?.get_stats().await?;
                // `now`: the daemon's clock when the report was made, so the page can move the
                // report's timestamps onto its own clock (the two machines' clocks differ).
                Ok(json!({"stats": stats, "now": crate::webrtc::stats::now_ms()}))
            }
            "pc.getSynchronizationSources" => {
                let p: ReceiverParams = parse(params)?;
                let src = self.pc(&p.pc)?.rtp_sources(&p.receiver)?;
                Ok(json!({
                    "synchronizationSources": src.ssrcs,
                    "contributingSources": src.csrcs,
                    "now": crate::webrtc::stats::now_ms(),
                }))
            }
            "pc.close" => {
                let p: PcParams = parse(params)?;
                if self.closed_pcs.contains(&p.pc) {
                    return Ok(json!({})); // close() is idempotent (WebRTC 1.0 §4.4.1.3)
                }
                let pc = self.pc(&p.pc)?.clone();
                if !is_closed(&pc) {
                    self.log_summary(&p.pc, &pc).await;
                    pc.close();
                    self.engine.peer_connections.fetch_sub(1, Ordering::Relaxed);
                }
                info!("peer connection closed by the page");
                self.forget_pc(&p.pc);
                drop(pc);
                // The pipeline's last references went with forget_pc; give glibc's freed heap
                // back so a hung-up agent's endpoint returns close to its idle footprint.
                tokio::task::spawn_blocking(crate::engine::trim_heap);
                Ok(json!({}))
            }
            "playout.attach" => {
                let p: AttachParams = parse(params)?;
                check_id(&p.element)?;
                let mut tracks = self.tracks_of_stream(&p.stream);
                for t in p.tracks {
                    if !self.remote_tracks.contains_key(&t) {
                        return Err(EngineError::not_found(format!("no remote track {t}")));
                    }
                    if !tracks.contains(&t) {
                        tracks.push(t);
                    }
                }
                let sink_id = p.sink_id.filter(|s| !s.is_empty());
                // Attaching again replaces the element's stream: silence what it no longer has.
                if let Some(old) = self.playouts.remove(&p.element) {
                    for t in old.tracks.iter().filter(|t| !tracks.contains(t)) {
                        self.stop_track(t)?;
                    }
                }
                for t in &tracks {
                    self.play_track(t, sink_id.as_deref()).await?;
                }
                // A stream with no remote track yet (or a local one) plays nothing now; remote
                // tracks that join it later start playing when they arrive.
                info!(element = %p.element, stream = %p.stream, sink = ?sink_id, tracks = tracks.len(), "playout attached");
                self.playouts.insert(p.element, Playout { stream: p.stream, tracks, sink_id });
                Ok(json!({}))
            }
            "playout.setSinkId" => {
                let p: SinkIdParams = parse(params)?;
                let sink_id = Some(p.sink_id).filter(|s| !s.is_empty());
                // Validate the device even before any stream is attached, as setSinkId does.
                let devices = self.engine.devices.clone();
                let check = sink_id.clone();
                blocking(move || devices.output(check.as_deref()).map(|_| ())).await?;
                if let Some(pl) = self.playouts.get_mut(&p.element) {
                    pl.sink_id = sink_id.clone();
                    let tracks = pl.tracks.clone();
                    for t in tracks {
                        self.play_track(&t, sink_id.as_deref()).await?;
                    }
                } else {
                    // No stream yet: the SDK sends the element's sinkId with playout.attach.
                    debug!(element = %p.element, "setSinkId on an element with no stream yet");
                }
                info!(element = %p.element, sink = ?sink_id, "playout output set");
                Ok(json!({}))
            }
            "playout.detach" => {
                let p: ElementParams = parse(params)?;
                if let Some(pl) = self.playouts.remove(&p.element) {
                    for t in &pl.tracks {
                        self.stop_track(t)?;
                    }
                    info!(element = %p.element, "playout detached");
                }
                Ok(json!({}))
            }
            "ringtone.play" => self.ringtone_play(params).await,
            "ringtone.stop" => self.ringtone_stop(params).await,
            other => Err(EngineError::new(ErrorCode::UnknownMethod, format!("unknown method {other:?}"))),
        }
    }

    fn pc(&self, id: &str) -> EngineResult<&PeerConnection> {
        self.pcs.get(id).ok_or_else(|| {
            if self.closed_pcs.contains(id) {
                EngineError::invalid_state(format!("peer connection {id} is closed"))
            } else {
                EngineError::not_found(format!("no peer connection {id}"))
            }
        })
    }

    /// Drops the session's handles on a closed peer connection (its map entry, event stream and
    /// registry entry), so its pipeline is freed now; its remote tracks stay known (ended).
    fn forget_pc(&mut self, id: &str) {
        self.pcs.remove(id);
        self.events.remove(id);
        self.connected_at.remove(id);
        self.engine.registry.remove_peer_connection(self.id, id);
        if self.closed_pcs.len() < MAX_CLOSED_IDS {
            self.closed_pcs.insert(id.to_string());
        }
    }

    fn check_sdp(&self, d: &RtcSessionDescriptionInit) -> EngineResult<()> {
        let max = self.engine.config.limits.max_sdp_bytes;
        if d.sdp.len() > max {
            return Err(EngineError::new(
                ErrorCode::LimitExceeded,
                format!("SDP of {} bytes exceeds the limit of {max} bytes", d.sdp.len()),
            ));
        }
        Ok(())
    }

    fn tracks_of_stream(&self, stream: &str) -> Vec<String> {
        self.remote_tracks
            .iter()
            .filter(|(_, t)| t.streams.iter().any(|s| s == stream))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Stops playing a remote track (its audio is still decoded, so stats keep flowing).
    /// After a device change: capture tracks and playouts whose device is gone move to the
    /// default device, so the call goes on (each logged with the device); a track ends
    /// (`track.ended`) only when no input is left at all. Tracks and playouts on "default"
    /// need nothing: PipeWire moves them to the new default itself.
    async fn on_devices_changed(&mut self) {
        use vdimedia_protocol::api::MediaDeviceKind;
        if !self.pw_up {
            return; // PipeWire restarting: its devices come back with it (on_pipewire_status)
        }
        let devices = self.engine.devices.clone();
        let list = match blocking(move || devices.enumerate()).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e.message, "devices changed but could not be enumerated");
                return;
            }
        };
        let present =
            |kind: MediaDeviceKind, id: &str| list.iter().any(|d| d.kind == kind && d.device_id == id);
        let default_label = |kind: MediaDeviceKind| {
            list.iter()
                .find(|d| d.kind == kind && d.device_id == crate::media::DEFAULT_DEVICE_ID)
                .map(|d| d.label.clone())
        };
        let gone: Vec<String> = self
            .tracks
            .iter()
            .filter(|(_, t)| {
                t.settings.device_id != crate::media::DEFAULT_DEVICE_ID
                    && !present(MediaDeviceKind::Audioinput, &t.settings.device_id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let Some(track) = self.tracks.get_mut(&id) else { continue };
            let lost = track.label.clone();
            let Some(label) = default_label(MediaDeviceKind::Audioinput) else {
                warn!(EVENT = "device-lost", track = %id, DEVICE = %lost, "capture device gone and no input left; track ended");
                self.tracks.remove(&id);
                for pc in self.pcs.values().filter(|pc| !is_closed(pc)) {
                    let senders: Vec<String> = pc
                        .state()
                        .transceivers
                        .into_iter()
                        .filter(|t| t.sender.track.as_deref() == Some(id.as_str()))
                        .map(|t| t.sender.id)
                        .collect();
                    for sender in senders {
                        let _ = pc.remove_track(&sender);
                    }
                }
                self.emit("track.ended", json!({ "track": id }));
                continue;
            };
            track.fall_back_to_default(&label);
            let track = track.clone();
            let mut moved = 0;
            for pc in self.pcs.values().filter(|pc| !is_closed(pc)) {
                match pc.replace_track_source(&id, || track.make_source()) {
                    Ok(n) => moved += n,
                    Err(e) => {
                        warn!(track = %id, error = %e.message, "capture could not move to the default device")
                    }
                }
            }
            warn!(EVENT = "device-lost", track = %id, DEVICE = %lost, fallback = %label, senders = moved,
                  "capture device gone; falling back to the default device");
        }
        let lost_outputs: Vec<(String, String)> = self
            .playouts
            .iter()
            .filter_map(|(el, pl)| {
                let sid = pl.sink_id.as_deref()?;
                (!present(MediaDeviceKind::Audiooutput, sid)).then(|| (el.clone(), sid.to_string()))
            })
            .collect();
        for (el, sink_id) in lost_outputs {
            let Some(pl) = self.playouts.get_mut(&el) else { continue };
            pl.sink_id = None;
            let tracks = pl.tracks.clone();
            warn!(EVENT = "device-lost", element = %el, DEVICE = %sink_id, fallback = ?default_label(MediaDeviceKind::Audiooutput),
                  "playout device gone; falling back to the default output");
            for t in tracks {
                if let Err(e) = self.play_track(&t, None).await {
                    warn!(track = %t, error = %e.message, "playout could not move to the default output");
                }
            }
        }
    }

    fn stop_track(&self, track: &str) -> EngineResult<()> {
        match self.remote_tracks.get(track).and_then(|rt| self.pcs.get(&rt.pc)) {
            Some(pc) => pc.set_playout(track, None),
            None => Ok(()),
        }
    }

    async fn play_track(&self, track: &str, sink_id: Option<&str>) -> EngineResult<()> {
        let rt = self
            .remote_tracks
            .get(track)
            .ok_or_else(|| EngineError::not_found(format!("no remote track {track}")))?;
        if self.closed_pcs.contains(&rt.pc) {
            return Ok(()); // its connection is closed: the track has ended, nothing plays
        }
        let pc = self.pc(&rt.pc)?;
        let devices = self.engine.devices.clone();
        let sink_id = sink_id.map(str::to_string);
        let output = blocking(move || devices.output(sink_id.as_deref())).await?;
        let sink = output.make_sink()?;
        pc.span().in_scope(|| {
            info!(track, device = %output.label, device_id = %output.device_id, "playing remote track");
        });
        // The new sink opens its device before the switch (a PipeWire round trip): off the
        // async threads.
        let (pc, track) = (pc.clone(), track.to_string());
        blocking(move || pc.set_playout(&track, Some(sink))).await
    }

    /// PipeWire went away or came back ([`crate::media::DeviceWatch::pipewire_status`]). Away:
    /// the calls' capture sources become live silence (RTP goes on) and their playout sinks
    /// discard, which also closes every stream on the dead daemon (libpipewire shares one
    /// connection per process, and a new element would reuse the dead one). Back (a new
    /// generation): every capture source and playout sink is opened again on its device, or
    /// the default when the device is gone.
    async fn on_pipewire_status(&mut self, status: crate::media::monitor::PipeWireStatus) {
        self.pw_up = status.up;
        if !status.up {
            if !self.pw_released {
                self.release_pipewire();
            }
            return;
        }
        if status.generation == self.pw_generation {
            return;
        }
        self.pw_generation = status.generation;
        if !self.pw_released {
            // Lost and back before this session looked: release first, and give the playout
            // swaps (between two buffers) time to let the old streams go.
            self.release_pipewire();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.pw_released = false;
        self.reopen_pipewire(status.lost_at).await;
    }

    fn has_live_call(&self) -> bool {
        self.pcs.values().any(|pc| !is_closed(pc))
    }

    /// First half of [`Self::on_pipewire_status`]: PipeWire capture → live silence, playout →
    /// discarded. Returns (sources, sinks) released.
    fn release_pipewire(&mut self) -> (usize, usize) {
        self.pw_released = true;
        if !self.has_live_call() {
            return (0, 0);
        }
        warn!(EVENT = "pipewire-lost", "PipeWire went away mid-call");
        let mut sources = 0;
        for (id, track) in &self.tracks {
            if track.backend() != crate::media::AudioBackend::PipeWire {
                continue;
            }
            let (rate, channels) = (track.settings.sample_rate, track.settings.channel_count);
            for pc in self.pcs.values().filter(|pc| !is_closed(pc)) {
                match pc.replace_track_source(id, || crate::media::monitor::silence_source(rate, channels)) {
                    Ok(n) => sources += n,
                    Err(e) => warn!(track = %id, error = %e.message, "capture could not switch to silence"),
                }
            }
        }
        let mut sinks = 0;
        for pl in self.playouts.values() {
            for t in &pl.tracks {
                if self.stop_track(t).is_ok() {
                    sinks += 1;
                }
            }
        }
        debug!(sources, sinks, "capture sends silence and playout discards until PipeWire is back");
        (sources, sinks)
    }

    /// Second half of [`Self::on_pipewire_status`]: opens capture and playout again.
    async fn reopen_pipewire(&mut self, lost_at: Option<Instant>) {
        if !self.has_live_call() {
            return;
        }
        let mut sources = 0;
        for (id, track) in &self.tracks {
            if track.backend() != crate::media::AudioBackend::PipeWire {
                continue;
            }
            for pc in self.pcs.values().filter(|pc| !is_closed(pc)) {
                match pc.replace_track_source(id, || track.make_source()) {
                    Ok(n) => sources += n,
                    Err(e) => warn!(track = %id, error = %e.message, "capture could not be reopened"),
                }
            }
        }
        let plays: Vec<(String, Option<String>)> = self
            .playouts
            .values()
            .flat_map(|pl| pl.tracks.iter().map(|t| (t.clone(), pl.sink_id.clone())))
            .collect();
        let mut sinks = 0;
        for (t, sink_id) in plays {
            let mut r = self.play_track(&t, sink_id.as_deref()).await;
            if r.is_err() && sink_id.is_some() {
                warn!(track = %t, sink = ?sink_id, "playout device not back; playing on the default output");
                r = self.play_track(&t, None).await;
            }
            match r {
                Ok(()) => sinks += 1,
                Err(e) => warn!(track = %t, error = %e.message, "playout could not be reopened"),
            }
        }
        let ms = lost_at.map_or(0, |t| t.elapsed().as_millis() as u64);
        info!(
            EVENT = "pipewire-back",
            after_ms = ms,
            sources,
            sinks,
            "PipeWire back after {ms} ms: {sources} sources and {sinks} sinks reopened"
        );
        // The monitor's devices.change may have been handled before PipeWire's "up" status
        // (select! order); a track on a device that did not come back moves to the default
        // only here then. A no-op when nothing is missing.
        self.on_devices_changed().await;
    }

    /// Logs the end-of-call summary of `pc` (inside its span) from a final `getStats()`;
    /// call before closing it. Without stats (timeout, error) the summary has no media figures.
    async fn log_summary(&self, id: &str, pc: &PeerConnection) {
        let span = pc.span().clone();
        let connected_for = self.connected_at.get(id).map_or(Duration::ZERO, Instant::elapsed);
        let jitter_buffer_ms = self.engine.config.webrtc.jitter_buffer_ms;
        async {
            let stats = match tokio::time::timeout(SUMMARY_STATS_TIMEOUT, pc.get_stats()).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(error = %e.message, "final getStats failed; summary without media figures");
                    Vec::new()
                }
                Err(_) => {
                    warn!("final getStats timed out; summary without media figures");
                    Vec::new()
                }
            };
            CallSummary::from_stats(&stats, connected_for, jitter_buffer_ms).log();
        }
        .instrument(span)
        .await
    }

    async fn close_all(&mut self) {
        let n = self.pcs.len();
        let pcs: Vec<(String, PeerConnection)> = self.pcs.drain().collect();
        for (id, pc) in pcs {
            if !is_closed(&pc) {
                self.log_summary(&id, &pc).await;
                pc.close();
                self.engine.peer_connections.fetch_sub(1, Ordering::Relaxed);
            }
            pc.span().in_scope(|| debug!("peer connection closed with its session"));
        }
        self.tracks.clear();
        self.playouts.clear();
        self.remote_tracks.clear();
        self.stop_ringtones().await;
        self.engine.registry.close_session(self.id);
        info!(peer_connections = n, "session closed; devices released");
    }
}

fn is_closed(pc: &PeerConnection) -> bool {
    pc.state().signaling_state == RtcSignalingState::Closed
}

fn kind_of(m: &Message) -> &'static str {
    match m {
        Message::Request(_) => "request",
        Message::Response(_) => "response",
        Message::Event(_) => "event",
    }
}

fn parse<T: DeserializeOwned>(params: Value) -> EngineResult<T> {
    serde_json::from_value(params).map_err(|e| EngineError::invalid_params(format!("bad params: {e}")))
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn check_id(id: &str) -> EngineResult<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EngineError::invalid_params(format!("ids must be 1..={MAX_ID_LEN} characters")));
    }
    Ok(())
}

fn limit(what: &str, n: usize) -> EngineError {
    EngineError::new(ErrorCode::LimitExceeded, format!("at most {n} {what} per page"))
}

/// A fresh id for engine-chosen objects (streams): unique within the process.
fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> EngineResult<T> + Send + 'static,
) -> EngineResult<T> {
    // Device work logs from the blocking pool: keep the caller's span (session, request).
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .unwrap_or_else(|e| Err(EngineError::new(ErrorCode::Internal, format!("worker failed: {e}"))))
}

#[derive(Deserialize)]
struct PcParams {
    pc: String,
}

#[derive(Deserialize)]
struct CreateParams {
    pc: String,
    #[serde(default)]
    configuration: RtcConfiguration,
}

#[derive(Deserialize)]
struct OfferParams {
    pc: String,
    #[serde(default)]
    options: RtcOfferOptions,
}

#[derive(Deserialize)]
struct DescriptionParams {
    pc: String,
    #[serde(default)]
    description: Option<RtcSessionDescriptionInit>,
}

#[derive(Deserialize)]
struct CandidateParams {
    pc: String,
    #[serde(default)]
    candidate: Option<RtcIceCandidateInit>,
}

#[derive(Deserialize)]
struct AddTrackParams {
    pc: String,
    track: String,
    #[serde(default)]
    streams: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TransceiverInit {
    #[serde(default)]
    direction: Option<RtcRtpTransceiverDirection>,
    #[serde(default)]
    streams: Vec<String>,
    /// `sendEncodings` (WebRTC 1.0 §5.1): `[0].maxBitrate` caps the sender (bit/s).
    #[serde(default)]
    send_encodings: Vec<vdimedia_protocol::api::RtcRtpEncodingParameters>,
}

/// `pc.setParameters`: `RTCRtpSender.setParameters` (WebRTC 1.0 §5.2).
#[derive(Deserialize)]
struct SetParametersParams {
    pc: String,
    sender: String,
    parameters: SendParameters,
}

/// `RTCRtpSendParameters` as remoted: only the encodings.
#[derive(Deserialize)]
struct SendParameters {
    #[serde(default)]
    encodings: Vec<vdimedia_protocol::api::RtcRtpEncodingParameters>,
}

/// `pc.insertDtmf`: `RTCDTMFSender.insertDTMF` (WebRTC 1.0 §7.2); ms, clamped by the engine.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InsertDtmfParams {
    pc: String,
    sender: String,
    tones: String,
    #[serde(default = "default_dtmf_duration")]
    duration: u32,
    #[serde(default = "default_dtmf_gap")]
    inter_tone_gap: u32,
}

fn default_dtmf_duration() -> u32 {
    crate::webrtc::dtmf::DEFAULT_DURATION_MS
}

fn default_dtmf_gap() -> u32 {
    crate::webrtc::dtmf::DEFAULT_GAP_MS
}

#[derive(Deserialize)]
struct AddTransceiverParams {
    pc: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    track: Option<String>,
    #[serde(default)]
    init: TransceiverInit,
}

#[derive(Deserialize)]
struct ReceiverParams {
    pc: String,
    receiver: String,
}

/// `pc.stopTransceiver`: `RTCRtpTransceiver.stop()` (WebRTC 1.0 §5.4).
#[derive(Deserialize)]
struct TransceiverParams {
    pc: String,
    transceiver: String,
}

#[derive(Deserialize)]
struct SetDirectionParams {
    pc: String,
    transceiver: String,
    direction: RtcRtpTransceiverDirection,
}

#[derive(Deserialize)]
struct CodecPreferencesParams {
    pc: String,
    transceiver: String,
    /// RTCRtpCodec entries (WebRTC 1.0 §5.2.1): only `mimeType` and `clockRate` are used.
    codecs: Vec<CodecParam>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodecParam {
    mime_type: String,
    clock_rate: u32,
}

#[derive(Deserialize)]
struct ReplaceTrackParams {
    pc: String,
    sender: String,
    /// The capture track to send, or null: send nothing.
    #[serde(default)]
    track: Option<String>,
}

#[derive(Deserialize)]
struct RemoveTrackParams {
    pc: String,
    sender: String,
}

#[derive(Deserialize)]
struct GetUserMediaParams {
    constraints: MediaStreamConstraints,
}

#[derive(Deserialize)]
struct TrackParams {
    track: String,
}

/// `track.applyConstraints`: `MediaStreamTrack.applyConstraints` (Media Capture §4.3.8);
/// `constraints` a `MediaTrackConstraints` object, absent or null = the defaults.
#[derive(Deserialize)]
struct ApplyConstraintsParams {
    track: String,
    #[serde(default)]
    constraints: Value,
}

#[derive(Deserialize)]
struct SetEnabledParams {
    track: String,
    enabled: bool,
}

#[derive(Deserialize)]
struct AttachParams {
    element: String,
    stream: String,
    #[serde(default)]
    tracks: Vec<String>,
    #[serde(default, rename = "sinkId")]
    sink_id: Option<String>,
}

#[derive(Deserialize)]
struct SinkIdParams {
    element: String,
    #[serde(rename = "sinkId")]
    sink_id: String,
}

#[derive(Deserialize)]
struct ElementParams {
    element: String,
}

/// Ringtones (docs/protocol.md, `ringtone.*`): page-supplied sounds played on an output of the
/// page's choice, each in its own pipeline ([`Ringtone`]), beside any call.
impl Session {
    /// `ringtone.play {id, data, sinkId?, loop?, volume?}` → `{}` once it plays.
    async fn ringtone_play(&mut self, params: Value) -> EngineResult<Value> {
        let p: RingtonePlayParams = parse(params)?;
        check_id(&p.id)?;
        if self.ringtones.contains_key(&p.id) {
            return Err(EngineError::invalid_params(format!("ringtone {} is playing", p.id)));
        }
        if self.ringtones.len() >= ringtone::MAX_RINGTONES_PER_SESSION {
            return Err(limit("ringtones", ringtone::MAX_RINGTONES_PER_SESSION));
        }
        if !(0.0..=1.0).contains(&p.volume) {
            return Err(EngineError::invalid_params(format!("volume {} is outside 0..=1", p.volume)));
        }
        let data = ringtone::decode_base64(&p.data)?;
        let bytes = data.len();
        let devices = self.engine.devices.clone();
        let sink_id = p.sink_id.filter(|s| !s.is_empty());
        let options = RingtoneOptions { looping: p.looping, volume: p.volume };
        let (id, tx) = (p.id.clone(), self.ringtone_tx.clone());
        let r = blocking(move || {
            let output = devices.output(sink_id.as_deref())?;
            Ringtone::start(&id, &data, &output, options, tx)
        })
        .await?;
        ringtone::log_started(&r, bytes, p.volume);
        self.ringtones.insert(p.id, r);
        Ok(json!({}))
    }

    /// `ringtone.stop {id}` → `{}`; idempotent (a ringtone that ended is already gone).
    async fn ringtone_stop(&mut self, params: Value) -> EngineResult<Value> {
        let p: RingtoneIdParams = parse(params)?;
        let Some(r) = self.ringtones.remove(&p.id) else {
            debug!(ringtone = %p.id, "ringtone.stop for a ringtone that is not playing");
            return Ok(json!({}));
        };
        let device = r.device.clone();
        blocking(move || {
            r.stop();
            Ok(())
        })
        .await?;
        info!(ringtone = %p.id, DEVICE = %device, "ringtone stopped");
        Ok(json!({}))
    }

    /// A ringtone ended by itself (end of a non-looping file) or failed while playing: free its
    /// pipeline and tell the page (`ringtone.ended`, with `error` on a failure).
    fn on_ringtone_event(&mut self, ev: RingtoneEvent) {
        let (id, serial, failure) = match ev {
            RingtoneEvent::Ended { id, serial } => (id, serial, None),
            RingtoneEvent::Failed { id, serial, message } => (id, serial, Some(message)),
        };
        if self.ringtones.get(&id).map(|r| r.serial) != Some(serial) {
            debug!(ringtone = %id, "report of a ringtone already stopped; ignored");
            return;
        }
        let Some(r) = self.ringtones.remove(&id) else { return };
        let params = match &failure {
            None => {
                info!(ringtone = %id, DEVICE = %r.device, "ringtone ended");
                json!({"id": id})
            }
            Some(m) => {
                warn!(ringtone = %id, DEVICE = %r.device, reason = %m, "ringtone failed while playing");
                let e = EngineError::operation(format!("the ringtone stopped: {m}"));
                json!({"id": id, "error": e.to_body()})
            }
        };
        tokio::task::spawn_blocking(move || r.stop());
        self.emit("ringtone.ended", params);
    }

    /// Stops every ringtone of the page (its session is closing).
    async fn stop_ringtones(&mut self) {
        if self.ringtones.is_empty() {
            return;
        }
        let all: Vec<Ringtone> = self.ringtones.drain().map(|(_, r)| r).collect();
        let n = all.len();
        let _ = tokio::task::spawn_blocking(move || all.into_iter().for_each(Ringtone::stop)).await;
        info!(ringtones = n, "ringtones stopped with their session");
    }
}

/// `ringtone.play` params: `data` is the encoded file in base64; `volume` linear 0..=1.
#[derive(Deserialize)]
struct RingtonePlayParams {
    id: String,
    data: String,
    #[serde(default, rename = "sinkId")]
    sink_id: Option<String>,
    #[serde(default = "default_true", rename = "loop")]
    looping: bool,
    #[serde(default = "default_volume")]
    volume: f64,
}

fn default_true() -> bool {
    true
}

fn default_volume() -> f64 {
    1.0
}

#[derive(Deserialize)]
struct RingtoneIdParams {
    id: String,
}
