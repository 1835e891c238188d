/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in devDependencies), through the
 * gateway both ways:
 * - as a server: every server scenario it has, pending ones included, run by its own CLI against a tenant endpoint of
 *   the gateway, once for each upstream transport (Streamable HTTP, stdio, legacy SSE);
 * - as a client: the client scenarios that concern an MCP client's protocol (not its OAuth, which the gateway does
 *   not do toward upstreams, nor its user interface): the suite's scenario server is an upstream of a tenant, and an
 *   SDK agent makes the calls the scenario expects through the gateway.
 *
 * The suite calls tools and prompts by fixed names (`test_simple_text`, `json_schema_2020_12_tool`, …). The tenant's
 * upstreams are the demo conformance servers, which serve those names without their first word, behind the tool
 * prefixes `test` and `json` with the gateway's separator set to `_` (past the configuration's guard, which refuses it
 * for deployments: see startTestGateway): the names the suite sees are the gateway's
 * aggregation of two upstreams, not a pass-through. The CLI has no option for credentials, so a preload
 * (testing/conformance-credentials.mjs) adds the tenant's API key to its requests; nothing else stands between it and
 * the gateway. Needs `npx nx build demo-upstreams`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, LoggingMessageNotificationSchema, PingRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import {
  createAgentWithKey,
  demoUpstreamTarget,
  freePort,
  startDemoUpstreams,
  startTestGateway,
  type DemoTransport,
  type DemoUpstreams,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let gateway: TestGateway;

const cli = path.join(
  path.dirname(createRequire(__filename).resolve('@modelcontextprotocol/conformance/package.json')),
  'dist',
  'index.js',
);
const credentials = path.join(__dirname, 'testing', 'conformance-credentials.mjs');

/** The prefixes the demo conformance servers' names need (CONFORMANCE_TOOL_PREFIX, CONFORMANCE_SCHEMA_TOOL_PREFIX there). */
const TOOL_PREFIX = 'test';
const SCHEMA_TOOL_PREFIX = 'json';

type UpstreamTransport = DemoTransport;
const TRANSPORTS: readonly UpstreamTransport[] = ['streamable_http', 'stdio', 'sse'];
const tenants = new Map<UpstreamTransport, { tenant: TestTenant; key: string }>();

interface Check {
  readonly id: string;
  readonly name: string;
  readonly status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | 'SKIPPED';
  readonly errorMessage?: string;
}

async function tenantWith(transport: UpstreamTransport): Promise<{ tenant: TestTenant; key: string }> {
  const tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  const upstream = (server: string, toolPrefix: string) => ({
    tenantId: tenant.id,
    name: server,
    toolPrefix,
    connectTimeoutMs: 10_000,
    callTimeoutMs: 15_000,
    ...demoUpstreamTarget(demo, server, transport),
  });
  await db.upstream.create({ data: upstream('conformance', TOOL_PREFIX) as never });
  await db.upstream.create({ data: upstream('conformance-schema', SCHEMA_TOOL_PREFIX) as never });
  const { key } = await createAgentWithKey(db, tenant.id, 'conformance-agent');
  return { tenant, key };
}

/** Runs every server scenario of the suite against `url`; resolves with each scenario's checks. */
async function runSuite(url: string, key: string): Promise<Map<string, Check[]>> {
  const out = mkdtempSync(path.join(tmpdir(), 'pcs-conformance-'));
  try {
    const log: string[] = [];
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', credentials, cli, 'server', '--url', url, '--suite', 'all', '-o', out], {
        env: {
          PATH: process.env['PATH'] ?? '',
          PORTCULLIS_CONFORMANCE_ORIGIN: new URL(url).origin,
          PORTCULLIS_CONFORMANCE_KEY: key,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout.on('data', (chunk: Buffer) => log.push(chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => log.push(chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
      child.once('error', reject);
      child.once('exit', (exitCode) => {
        clearTimeout(timer);
        resolve(exitCode);
      });
    });
    const results = new Map<string, Check[]>();
    for (const dir of readdirSync(out)) {
      const scenario = /^server-(.+)-\d{4}-\d{2}-\d{2}T/.exec(dir)?.[1];
      if (scenario === undefined) continue;
      results.set(scenario, JSON.parse(readFileSync(path.join(out, dir, 'checks.json'), 'utf8')) as Check[]);
    }
    if (results.size === 0) throw new Error(`the conformance CLI wrote no results (exit ${code}):\n${log.join('')}`);
    return results;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** Connects `client` to a tenant's endpoint with the tenant's API key; resolves with the transport (to end the session). */
async function connectTo(client: Client, slug: string, key: string): Promise<StreamableHTTPClientTransport> {
  const transport = new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${slug}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  return transport;
}

/** The server scenarios this version of the suite has, as its CLI lists them. */
function listedScenarios(): string[] {
  const text = execFileSync(process.execPath, [cli, 'list', '--server'], { encoding: 'utf8', timeout: 30_000 });
  return [...text.matchAll(/^\s+- (\S+)$/gm)].map((match) => match[1] as string);
}
let scenarios: string[] = [];

beforeAll(async () => {
  scenarios = listedScenarios();
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  for (const transport of TRANSPORTS) tenants.set(transport, await tenantWith(transport));
  const port = await freePort();
  gateway = await startTestGateway({
    systemDb: db,
    redisUrl: ctx.redisUrl,
    port,
    toolSeparator: '_',
    env: {
      // The suite's DNS-rebinding scenario expects a local server to refuse other hosts and origins.
      GATEWAY_ALLOWED_HOSTS: `127.0.0.1:${port},localhost:${port}`,
      GATEWAY_ALLOWED_ORIGINS: `http://127.0.0.1:${port},http://localhost:${port}`,
    },
  });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await demo?.stop();
  await db?.$disconnect();
});

describe.each(TRANSPORTS)('the MCP conformance suite through the gateway, upstream over %s', (transport) => {
  it('passes every server scenario', async () => {
    const entry = tenants.get(transport);
    if (!entry) throw new Error('tenant missing');
    const results = await runSuite(`${gateway.url}/t/${entry.tenant.slug}/mcp`, entry.key);

    // Every scenario the suite lists ran (a scenario that crashed reports a FAILURE of its own).
    expect(scenarios.length).toBeGreaterThanOrEqual(30);
    expect([...results.keys()].sort()).toEqual([...scenarios].sort());

    const problems: string[] = [];
    let passed = 0;
    for (const [scenario, checks] of results) {
      for (const check of checks) {
        if (check.status === 'SUCCESS') passed += 1;
        // A WARNING is a SHOULD of the specification the suite found unmet: counted as a problem too.
        if (check.status === 'FAILURE' || check.status === 'WARNING') {
          problems.push(`${scenario} / ${check.id}: ${check.status} ${check.errorMessage ?? ''}`);
        }
      }
    }
    expect(problems).toEqual([]);
    // The scenarios' own checks, not only the absence of failures: each scenario passed something. Except SSE polling
    // over stdio and legacy SSE: there nothing streams before the answer (only a Streamable HTTP upstream closes its
    // stream mid-call), so the gateway answers with JSON and the scenario's checks are informational only.
    const informational = transport === 'streamable_http' ? [] : ['server-sse-polling'];
    const silent = [...results].filter(([scenario, checks]) => !informational.includes(scenario) && !checks.some((c) => c.status === 'SUCCESS'));
    expect(silent.map(([scenario]) => scenario)).toEqual([]);
    expect(passed).toBeGreaterThanOrEqual(results.size);
  }, 180_000);
});

describe.each(TRANSPORTS)('a call whose upstream (over %s) may close its response stream mid-call (SEP-1699)', (transport) => {
  it('is answered, and what the upstream sent meanwhile arrives (over Streamable HTTP the stream is resumed with Last-Event-ID)', async () => {
    const entry = tenants.get(transport);
    if (!entry) throw new Error('tenant missing');
    const client = new Client({ name: 'sep-1699', version: '1.0.0' });
    const logs: unknown[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      logs.push(notification.params.data);
    });
    await connectTo(client, entry.tenant.slug, entry.key);
    try {
      const result = await client.callTool({ name: 'test_reconnection', arguments: {} });
      expect(result.isError).toBeFalsy();
      // Only Streamable HTTP can close a stream and resume it (the gateway speaks 2025-11-25 to it and was primed).
      expect(result.structuredContent).toEqual({ streamClosed: transport === 'streamable_http' });
      expect(logs).toContain('Reconnection test: still working after the stream closed');
    } finally {
      await client.close();
    }
  }, 30_000);
});

/**
 * A client scenario of the suite in its interactive mode: its server runs until told to stop, then writes its checks.
 */
async function startClientScenario(scenario: string) {
  const out = mkdtempSync(path.join(tmpdir(), 'pcs-conformance-client-'));
  const child = spawn(process.execPath, [cli, 'client', '--scenario', scenario, '-o', out], {
    env: { PATH: process.env['PATH'] ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no server URL from the conformance CLI:\n${log}`)), 15_000);
    child.stdout.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      const found = /Server URL: (\S+)/.exec(log)?.[1];
      if (found !== undefined) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    child.once('exit', () => reject(new Error(`the conformance CLI exited:\n${log}`)));
  });
  return {
    url,
    /** Stops the scenario's server and resolves with the checks it recorded. */
    async checks(): Promise<Check[]> {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      try {
        const dir = readdirSync(out).find((name) => existsSync(path.join(out, name, 'checks.json')));
        if (dir === undefined) throw new Error(`the conformance CLI wrote no checks:\n${log}`);
        return JSON.parse(readFileSync(path.join(out, dir, 'checks.json'), 'utf8')) as Check[];
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    kill: () => child.kill('SIGKILL'),
  };
}

describe.each(TRANSPORTS)('an upstream (over %s) that pings its client during a call', (transport) => {
  it('is answered by the gateway, which is that client: the agent is not asked', async () => {
    const entry = tenants.get(transport);
    if (!entry) throw new Error('tenant missing');
    const client = new Client({ name: 'ping-agent', version: '1.0.0' });
    let pingedAgent = 0;
    client.setRequestHandler(PingRequestSchema, () => {
      pingedAgent += 1;
      return {};
    });
    await connectTo(client, entry.tenant.slug, entry.key);
    try {
      const result = await client.callTool({ name: 'test_ping_client', arguments: {} });
      expect(result.isError).toBeFalsy();
      expect(pingedAgent).toBe(0);
    } finally {
      await client.close();
    }
  }, 30_000);
});

describe('the MCP conformance suite\'s client scenarios, the gateway being the client of the scenario\'s server', () => {
  const CLIENT_SCENARIOS: readonly { scenario: string; agent?: () => Client; act: (client: Client) => Promise<unknown> }[] = [
    // Listing makes the gateway connect: the scenario checks the initialize it sends (version, client info).
    { scenario: 'initialize', act: (client) => client.listTools() },
    { scenario: 'tools_call', act: (client) => client.callTool({ name: 'conf_add_numbers', arguments: { a: 2, b: 3 } }) },
    // The scenario's server closes the call's stream after priming it with retry 500 ms, and expects a GET with
    // Last-Event-ID after that delay (SEP-1699), on which it sends the answer.
    { scenario: 'sse-retry', act: (client) => client.callTool({ name: 'conf_test_reconnection', arguments: {} }) },
    // The scenario's server elicits with a default for each field; the agent accepts with nothing filled in and applies
    // the defaults (SEP-1034). The gateway must relay the request's schema and the agent's capability untouched.
    {
      scenario: 'elicitation-sep1034-client-defaults',
      agent: () => {
        const client = new Client(
          { name: 'conformance-client-agent', version: '1.0.0' },
          { capabilities: { elicitation: { form: { applyDefaults: true } } } },
        );
        client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: {} }));
        return client;
      },
      act: (client) => client.callTool({ name: 'conf_test_client_elicitation_defaults', arguments: {} }),
    },
  ];

  it.each(CLIENT_SCENARIOS)('passes $scenario', async ({ scenario, agent, act }) => {
    const server = await startClientScenario(scenario);
    let client: Client | undefined;
    let transport: StreamableHTTPClientTransport | undefined;
    try {
      const tenant = await createTestTenant(db);
      await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
      await db.upstream.create({
        data: {
          tenantId: tenant.id,
          name: 'conformance-client',
          toolPrefix: 'conf',
          transport: 'streamable_http',
          url: server.url,
          connectTimeoutMs: 10_000,
          callTimeoutMs: 15_000,
        } as never,
      });
      const { key } = await createAgentWithKey(db, tenant.id, 'conformance-client-agent');
      await gateway.dataPlane.refreshAll();
      client = agent?.() ?? new Client({ name: 'conformance-client-agent', version: '1.0.0' });
      transport = await connectTo(client, tenant.slug, key);
      const result = await act(client);
      expect((result as { isError?: boolean }).isError).toBeFalsy();
    } finally {
      // Ending the agent's session ends the gateway's upstream session, and with it the standalone stream the
      // scenario's server would otherwise wait for when told to stop.
      await transport?.terminateSession();
      await client?.close();
    }
    const checks = await server.checks().finally(() => server.kill());
    const problems = checks.filter((check) => check.status === 'FAILURE' || check.status === 'WARNING');
    expect(problems.map((check) => `${check.id}: ${check.status} ${check.errorMessage ?? ''}`)).toEqual([]);
    expect(checks.filter((check) => check.status === 'SUCCESS').length).toBeGreaterThan(0);
  }, 60_000);
});
