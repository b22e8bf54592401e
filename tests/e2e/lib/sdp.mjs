// SDP munging that forces one audio codec (RFC 8866 syntax, RFC 3264 offer/answer).
// Chromium as answerer keeps the offerer's first codec even after setCodecPreferences
// (FIELD-NOTES), so the harness removes every other codec from the SDP the far end receives.

/**
 * Keeps only payload types whose a=rtpmap encoding name equals `codec` (case-insensitive) in
 * every m=audio section; drops the a=rtpmap/a=fmtp/a=rtcp-fb lines of the others.
 * @param {string} sdp
 * @param {string} codec e.g. "opus", "G722", "PCMU"
 * @returns {string} the munged SDP (CRLF line ends)
 * @throws {Error} when an audio section has no payload type of that codec
 */
export function keepOnlyCodec(sdp, codec) {
  const lines = sdp.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  const out = [];
  // Split into session part and media sections; each section is processed on its own.
  let section = [];
  const sections = [];
  for (const l of lines) {
    if (l.startsWith('m=')) { sections.push(section); section = []; }
    section.push(l);
  }
  sections.push(section);
  out.push(...sections[0]);
  for (const sec of sections.slice(1)) {
    const m = sec[0].split(' ');
    if (!m[0].startsWith('m=audio')) { out.push(...sec); continue; }
    const keep = new Set();
    for (const l of sec) {
      const r = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
      if (r && r[2].toLowerCase() === codec.toLowerCase()) keep.add(r[1]);
    }
    // Static payload types (0 PCMU, 9 G722) may appear without an rtpmap line.
    const staticPt = { pcmu: '0', g722: '9', pcma: '8' }[codec.toLowerCase()];
    if (staticPt && m.slice(3).includes(staticPt)) keep.add(staticPt);
    if (keep.size === 0) throw new Error(`SDP audio section offers no ${codec}: ${sec[0]}`);
    out.push([...m.slice(0, 3), ...m.slice(3).filter((pt) => keep.has(pt))].join(' '));
    for (const l of sec.slice(1)) {
      const a = /^a=(rtpmap|fmtp|rtcp-fb):(\d+|\*)[ ]/.exec(l);
      if (a && a[2] !== '*' && !keep.has(a[2])) continue;
      out.push(l);
    }
  }
  return out.join('\r\n') + '\r\n';
}

/** Encoding names of the payload types left in the first m=audio line, in order. */
export function audioCodecs(sdp) {
  const m = /^m=audio \S+ \S+ (.*)$/m.exec(sdp);
  if (!m) return [];
  const pts = m[1].trim().split(/\s+/);
  return pts.map((pt) => {
    const r = new RegExp(`^a=rtpmap:${pt} ([^/\\r\\n]+)`, 'm').exec(sdp);
    return r ? r[1] : { 0: 'PCMU', 8: 'PCMA', 9: 'G722' }[pt] ?? pt;
  });
}
