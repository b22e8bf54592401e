// Constants of the e2e rig: paths, Chromium flags, and the daemon/bridge command lines.
// The daemon and bridge flags are still settling; they live here, in one place each.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** tests/e2e/ */
export const E2E_DIR = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
/** Repository root. */
export const ROOT = path.resolve(E2E_DIR, '../..');
/** Default output folder for reports, recordings and per-call work dirs. */
export const OUT_DIR = path.join(ROOT, 'tests/out');
export const PAGES_DIR = path.join(E2E_DIR, 'pages');
/** The SDK bundle served to page A as /sdk/vdimedia.js in SDK mode (global `VdiMedia`). */
export const SDK_BUNDLE = path.join(ROOT, 'sdk/js/dist/vdimedia.js');
export const RIG_SCRIPT = path.join(ROOT, 'tests/rig/pipewire.sh');
export const DAEMON_BIN = process.env.VDIMEDIAD ?? path.join(ROOT, 'target/release/vdimediad');
export const BRIDGE_BIN = process.env.VDIMEDIA_BRIDGE ?? path.join(ROOT, 'target/release/vdimedia-bridge');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const ALSA_SOUNDS = '/usr/share/sounds/alsa';

/** Where the bridge listens for the SDK's WebSocket (like Citrix's WebSocketService). */
export const BRIDGE_LISTEN = '127.0.0.1:9002';

/**
 * The endpoint daemon's command line (flags of daemon/src/main.rs as of this writing). `d` holds
 * the call's paths: `d.vcSock` (the Unix socket the daemon listens on for the virtual channel),
 * `d.dir` (work dir). It runs with the rig's env (XDG_RUNTIME_DIR → the rig's PipeWire).
 * `--loopback-ice`: the call runs in a loopback-only network namespace (FIELD-NOTES: libnice
 * gathers nothing there unless 127.0.0.1 is added).
 * @param {{vcSock: string, dir: string}} d
 * @returns {string[]} argv, argv[0] is the binary
 */
export const DAEMON_CMD = (d) => [DAEMON_BIN, '--listen', `unix:${d.vcSock}`, '--backend', 'pipewire', '--loopback-ice', '--log-level', process.env.VDIMEDIA_LOG ?? 'info'];

/**
 * The VDA-side bridge's command line (flags of bridge/src/config.rs as of this writing). It dials
 * the harness's byte-counting relay (`d.relaySock`), which forwards to the daemon's socket. With
 * `d.tls`, it serves wss:// with the harness's self-signed pair (`d.tlsCert`, `d.tlsKey`, PEM)
 * and page A's Chromium runs with --ignore-certificate-errors; otherwise plain ws:// (allowed on
 * loopback only).
 * @param {{dir: string, relaySock: string, tls: boolean, tlsCert?: string, tlsKey?: string}} d
 * @returns {string[]}
 */
export const BRIDGE_CMD = (d) => [
  BRIDGE_BIN,
  '--vc-connect', `unix:${d.relaySock}`,
  '--listen', BRIDGE_LISTEN,
  '--state-dir', `${d.dir}/bridge-state`,
  ...(d.tls ? ['--cert', d.tlsCert, '--key', d.tlsKey] : ['--insecure-ws']),
];

/** Env for daemon and bridge (on top of the rig's env). */
export const SERVICE_ENV = { RUST_LOG: process.env.RUST_LOG ?? 'info', VDIMEDIA_LOG: process.env.VDIMEDIA_LOG ?? 'info' };

/**
 * Chromium flags (FIELD-NOTES "Chromium as a real far-end peer"). Puppeteer's defaults are not
 * used (they add --mute-audio).
 * @param {{userDataDir: string, fakeCaptureWav: string, ignoreCertErrors?: boolean}} o
 */
export const chromiumArgs = (o) => [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--no-default-browser-check',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
  // Keep timers and media running at full rate in a page that is never "visible".
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  `--user-data-dir=${o.userDataDir}`,
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  `--use-file-for-fake-audio-capture=${o.fakeCaptureWav}`,
  '--autoplay-policy=no-user-gesture-required',
  // Loopback-only network namespace: otherwise Chromium gathers no ICE candidates.
  '--allow-loopback-in-peer-connection',
  ...(o.ignoreCertErrors ? ['--ignore-certificate-errors'] : []),
  'about:blank',
];

/** Codec names as they appear in SDP a=rtpmap (case-insensitive) and PESQ band per codec. */
export const CODECS = {
  opus: { rtpmap: 'opus', band: 'wb' },
  G722: { rtpmap: 'G722', band: 'wb' },
  PCMU: { rtpmap: 'PCMU', band: 'nb' },
};

/** Per-frame RMS (dBFS) above which the far end counts the frame as audio (setup time). */
export const FIRST_AUDIO_DBFS = -70;
/** PESQ threshold of the issue, each way. */
export const PESQ_MIN = Number(process.env.VDIMEDIA_E2E_PESQ_MIN ?? 3.5);
/** VC byte budget for one call, both ways together (signalling only). */
export const VC_BYTES_MAX = 64 * 1024;
