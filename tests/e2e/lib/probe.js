// Injected by the harness (page.evaluateOnNewDocument) into pages whose received audio is
// recorded in the page (native WebRTC only). It watches HTMLMediaElement.srcObject: the first
// native MediaStream with an audio track that the app plays is recorded with
// MediaStreamTrackProcessor, which gives per-frame timestamps (FIELD-NOTES: an AudioWorklet adds
// 0–150 ms of unknown delay).
//
// window.__e2eProbe:
//   .info()  → {attached, frames, recordedS, firstFrameAt, firstAudioAt, gapMs, gaps, errors}
//              times are epoch ms (performance.timeOrigin + performance.now()) at frame arrival
//   .levelsSince(t) → {frames, loud, speech, maxDbfs} of the frames that arrived after epoch ms
//              `t`: `loud` above the first-audio threshold, `speech` above −40 dBFS (words, not
//              the reference's −63 dBFS pauses); shows that audio still flows after an event
//   .stop()  → same plus {rate, rates, pcmB64}: mono int16 LE at `rate` Hz (the decoder's rate;
//              `rates`: seconds recorded per rate), gaps (by frame timestamp) filled with zeros
//              so the recording keeps the call's timeline
(() => {
  const THRESHOLD_DBFS = __FIRST_AUDIO_DBFS__;
  const NativeMediaStream = window.MediaStream;
  const desc = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'srcObject');
  const now = () => performance.timeOrigin + performance.now();
  const p = {
    track: null, reader: null, chunks: [], timeUs: 0, frames: 0,
    firstFrameAt: null, firstAudioAt: null, firstTs: null, gapMs: 0, gaps: 0, errors: [], done: null,
    // [arrival epoch ms, dBFS] per frame: 100 entries/s, a few thousand per call.
    levels: [],
  };
  const SPEECH_DBFS = -40;

  Object.defineProperty(HTMLMediaElement.prototype, 'srcObject', {
    configurable: true,
    enumerable: desc.enumerable,
    get() { return desc.get.call(this); },
    set(v) {
      desc.set.call(this, v);
      try { if (v instanceof NativeMediaStream) attach(v); } catch (e) { p.errors.push(`attach: ${e}`); }
    },
  });

  function attach(stream) {
    const track = stream.getAudioTracks()[0];
    if (!track || p.track) return;
    p.track = track;
    p.done = record(track).catch((e) => p.errors.push(`record: ${e}`));
  }

  async function record(track) {
    const proc = new MediaStreamTrackProcessor({ track, maxBufferSize: 50 });
    const reader = (p.reader = proc.readable.getReader());
    let buf = new Float32Array(0);
    for (;;) {
      const { value: frame, done } = await reader.read();
      if (done) break;
      const at = now();
      try {
        const n = frame.numberOfFrames;
        // The rate can change mid-stream: Chromium delivers 48 kHz silence before the first
        // packet, then the decoder's rate (8 kHz PCMU, 16 kHz G.722, 48 kHz Opus).
        const rate = frame.sampleRate;
        if (buf.length < n) buf = new Float32Array(n);
        frame.copyTo(buf, { planeIndex: 0, format: 'f32-planar' });
        // Place the frame by its timestamp (µs): a dropped frame becomes silence, not a shift.
        if (p.firstTs === null) p.firstTs = frame.timestamp;
        const lateUs = frame.timestamp - (p.firstTs + p.timeUs);
        if (lateUs > 15000) {
          const fill = Math.round((lateUs / 1e6) * rate);
          p.chunks.push({ rate, pcm: new Int16Array(fill) });
          p.timeUs += (fill / rate) * 1e6;
          p.gapMs += lateUs / 1000;
          p.gaps += 1;
        }
        const pcm = new Int16Array(n);
        let e = 0;
        for (let i = 0; i < n; i++) {
          const s = Math.max(-1, Math.min(1, buf[i]));
          e += s * s;
          pcm[i] = s < 0 ? s * 32768 : s * 32767;
        }
        p.chunks.push({ rate, pcm });
        p.timeUs += (n / rate) * 1e6;
        p.frames += 1;
        if (p.firstFrameAt === null) p.firstFrameAt = at;
        const dbfs = 10 * Math.log10(e / n + 1e-20);
        p.levels.push([at, dbfs]);
        if (p.firstAudioAt === null && dbfs > THRESHOLD_DBFS) { p.firstAudioAt = at; p.firstAudioDbfs = dbfs; }
      } finally {
        frame.close();
      }
    }
  }

  // The rate holding most of the recording's time; chunks at other rates (the silence before
  // the first packet) are resampled linearly to it — they carry no speech.
  function flatten() {
    const dur = new Map();
    for (const c of p.chunks) dur.set(c.rate, (dur.get(c.rate) ?? 0) + c.pcm.length / c.rate);
    const rate = [...dur.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 48000;
    const parts = p.chunks.map((c) => {
      if (c.rate === rate) return c.pcm;
      const m = Math.round((c.pcm.length * rate) / c.rate);
      const o = new Int16Array(m);
      for (let i = 0; i < m; i++) {
        const x = (i * c.rate) / rate, i0 = Math.floor(x), f = x - i0;
        o[i] = (c.pcm[i0] ?? 0) * (1 - f) + (c.pcm[i0 + 1] ?? c.pcm[i0] ?? 0) * f;
      }
      return o;
    });
    const all = new Int16Array(parts.reduce((a, x) => a + x.length, 0));
    let off = 0;
    for (const x of parts) { all.set(x, off); off += x.length; }
    return { rate, rates: Object.fromEntries([...dur].map(([r, s]) => [r, Math.round(s * 10) / 10])), all };
  }

  function info() {
    return {
      attached: !!p.track, frames: p.frames, recordedS: Math.round(p.timeUs / 1e5) / 10,
      firstFrameAt: p.firstFrameAt, firstAudioAt: p.firstAudioAt, firstAudioDbfs: p.firstAudioDbfs ?? null,
      gapMs: Math.round(p.gapMs), gaps: p.gaps, errors: p.errors,
    };
  }

  function levelsSince(t) {
    let frames = 0, loud = 0, speech = 0, maxDbfs = -Infinity;
    for (const [at, dbfs] of p.levels) {
      if (at <= t) continue;
      frames += 1;
      if (dbfs > THRESHOLD_DBFS) loud += 1;
      if (dbfs > SPEECH_DBFS) speech += 1;
      if (dbfs > maxDbfs) maxDbfs = dbfs;
    }
    return { frames, loud, speech, maxDbfs: frames ? Math.round(maxDbfs * 10) / 10 : null };
  }

  async function stop() {
    if (p.reader) { await p.reader.cancel().catch(() => {}); await p.done; }
    const { rate, rates, all } = flatten();
    const bytes = new Uint8Array(all.buffer);
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { ...info(), rate, rates, pcmB64: btoa(bin) };
  }

  window.__e2eProbe = { info, levelsSince, stop };
})();
