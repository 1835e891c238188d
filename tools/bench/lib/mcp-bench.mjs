// Shared by the gateway benchmarks: a lean MCP client over keep-alive HTTP (the load generator must cost as little
// CPU as possible) and the bench tenant's rows (tenant, agent client, API key, upstreams). 127.0.0.1 only.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { Queue } from 'bullmq';
import pg from 'pg';
import { dropDatabase, withDatabaseUrl } from '../../db/index.mjs';
import { activatePolicy } from './policy-snapshot.mjs';

export const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

/** One POST; resolves with status, headers and the whole body as text. */
export function post(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        // When the last byte arrived, before the client decodes the body (benches that time answers use it).
        const receivedAt = process.hrtime.bigint();
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), receivedAt });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The JSON-RPC message with `id` from a JSON or SSE response body. */
export function messageFor(response, id) {
  if ((response.headers['content-type'] ?? '').includes('text/event-stream')) {
    for (const line of response.text.split('\n')) {
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '') continue; // a priming event (SEP-1699): an id, no message
      const message = JSON.parse(data);
      if (message.id === id) return message;
    }
    throw new Error('no response on the SSE stream');
  }
  return JSON.parse(response.text);
}

/** initialize + notifications/initialized; resolves with the headers every later request of the session carries. */
export async function openSession(url, auth) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...auth };
  const init = await post(
    url,
    headers,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
    }),
  );
  if (init.status !== 200) throw new Error(`initialize failed at ${url}: ${init.status} ${init.text.slice(0, 200)}`);
  const session = init.headers['mcp-session-id'];
  const version = messageFor(init, 0).result.protocolVersion;
  const sessionHeaders = { ...headers, 'mcp-protocol-version': version, ...(session ? { 'mcp-session-id': session } : {}) };
  await post(url, sessionHeaders, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  return sessionHeaders;
}

/**
 * Opens the session's standalone GET stream, as SDK clients do right after initialize (the gateway reuses an
 * upstream's listing pages only while the agent listens: ADR 0007). Resolves once it is open with a function that
 * closes it; the stream's own bytes (keep-alives, notifications) are read and dropped.
 */
export function listen(url, headers) {
  const getHeaders = { ...headers, accept: 'text/event-stream' };
  delete getHeaders['content-type'];
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'GET', headers: getHeaders }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`the standalone GET answered ${res.statusCode}`));
        return;
      }
      res.on('data', () => undefined);
      res.on('error', () => undefined);
      resolve(() => req.destroy());
    });
    req.on('error', reject);
    req.end();
  });
}

/** DELETE of a session opened by openSession (nothing without a session id); never throws: a bench's tidy-up. */
export function closeSession(url, headers) {
  if (!headers['mcp-session-id']) return Promise.resolve();
  return new Promise((resolve) => {
    const req = http.request(url, { method: 'DELETE', agent, headers }, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', resolve);
    });
    req.on('error', resolve);
    req.end();
  });
}

/**
 * The bench tenant (slug `bench`): an agent client with an API key and Streamable HTTP upstreams. Resolves with the
 * tenant id and the key to send as `Authorization: Bearer`.
 * @param {import('pg').Client} db the database owner's connection
 * @param {{ name: string, prefix: string, url: string }[]} upstreams
 */
export async function seedBenchTenant(db, upstreams) {
  const apiKey = `pcs_${randomBytes(30).toString('base64url').replace(/[-_]/g, 'x').slice(0, 40)}`;
  const tenantId = randomUUID();
  const agentId = randomUUID();
  await db.query(`INSERT INTO tenants (id, slug, name, updated_at) VALUES ($1, 'bench', 'Bench', now())`, [tenantId]);
  await db.query(`INSERT INTO agent_clients (id, tenant_id, name, updated_at) VALUES ($1, $2, 'bench-agent', now())`, [agentId, tenantId]);
  await db.query(
    `INSERT INTO api_keys (id, tenant_id, name, key_hash, display_prefix, agent_client_id) VALUES ($1, $2, 'bench', $3, $4, $5)`,
    [randomUUID(), tenantId, createHash('sha256').update(apiKey).digest('hex'), apiKey.slice(0, 10), agentId],
  );
  for (const upstream of upstreams) {
    await db.query(
      `INSERT INTO upstreams (id, tenant_id, name, tool_prefix, transport, url, updated_at) VALUES ($1, $2, $3, $4, 'streamable_http', $5, now())`,
      [randomUUID(), tenantId, upstream.name, upstream.prefix, upstream.url],
    );
  }
  return { tenantId, apiKey };
}

