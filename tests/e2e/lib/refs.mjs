// Reference speech for the calls: real recorded words from alsa-utils, concatenated with sox.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ALSA_SOUNDS } from './config.mjs';

/** Word order per side; the two sides differ so one side's speech cannot score as the other's. */
export const WORDS = {
  A: ['Front_Center', 'Front_Left', 'Front_Right', 'Rear_Center', 'Rear_Left', 'Rear_Right'],
  B: ['Side_Left', 'Side_Right', 'Rear_Left', 'Front_Right', 'Rear_Center', 'Front_Left'],
};
/** Gap after each word (s). Filled with pink noise at about -63 dBFS RMS so the signal is never
 * digital silence: the far end's first-audio detector then fires on the first decoded frame
 * wherever the looping source happens to be, not only at a word. */
export const GAP_S = 0.5;
const GAP_NOISE_VOL = 0.003;
const RATE = 48000;

function sox(args) {
  execFileSync('sox', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Builds (once, cached in `dir`) the reference WAVs: 48 kHz mono 16-bit, about 11.6 s each.
 * @param {string} dir cache folder
 * @returns {{A: string, B: string, silence: string}} paths; `silence` is 1 s of digital silence
 */
export function buildRefs(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const gap = path.join(dir, 'gap.wav');
  const out = { A: path.join(dir, 'ref_A.wav'), B: path.join(dir, 'ref_B.wav'), silence: path.join(dir, 'silence.wav') };
  const stamp = path.join(dir, '.v1');
  if (fs.existsSync(stamp) && Object.values(out).every((p) => fs.existsSync(p))) return out;
  sox(['-n', '-r', String(RATE), '-c', '1', '-b', '16', gap, 'synth', String(GAP_S), 'pinknoise', 'vol', String(GAP_NOISE_VOL)]);
  sox(['-n', '-r', String(RATE), '-c', '1', '-b', '16', out.silence, 'trim', '0', '1']);
  for (const side of ['A', 'B']) {
    const parts = WORDS[side].flatMap((w) => [path.join(ALSA_SOUNDS, `${w}.wav`), gap]);
    sox([...parts, '-r', String(RATE), '-c', '1', '-b', '16', out[side]]);
  }
  fs.writeFileSync(stamp, '');
  return out;
}

/**
 * A file holding `ref` repeated to last at least `seconds` (for sources that do not loop, such as
 * pw-cat into the rig's virtual mic). Periodic with the period of `ref`.
 */
export function tiledRef(ref, seconds, outPath) {
  const period = Number(execFileSync('soxi', ['-D', ref]).toString().trim());
  const n = Math.max(1, Math.ceil(seconds / period));
  sox([ref, outPath, 'repeat', String(n - 1)]);
  return outPath;
}
