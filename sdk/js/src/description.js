// RTCSessionDescription and RTCIceCandidate (WebRTC 1.0 §4.8) plus the SDP helpers the peer
// connection needs to keep `localDescription` complete while candidates trickle in.

const SDP_TYPES = ['offer', 'pranswer', 'answer', 'rollback'];

/**
 * `RTCSessionDescription` (WebRTC 1.0 §4.8.1). `type` and `sdp` are writable plain properties,
 * as in Chromium, because older SIP stacks edit `sdp` before `setLocalDescription`.
 */
export class RTCSessionDescription {
  /** @param {{type: 'offer'|'pranswer'|'answer'|'rollback', sdp?: string}} init */
  constructor(init = {}) {
    if (init === null || typeof init !== 'object') {
      throw new TypeError("Failed to construct 'RTCSessionDescription': parameter 1 is not an object.");
    }
    if (init.type !== undefined && !SDP_TYPES.includes(init.type)) {
      throw new TypeError(
        `Failed to construct 'RTCSessionDescription': The provided value '${init.type}' is not a valid enum value of type RTCSdpType.`,
      );
    }
    this.type = init.type ?? '';
    this.sdp = init.sdp == null ? '' : String(init.sdp);
  }

  /** @returns {{type: string, sdp: string}} RTCSessionDescriptionInit */
  toJSON() {
    return { type: this.type, sdp: this.sdp };
  }
}

/** Validates an RTCSessionDescriptionInit-like value and returns the wire shape. */
export function descriptionInit(desc, what) {
  if (desc === null || typeof desc !== 'object') {
    throw new TypeError(`Failed to execute '${what}' on 'RTCPeerConnection': The provided value is not of type 'RTCSessionDescriptionInit'.`);
  }
  if (desc.type !== undefined && !SDP_TYPES.includes(desc.type)) {
    throw new TypeError(
      `Failed to execute '${what}' on 'RTCPeerConnection': The provided value '${desc.type}' is not a valid enum value of type RTCSdpType.`,
    );
  }
  const out = {};
  if (desc.type !== undefined) out.type = desc.type;
  if (desc.sdp !== undefined && desc.sdp !== null) out.sdp = String(desc.sdp);
  return out;
}

/**
 * Parses the fields of an RFC 8839 §5.1 `candidate` attribute value the way Chromium exposes
 * them on RTCIceCandidate. Returns null when the string does not parse.
 * @param {string} candidate e.g. "candidate:1 1 UDP 2122252543 192.0.2.1 40000 typ host"
 */
export function parseCandidate(candidate) {
  let s = String(candidate ?? '').trim();
  if (s.startsWith('a=')) s = s.slice(2);
  if (!s.startsWith('candidate:')) return null;
  const parts = s.slice('candidate:'.length).split(/\s+/);
  if (parts.length < 8 || parts[6].toLowerCase() !== 'typ') return null;
  const [foundation, componentId, transport, priority, address, port, , type] = parts;
  const out = {
    foundation,
    component: componentId === '1' ? 'rtp' : componentId === '2' ? 'rtcp' : null,
    protocol: transport.toLowerCase() === 'udp' ? 'udp' : transport.toLowerCase() === 'tcp' ? 'tcp' : null,
    priority: Number.isFinite(Number(priority)) ? Number(priority) : null,
    address,
    port: Number.isFinite(Number(port)) ? Number(port) : null,
    type: ['host', 'srflx', 'prflx', 'relay'].includes(type) ? type : null,
    tcpType: null,
    relatedAddress: null,
    relatedPort: null,
    usernameFragment: null,
  };
  for (let i = 8; i + 1 < parts.length; i += 2) {
    const key = parts[i];
    const value = parts[i + 1];
    if (key === 'raddr') out.relatedAddress = value;
    else if (key === 'rport') out.relatedPort = Number(value);
    else if (key === 'tcptype') out.tcpType = ['active', 'passive', 'so'].includes(value) ? value : null;
    else if (key === 'ufrag') out.usernameFragment = value;
  }
  return out;
}

/**
 * `RTCIceCandidate` (WebRTC 1.0 §4.8.2), with the candidate fields parsed as Chromium does
 * (`foundation`, `component`, `priority`, `address`, `protocol`, `port`, `type`, `tcpType`,
 * `relatedAddress`, `relatedPort`, `usernameFragment`).
 */
export class RTCIceCandidate {
  /** @param {{candidate?: string, sdpMid?: string|null, sdpMLineIndex?: number|null, usernameFragment?: string|null}} init */
  constructor(init = {}) {
    if (init === null || typeof init !== 'object') {
      throw new TypeError("Failed to construct 'RTCIceCandidate': parameter 1 is not an object.");
    }
    const sdpMid = init.sdpMid ?? null;
    const sdpMLineIndex = init.sdpMLineIndex ?? null;
    if (sdpMid === null && sdpMLineIndex === null) {
      throw new TypeError("Failed to construct 'RTCIceCandidate': sdpMid and sdpMLineIndex are both null.");
    }
    const candidate = init.candidate == null ? '' : String(init.candidate);
    const parsed = parseCandidate(candidate);
    this._init = {
      candidate,
      sdpMid: sdpMid === null ? null : String(sdpMid),
      sdpMLineIndex: sdpMLineIndex === null ? null : Number(sdpMLineIndex),
      usernameFragment: init.usernameFragment ?? parsed?.usernameFragment ?? null,
    };
    this._parsed = parsed;
  }

