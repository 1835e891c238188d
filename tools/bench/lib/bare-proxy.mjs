#!/usr/bin/env node
// A bare reverse proxy with no MCP logic, for `npm run bench:gateway -- --bare-proxy`: the floor any Node proxy
// pays on this machine (two more loopback hops, an HTTP server and an HTTP client) against which the gateway's own
// cost can be read. node:http server, undici Pool to the upstream (keep-alive), bodies buffered on the way in and
// streamed on the way out, hop-by-hop headers dropped. Listens on 127.0.0.1 only.
//
//   node tools/bench/lib/bare-proxy.mjs <port> <upstream origin, e.g. http://127.0.0.1:4000>
import http from 'node:http';
import { Pool } from 'undici';

const [portArg, origin] = process.argv.slice(2);
if (!portArg || !origin) {
  console.error('usage: bare-proxy.mjs <port> <upstream origin>');
  process.exit(2);
}
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host', 'proxy-connection', 'te', 'trailer']);
const pool = new Pool(origin, { connections: 256, headersTimeout: 0, bodyTimeout: 0 });

function forwardable(headers) {
  const out = {};
  for (const name of Object.keys(headers)) if (!HOP_BY_HOP.has(name)) out[name] = headers[name];
  return out;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    pool
      .request({
        method: req.method,
        path: req.url,
        headers: forwardable(req.headers),
        body: chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks),
      })
      .then(({ statusCode, headers, body }) => {
        res.writeHead(statusCode, forwardable(headers));
        body.pipe(res);
        res.on('close', () => body.destroy());
      })
      .catch(() => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close();
  void pool.close();
  setTimeout(() => process.exit(0), 200).unref();
});
