// A softphone-like web app, written only against the standard W3C APIs (Media Capture and
// Streams, WebRTC 1.0): getUserMedia, RTCPeerConnection with trickle ICE, ontrack →
// `audio.srcObject = remoteStream`, optional setSinkId. It knows nothing about vdimedia; in SDK
// mode the SDK has replaced the globals before this module runs.
//
// URL parameters:
//   processing=on|off  echoCancellation/noiseSuppression/autoGainControl in getUserMedia
//                      (default on, like an unconfigured app)
//   sinkId=ID          call audio.setSinkId(ID) on the remote audio element
//
// Signalling transport: `window.e2eSignal(msg)` when present (the test harness relays it to the
// other page), else messages are only logged. Messages: {type:"description", description} and
// {type:"candidate", candidate|null}. Incoming ones go to `softphone.receive(msg)`.

const params = new URLSearchParams(location.search);
const processing = params.get('processing') !== 'off';
const sinkId = params.get('sinkId');

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const audio = $('remote');

/** Wall-clock ms (epoch, sub-ms) so two browsers' timelines compare on one machine. */
const now = () => performance.timeOrigin + performance.now();

class Softphone {
  constructor(send) {
    this.send = send;
    this.pc = null;
    this.localStream = null;
    this.remoteStream = null;
    /** Call timeline: [{t: epoch ms, what: string, ...}] (what: offer-sent, answer-applied, …). */
    this.log = [];
    this.errors = [];
    this.queue = Promise.resolve();
    /** Remote candidates that arrived before the remote description (trickle can outrun the
     * offer: an offerer may fire icecandidate before its setLocalDescription resolves). */
    this.pendingCandidates = [];
  }

  mark(what, extra = {}) {
    this.log.push({ t: now(), what, ...extra });
    statusEl.textContent = what;
  }

  async ensureMedia() {
    if (this.localStream) return;
    const audioConstraints = processing
      ? true
      : { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints, video: false });
    this.mark('media', { label: this.localStream.getAudioTracks()[0]?.label });
  }

  createPc() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      this.send({
        type: 'candidate',
        candidate: c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex, usernameFragment: c.usernameFragment } : null,
      });
    };
    pc.ontrack = (e) => {
      this.remoteStream = e.streams[0] ?? new MediaStream([e.track]);
      audio.srcObject = this.remoteStream;
      audio.play().catch((err) => this.errors.push(`play: ${err}`));
      if (sinkId && audio.setSinkId) audio.setSinkId(sinkId).catch((err) => this.errors.push(`setSinkId: ${err}`));
      this.mark('track');
    };
    pc.onconnectionstatechange = () => this.mark(`connection:${pc.connectionState}`);
    pc.oniceconnectionstatechange = () => this.mark(`ice:${pc.iceConnectionState}`);
    for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    return pc;
  }

  /** Places a call: this side is the offerer. */
  async call() {
    await this.ensureMedia();
    const pc = this.createPc();
    await pc.setLocalDescription(await pc.createOffer());
    this.mark('offer-sent');
    this.send({ type: 'description', description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
  }

  /** Handles one signalling message; messages are processed strictly in arrival order. */
  receive(msg) {
    this.queue = this.queue.then(() => this.handle(msg)).catch((err) => {
      this.errors.push(`${msg.type}: ${err}`);
      this.mark('error', { message: String(err) });
    });
    return this.queue;
  }

  async handle(msg) {
    if (msg.type === 'description') {
      const d = msg.description;
      if (d.type === 'offer') {
        await this.ensureMedia();
        const pc = this.pc ?? this.createPc();
        await pc.setRemoteDescription(d);
        this.mark('offer-applied');
        await this.flushCandidates();
        await pc.setLocalDescription(await pc.createAnswer());
        this.mark('answer-sent');
        this.send({ type: 'description', description: { type: pc.localDescription.type, sdp: pc.localDescription.sdp } });
      } else if (d.type === 'answer') {
        await this.pc.setRemoteDescription(d);
        this.mark('answer-applied');
        await this.flushCandidates();
      }
    } else if (msg.type === 'candidate') {
      if (!this.pc?.remoteDescription) this.pendingCandidates.push(msg.candidate);
      else await this.addCandidate(msg.candidate);
    }
  }

  async addCandidate(candidate) {
    if (candidate) await this.pc.addIceCandidate(candidate);
    else await this.pc.addIceCandidate().catch((err) => this.errors.push(`end-of-candidates: ${err}`));
  }

  async flushCandidates() {
    const list = this.pendingCandidates.splice(0);
    if (list.length) this.mark('candidates-flushed', { count: list.length });
    for (const c of list) await this.addCandidate(c);
  }

  hangup() {
    this.pc?.close();
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    this.mark('hangup');
  }
}

const send = window.e2eSignal ? (m) => window.e2eSignal(m) : (m) => console.log('signal (no transport)', m);
const phone = new Softphone(send);
window.softphone = phone;
$('call').onclick = () => phone.call().catch((err) => { phone.errors.push(`call: ${err}`); phone.mark('error'); });
$('hangup').onclick = () => phone.hangup();
phone.mark('ready');