  get candidate() { return this._init.candidate; }
  get sdpMid() { return this._init.sdpMid; }
  get sdpMLineIndex() { return this._init.sdpMLineIndex; }
  get usernameFragment() { return this._init.usernameFragment; }
  get foundation() { return this._parsed?.foundation ?? null; }
  get component() { return this._parsed?.component ?? null; }
  get priority() { return this._parsed?.priority ?? null; }
  get address() { return this._parsed?.address ?? null; }
  get protocol() { return this._parsed?.protocol ?? null; }
  get port() { return this._parsed?.port ?? null; }
  get type() { return this._parsed?.type ?? null; }
  get tcpType() { return this._parsed?.tcpType ?? null; }
  get relatedAddress() { return this._parsed?.relatedAddress ?? null; }
  get relatedPort() { return this._parsed?.relatedPort ?? null; }
  get relayProtocol() { return null; }
  get url() { return null; }

  /** @returns RTCIceCandidateInit */
  toJSON() {
    const out = { candidate: this.candidate, sdpMid: this.sdpMid, sdpMLineIndex: this.sdpMLineIndex };
    if (this.usernameFragment !== null) out.usernameFragment = this.usernameFragment;
    return out;
  }
}

/**
 * The index of the m-section whose `a=mid:` is `mid` (RFC 8843 §7.1), or null.
 * @param {string} sdp
 * @param {string} mid
 * @returns {number|null}
 */
export function sdpMidIndex(sdp, mid) {
  const sections = String(sdp ?? '').split(/\r?\n(?=m=)/).slice(1);
  const i = sections.findIndex((sec) => sec.split(/\r?\n/).some((l) => l.trim() === `a=mid:${mid}`));
  return i < 0 ? null : i;
}

/** The first `a=ice-ufrag:` value of an SDP, or null. */
export function sdpIceUfrag(sdp) {
  const m = /^a=ice-ufrag:(\S+)/m.exec(sdp ?? '');
  return m ? m[1] : null;
}

/**
 * Adds `a=candidate:` lines to the m-sections they belong to (by `sdpMid`, else by
 * `sdpMLineIndex`), skipping lines already present and candidates of another ICE ufrag.
 * Browsers do the same to `localDescription` while gathering, and non-trickle SIP stacks
 * send that SDP once gathering completes.
 * @param {string} sdp
 * @param {Array<{candidate: string, sdpMid?: string|null, sdpMLineIndex?: number|null, usernameFragment?: string|null}>} candidates
 * @returns {string}
 */
export function addCandidatesToSdp(sdp, candidates) {
  if (!sdp || candidates.length === 0) return sdp;
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  const sections = [];
  let sessionUfrag = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('m=')) {
      sections.push({ start: i, end: lines.length, mid: null, ufrag: null, lines: new Set(), add: [] });
      if (sections.length > 1) sections[sections.length - 2].end = i;
      continue;
    }
    const cur = sections[sections.length - 1];
    if (line.startsWith('a=ice-ufrag:')) {
      if (cur) cur.ufrag = line.slice('a=ice-ufrag:'.length).trim();
      else sessionUfrag = line.slice('a=ice-ufrag:'.length).trim();
    }
    if (!cur) continue;
    if (line.startsWith('a=mid:')) cur.mid = line.slice('a=mid:'.length).trim();
    if (line.startsWith('a=candidate:')) cur.lines.add(line.trim());
  }
  for (const c of candidates) {
    let text = String(c.candidate ?? '').trim();
    if (!text) continue;
    if (text.startsWith('a=')) text = text.slice(2);
    const line = `a=${text}`;
    let section = c.sdpMid != null ? sections.find((s) => s.mid === String(c.sdpMid)) : undefined;
    if (!section && c.sdpMLineIndex != null) section = sections[Number(c.sdpMLineIndex)];
    if (!section) continue;
    const ufrag = section.ufrag ?? sessionUfrag;
    if (c.usernameFragment && ufrag && c.usernameFragment !== ufrag) continue;
    if (section.lines.has(line)) continue;
    section.lines.add(line);
    section.add.push(line);
  }
  const out = [];
  let si = 0;
  for (let i = 0; i <= lines.length; i++) {
    while (si < sections.length && sections[si].end === i) {
      out.push(...sections[si].add);
      si++;
    }
    if (i < lines.length) out.push(lines[i]);
  }
  return out.join(eol) + eol;
}
