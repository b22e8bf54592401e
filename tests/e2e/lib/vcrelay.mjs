// Byte-counting relay on the virtual channel: bridge → relay socket → daemon socket. It proves
// that only control crosses the VC (docs/protocol.md: "RTP never"): an audio call moves tens of
// KB per second of media, signalling a few KB per call.
import fs from 'node:fs';
import net from 'node:net';

/**
 * Listens on the Unix socket `listenPath`; each accepted connection is piped to a new connection
 * to `targetPath`. Counts bytes each way over all connections.
 * @returns {Promise<{counts: {toEndpoint: number, toVda: number, connections: number},
 *                    close: () => Promise<void>}>} `toEndpoint`: bridge→daemon bytes;
 *          `toVda`: daemon→bridge bytes
 */
export async function startVcRelay(listenPath, targetPath) {
  const counts = { toEndpoint: 0, toVda: 0, connections: 0 };
  const sockets = new Set();
  fs.rmSync(listenPath, { force: true });
  const server = net.createServer((vda) => {
    counts.connections += 1;
    const ep = net.connect(targetPath);
    for (const s of [vda, ep]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); }
    vda.on('data', (d) => { counts.toEndpoint += d.length; });
    ep.on('data', (d) => { counts.toVda += d.length; });
    vda.pipe(ep);
    ep.pipe(vda);
    vda.on('close', () => ep.end());
    ep.on('close', () => vda.end());
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(listenPath, resolve); });
  return {
    counts,
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