/**
 * The call benchmarks' tenant (bench:gateway, bench:gateway-instructions): one Streamable HTTP upstream `sink` at
 * `upstreamUrl`, a policy that allows everything with a rate limit on `sink/echo` that every call is counted against
 * (and never reaches), and audit results kept as metadata — the guards a production call passes through.
 * @param {string} adminUrl the bench database, as its owner
 * @param {string} upstreamUrl
 * @returns {Promise<{ tenantId: string, apiKey: string }>}
 */
export async function seedCallBenchTenant(adminUrl, upstreamUrl) {
  const db = new pg.Client({ connectionString: adminUrl });
  await db.connect();
  try {
    const { tenantId, apiKey } = await seedBenchTenant(db, [{ name: 'sink', prefix: 'sink', url: upstreamUrl }]);
    // Without a policy snapshot the gateway denies everything.
    await activatePolicy(db, tenantId, {
      defaultEffect: 'allow',
      rules: [
        {
          id: 'bench-limit',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'tool', upstream: 'sink', name: 'echo' }],
          effect: 'allow',
          rateLimit: { scope: ['agent_client', 'tool'], requests: 1_000_000, windowSeconds: 3_600 },
        },
      ],
    });
    await db.query(`UPDATE tenants SET settings = $2::jsonb WHERE id = $1`, [tenantId, JSON.stringify({ audit: { results: 'metadata' } })]);
    return { tenantId, apiKey };
  } finally {
    await db.end();
  }
}

/**
 * The built gateway's environment for a bench: its own port, the bench database (application and system roles),
 * local Redis, private upstream addresses allowed (they are on 127.0.0.1) and a throwaway secrets keyring.
 * @param {{ port: number, adminUrl: string, redisUrl: string, queuePrefix: string, guards?: boolean }} options
 */
export function benchGatewayEnv({ port, adminUrl, redisUrl, queuePrefix, guards = true }) {
  return {
    GATEWAY_PORT: String(port),
    DATABASE_URL: withDatabaseUrl(adminUrl, { user: 'portcullis_app', password: null }),
    DATABASE_SYSTEM_URL: withDatabaseUrl(adminUrl, { user: 'portcullis_system', password: null }),
    REDIS_URL: redisUrl,
    GATEWAY_UPSTREAM_ALLOW_PRIVATE: 'true',
    // The benches' sessions never listen: their upstream GET streams are not held at all, the state they would reach
    // 30 s in with the default anyway. With the default, those streams close during the warm-up, and their teardown
    // left Node's stream functions deoptimised for the rest of the run (+15 k instructions a call, measured:
    // docs/benchmarks.md, twenty-sixth pass), which is not what a gateway costs a call in a steady state.
    GATEWAY_UPSTREAM_FIRST_LISTEN_MS: '0',
    GATEWAY_SECRETS_KEYRING: `bench:${randomBytes(32).toString('base64')}`,
    QUEUE_PREFIX: queuePrefix,
    // `guards`: both on (true), both off (false), or each as given ({ audit, rateLimits }).
    GATEWAY_AUDIT_ENABLED: String(typeof guards === 'object' ? guards.audit : guards),
    GATEWAY_RATE_LIMITS_ENABLED: String(typeof guards === 'object' ? guards.rateLimits : guards),
  };
}

/**
 * After a bench: drops its database, empties its audit queue (no worker consumes the bench's jobs) and closes the
 * client's keep-alive sockets. Never throws.
 * @param {{ adminUrl: string, redisUrl: string, queuePrefix: string }} options
 */
export async function discardBenchData({ adminUrl, redisUrl, queuePrefix }) {
  await dropDatabase(adminUrl).catch(() => undefined);
  const queue = new Queue('portcullis-audit', { connection: { url: redisUrl }, prefix: queuePrefix });
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close().catch(() => undefined);
  agent.destroy();
}
