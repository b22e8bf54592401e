// Tiny static HTTP server on 127.0.0.1 for the test pages and the SDK bundle.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.json': 'application/json' };

/**
 * Serves files under `roots`: URL prefix → folder or single file. Only GET/HEAD; no directory
 * listings; paths escaping a root get 404.
 * @param {Record<string, string>} roots e.g. {'/': pagesDir, '/sdk/vdimedia.js': bundle}
 * @returns {Promise<{url: string, close: () => Promise<void>}>} url like http://127.0.0.1:PORT
 */
export async function startStaticServer(roots) {
  const entries = Object.entries(roots).sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = null;
    for (const [prefix, target] of entries) {
      if (url.pathname === prefix) { file = fs.existsSync(target) && fs.statSync(target).isFile() ? target : null; break; }
      if (prefix.endsWith('/') && url.pathname.startsWith(prefix)) {
        const p = path.resolve(target, '.' + path.posix.normalize('/' + url.pathname.slice(prefix.length)));
        if (p.startsWith(path.resolve(target) + path.sep)) file = p;
        break;
      }
    }
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile() || !['GET', 'HEAD'].includes(req.method)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    if (req.method === 'HEAD') res.end(); else fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}
