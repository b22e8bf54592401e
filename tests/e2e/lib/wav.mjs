// Minimal RIFF/WAVE writer for 16-bit PCM (the pages hand back raw samples).
import fs from 'node:fs';

/**
 * Writes mono/multi-channel 16-bit little-endian PCM as a WAV file.
 * @param {string} file
 * @param {Buffer} pcm interleaved int16 LE samples
 * @param {number} rateHz
 * @param {number} [channels=1]
 */
export function writeWav16(file, pcm, rateHz, channels = 1) {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + pcm.length, 4);
  h.write('WAVE', 8);
  h.write('fmt ', 12);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(channels, 22);
  h.writeUInt32LE(rateHz, 24);
  h.writeUInt32LE(rateHz * channels * 2, 28);
  h.writeUInt16LE(channels * 2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(pcm.length, 40);
  fs.writeFileSync(file, Buffer.concat([h, pcm]));
}

/**
 * Reads a 16-bit PCM WAV (as written by pw-record or sox): walks the RIFF chunks to `fmt ` and
 * `data`. A data size of 0 or 0xFFFFFFFF (writer killed before fixing the header) means "to EOF".
 * @returns {{rateHz: number, channels: number, samples: Int16Array}} interleaved samples
 */
export function readWav16(file) {
  const b = fs.readFileSync(file);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${file}: not a RIFF/WAVE file`);
  let off = 12, rateHz = 0, channels = 0, bits = 0;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    let size = b.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === 'fmt ') {
      channels = b.readUInt16LE(body + 2);
      rateHz = b.readUInt32LE(body + 4);
      bits = b.readUInt16LE(body + 14);
    } else if (id === 'data') {
      if (bits !== 16) throw new Error(`${file}: ${bits}-bit samples, want 16`);
      if (size === 0 || size === 0xffffffff || body + size > b.length) size = b.length - body;
      const data = Buffer.from(b.subarray(body, body + (size & ~1)));
      return { rateHz, channels, samples: new Int16Array(data.buffer, data.byteOffset, data.length / 2) };
    }
    off = body + size + (size & 1);
  }
  throw new Error(`${file}: no data chunk`);
}

/**
 * Offset (ms) of the first 10 ms block whose RMS exceeds `dbfs` (channel 0), or null.
 */
export function firstAboveMs({ rateHz, channels, samples }, dbfs) {
  const block = Math.round(rateHz / 100);
  const frames = Math.floor(samples.length / channels);
  for (let start = 0; start + block <= frames; start += block) {
    let e = 0;
    for (let i = start; i < start + block; i++) { const s = samples[i * channels] / 32768; e += s * s; }
    if (10 * Math.log10(e / block + 1e-20) > dbfs) return (start * 1000) / rateHz;
  }
  return null;
}
