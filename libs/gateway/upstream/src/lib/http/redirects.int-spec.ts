import type { IncomingHttpHeaders } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { identity, rawServer, upstreamConfig, type RawServer } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const servers: RawServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const connector = () =>
  createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, allowPrivateNetworks: true });

describe('upstream credentials never leave the configured origin (no redirect followed, no endpoint elsewhere)', () => {
  it('streamable HTTP: a 301, 302, 307 or 308 to another origin is not followed', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const elsewhere = await rawServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(500).end();
    });
    servers.push(elsewhere);
    for (const status of [301, 302, 307, 308]) {
      const server = await rawServer((_req, res) => res.writeHead(status, { location: `http://localhost:${elsewhere.port}/mcp` }).end());
      servers.push(server);
      const error = await connector()
        .connect(upstreamConfig('streamable_http', { url: `${server.url}/mcp`, headers: { authorization: 'Bearer s3cret-token' } }), identity)
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ reason: 'protocol_error' });
      expect(JSON.stringify(error)).not.toContain('s3cret');
    }
    expect(seen).toEqual([]);
  });

  it('legacy SSE: a redirected stream and endpoints on other hosts are refused', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const elsewhere = await rawServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: endpoint\ndata: /messages\n\n');
    });
    servers.push(elsewhere);
    const redirecting = await rawServer((_req, res) => res.writeHead(302, { location: `${elsewhere.url}/sse` }).end());
    servers.push(redirecting);
    const e1 = await connector()
      .connect(upstreamConfig('sse', { url: `${redirecting.url}/sse`, headers: { 'x-api-key': 's3cret-token' } }), identity)
      .catch((e: unknown) => e);
    expect(e1).toMatchObject({ reason: 'protocol_error' });
    for (const announced of [
      `http://localhost:PORT/messages`,
      `HTTP://127.0.0.1:PORT@localhost:PORT/messages`,
      `\\\\localhost:PORT/messages`,
      `/\\localhost:PORT/messages`,
      `http:localhost:PORT/messages`,
    ]) {
      const posts: IncomingHttpHeaders[] = [];
      const server = await rawServer((req, res) => {
        if (req.method === 'GET') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(`event: endpoint\ndata: ${announced.replaceAll('PORT', String(server.port))}\n\n`);
          return;
        }
        posts.push(req.headers);
        res.writeHead(202).end();
      });
      servers.push(server);
      await connector()
        .connect(upstreamConfig('sse', { url: `${server.url}/sse`, headers: { 'x-api-key': 's3cret-token' } }), identity)
        .catch((e: unknown) => e);
      // Any POST must have reached the stream's own host (127.0.0.1), never `localhost`.
      for (const headers of posts) expect(headers.host, announced).toBe(`127.0.0.1:${server.port}`);
    }
    expect(seen).toEqual([]);
  });
});
