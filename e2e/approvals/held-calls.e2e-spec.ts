/**
 * Human approval of held calls across apps: the official MCP SDK client → a real gateway data plane (policy hook +
 * approval gate, Postgres, Redis) → the built demo upstreams, while the approval is decided through the real
 * control-plane app (in-process, its own Nest container). The only link between the two is Postgres and the
 * `approvals` Redis channel, as between separate processes. Needs `npx nx build demo-upstreams`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { CHANGE_CHANNELS } from '@portcullis/contracts/api';
import { createPrismaClient, type PortcullisPrismaClient } from '@portcullis/data/db';
import { createRedisClient } from '@portcullis/data/redis';
import { argumentsHash } from '@portcullis/gateway/approvals';
import { testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlaneHarness } from '../../apps/control-plane/src/testing/control-plane-harness';
import { startDemoUpstreams, startProxy, startTestGateway, type DemoUpstreams, type TestGateway } from '../../apps/gateway/src/testing/gateway-harness';

let cp: ControlPlaneHarness;
let appDb: PortcullisPrismaClient;
let demo: DemoUpstreams;
/** Wakes held calls only on the Redis notice (its database poll is far away). */
let gateway: TestGateway;
/** Short approval timeout and a fast database poll (the fallback when a notice is lost). */
let hasty: TestGateway;
let tenant: TestTenant;
let owner: { id: string; token: string };
let agentKey: string;
const TIMEOUT_MS = 3_000;

/**
 * How a held call can end when its key stops working while it waits: its approval cancelled by the control plane
 * (-32032), its POST withdrawn with the key (-32003), or its session ended for a principal left without a usable key,
 * which cancels what the session holds (-32054).
 */
const HELD_CALL_ENDINGS = [
  { code: -32032, reason: 'approval_cancelled' },
  { code: -32003, reason: 'credential_no_longer_valid' },
  { code: -32054, reason: 'approval_cancelled' },
];
const approvalsUrl = () => `/api/v1/tenants/${tenant.id}/approvals`;

function text(result: unknown): string {
  const content = (result as { content?: { text?: string }[] }).content ?? [];
  return content.map((item) => item.text ?? '').join('');
}

async function connect(base: string, fetchImpl?: typeof fetch) {
  const client = new Client({ name: 'approvals-e2e', version: '1.0.0' }, { capabilities: {} });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${base}/t/${tenant.slug}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${agentKey}` } },
      ...(fetchImpl ? { fetch: fetchImpl } : {}),
    }),
  );
  return client;
}

/** The tenant's one pending approval, as an approver sees it through the API. */
async function pendingApproval(): Promise<Record<string, unknown>> {
  return waitFor(
    async () => {
      const res = await cp.request('GET', `${approvalsUrl()}?status=pending`, { token: owner.token });
      return res.json.items?.length === 1 ? res.json.items[0] : null;
    },
    { timeoutMs: 10_000, description: 'a pending approval' },
  );
}

async function row(id: unknown) {
  return cp.system.approval.findUniqueOrThrow({ where: { id: String(id) }, select: { status: true, consumedAt: true, editedArguments: true, decidedById: true } });
}

beforeAll(async () => {
  const ctx = testContext();
  cp = await startControlPlane();
  appDb = createPrismaClient({ url: ctx.databaseUrl });
  demo = await startDemoUpstreams();
  tenant = await cp.tenant();
  owner = await cp.member(tenant.id, 'owner');
  await cp.system.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${demo.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 10_000 },
  });
  const agent = await cp.system.agentClient.create({ data: { tenantId: tenant.id, name: 'deploy-bot' }, select: { id: true } });
  agentKey = generateApiKey();
  await cp.system.apiKey.create({ data: { tenantId: tenant.id, name: 'bot', keyHash: hashApiKey(agentKey), displayPrefix: agentKey.slice(0, 10), agentClientId: agent.id } });
  // ks/echo (a tool) and ks/greeting (a prompt) need a person's approval; everything else is allowed.
  const saved = await cp.request('PUT', `/api/v1/tenants/${tenant.id}/policy`, {
    token: owner.token,
    headers: { 'if-match': '"0"' },
    body: {
      defaultEffect: 'allow',
      rules: [
        { id: 'echo-needs-approval', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'tool', upstream: 'ks', name: 'echo' }], effect: 'require_approval' },
        { id: 'greeting-needs-approval', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'prompt', upstream: 'ks', name: 'greeting' }], effect: 'require_approval' },
      ],
    },
  });
  expect(saved.status).toBe(200);
  gateway = await startTestGateway({
    systemDb: cp.system,
    appDb,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_APPROVAL_TIMEOUT_MS: '30000', GATEWAY_APPROVAL_POLL_MS: '600000', GATEWAY_APPROVAL_PROGRESS_MS: '200' },
  });
  hasty = await startTestGateway({
    systemDb: cp.system,
    appDb,
    redisUrl: ctx.redisUrl,
    env: { GATEWAY_APPROVAL_TIMEOUT_MS: String(TIMEOUT_MS), GATEWAY_APPROVAL_POLL_MS: '200' },
  });
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await hasty?.close();
  await demo?.stop();
  await appDb?.$disconnect();
  await cp?.close();
});

describe('held calls decided through the control plane', () => {
  it('approve with edited arguments: the upstream receives the edited arguments; progress keeps the request alive', async () => {
    const client = await connect(gateway.url);
    const progress: string[] = [];
    const call = client.callTool({ name: 'ks__echo', arguments: { message: 'rm -rf /' } }, undefined, {
      onprogress: (p) => progress.push(p.message ?? ''),
    });
    const approval = await pendingApproval();
    expect(approval).toMatchObject({
      kind: 'tool',
      method: 'tools/call',
      tool: 'echo',
      arguments: { message: 'rm -rf /' },
      argumentsHash: argumentsHash({ message: 'rm -rf /' }),
      snapshotVersion: 1,
    });
    expect(String(approval['reason'])).not.toBe('');
    await waitFor(() => progress.length >= 2, { description: 'progress while held' });
    expect(progress[0]).toContain(String(approval['id']));

    const decided = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, {
      token: owner.token,
      body: { argumentsHash: approval['argumentsHash'], arguments: { message: 'ls /tmp' } },
    });
    expect(decided.status).toBe(200);
    expect(text(await call)).toBe('ls /tmp');
    const stored = await row(approval['id']);
    expect(stored).toMatchObject({ status: 'approved', editedArguments: { message: 'ls /tmp' }, decidedById: owner.id });
    expect(stored.consumedAt).not.toBeNull();
    expect(gateway.dataPlane.approvals?.size).toBe(0);
    // Unaffected tools are not held.
    expect(text(await client.callTool({ name: 'ks__add', arguments: { a: 1, b: 2 } }))).toContain('3');
    await client.close();
  });

  it('a held prompt is shown as a prompt (prompts/get), listed under ?kind=prompt, and runs once approved', async () => {
    const client = await connect(gateway.url);
    const got = client.getPrompt({ name: 'ks__greeting', arguments: { name: 'Ada', language: 'french' } });
    const approval = await pendingApproval();
    expect(approval).toMatchObject({ kind: 'prompt', method: 'prompts/get', tool: 'greeting', arguments: { name: 'Ada', language: 'french' } });
    const ids = async (kind: string) =>
      (await cp.request('GET', `${approvalsUrl()}?status=pending&kind=${kind}`, { token: owner.token })).json.items?.map((item) => item['id']);
    expect(await ids('prompt')).toEqual([approval['id']]);
    expect(await ids('tool')).toEqual([]);
    const decided = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: owner.token, body: { argumentsHash: approval['argumentsHash'] } });
    expect(decided.status).toBe(200);
    expect(JSON.stringify((await got).messages)).toContain('Ada');
    expect((await row(approval['id'])).consumedAt).not.toBeNull();
    await client.close();
  });

  it('behind a proxy that closes connections idle for 1 s, a call held for 2.5 s still gets its answer', async () => {
    // The response is kept alive while the call waits (no progress token: nothing else would cross the connection).
    const kept = await startTestGateway({
      systemDb: cp.system,
      appDb,
      redisUrl: testContext().redisUrl,
      env: { GATEWAY_APPROVAL_TIMEOUT_MS: '30000', GATEWAY_APPROVAL_POLL_MS: '600000', GATEWAY_SSE_KEEPALIVE_MS: '150', GATEWAY_SSE_REPLAY_TTL_MS: '1000' },
    });
    const proxy = await startProxy(kept.url, { idleTimeoutMs: 1_000 });
    try {
      const client = await connect(proxy.url);
      const call = client.callTool({ name: 'ks__echo', arguments: { message: 'worth the wait' } });
      const approval = await pendingApproval();
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      const decided = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: owner.token, body: { argumentsHash: approval['argumentsHash'] } });
      expect(decided.status).toBe(200);
      expect(text(await call)).toBe('worth the wait');
      await client.close();
    } finally {
      await proxy.close();
      await kept.close();
    }
  });

  it('approve as is: the original arguments go through', async () => {
    const client = await connect(gateway.url);
    const call = client.callTool({ name: 'ks__echo', arguments: { message: 'hello' } });
    const approval = await pendingApproval();
    expect((await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: owner.token, body: { argumentsHash: approval['argumentsHash'] } })).status).toBe(200);
    expect(text(await call)).toBe('hello');
    await client.close();
  });

  it('deny: the agent gets a JSON-RPC error with the approver’s note (no progress token: the call still waits)', async () => {
    const client = await connect(gateway.url);
    const call = client.callTool({ name: 'ks__echo', arguments: { message: 'drop table' } });
    const outcome = call.then(
      () => null,
      (error: unknown) => error,
    );
    const approval = await pendingApproval();
    const denied = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/deny`, { token: owner.token, body: { note: 'not on a Friday' } });
    expect(denied.status).toBe(200);
    const error = await outcome;
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(-32032);
    expect((error as McpError).message).toMatch(/denied this call of echo: not on a Friday/);
    expect((error as McpError).data).toMatchObject({ approvalId: approval['id'], reason: 'approval_denied' });
    expect((await row(approval['id'])).status).toBe('denied');
    await client.close();
  });

  it('timeout: the call fails with a clear error and the approval is marked expired (a late decision is a 409)', async () => {
    const client = await connect(hasty.url);
    const started = Date.now();
    const outcome = client.callTool({ name: 'ks__echo', arguments: { message: 'later' } }).then(
      () => null,
      (error: unknown) => error,
    );
    const approval = await pendingApproval();
    const error = await outcome;
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
    expect((error as McpError).code).toBe(-32033);
    expect((error as McpError).message).toMatch(/needed a human approval and none was given within 3 s/);
    expect((await row(approval['id'])).status).toBe('expired');
    // Someone other than the key's creator (four eyes), too late.
    const approver = await cp.member(tenant.id, 'admin');
    const late = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: approver.token, body: { argumentsHash: approval['argumentsHash'] } });
    expect(late.status).toBe(409);
    await client.close();
  });

  it('falls back to the database poll when no notice arrives', async () => {
    const client = await connect(hasty.url);
    const call = client.callTool({ name: 'ks__echo', arguments: { message: 'polled' } });
    const approval = await pendingApproval();
    // Decided behind the notice's back (as if the Redis message were lost).
    await cp.system.approval.update({ where: { id: String(approval['id']) }, data: { status: 'approved', decidedById: owner.id, decidedAt: new Date() } });
    expect(text(await call)).toBe('polled');
    await client.close();
  });

  it('agent cancellation cancels the approval', async () => {
    const client = await connect(gateway.url);
    const abort = new AbortController();
    const outcome = client.callTool({ name: 'ks__echo', arguments: { message: 'never mind' } }, undefined, { signal: abort.signal }).then(
      () => null,
      (error: unknown) => error,
    );
    const approval = await pendingApproval();
    abort.abort('changed my mind');
    expect(await outcome).toBeInstanceOf(Error);
    await waitFor(async () => (await row(approval['id'])).status === 'cancelled', { description: 'approval cancelled' });
    expect(gateway.dataPlane.approvals?.size).toBe(0);
    // Someone other than the key's creator (four eyes), too late.
    const approver = await cp.member(tenant.id, 'admin');
    const late = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: approver.token, body: { argumentsHash: approval['argumentsHash'] } });
    expect(late.status).toBe(409);
    await client.close();
  });

  it('a cancellation sent through another replica cancels the approval held on this one', async () => {
    // Remember the JSON-RPC id the SDK gives the call, to cancel it ourselves through the other gateway.
    const ids: (string | number)[] = [];
    const recording: typeof fetch = async (input, init) => {
      if (typeof init?.body === 'string' && init.body.includes('"tools/call"')) ids.push((JSON.parse(init.body) as { id: string | number }).id);
      return fetch(input, init);
    };
    const client = await connect(gateway.url, recording);
    const transport = client.transport as StreamableHTTPClientTransport;
    // The cancellation is sent for the client here, behind its back: a cancelled request gets no answer (MCP), so the
    // client's call ends only at its own timeout.
    const outcome = client.callTool({ name: 'ks__echo', arguments: { message: 'elsewhere' } }, undefined, { timeout: 4_000 }).then(
      () => null,
      (error: unknown) => error,
    );
    const approval = await pendingApproval();
    const res = await fetch(`${hasty.url}/t/${tenant.slug}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${agentKey}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId ?? '',
        'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: ids[0], reason: 'from the other replica' } }),
    });
    expect(res.status).toBe(202);
    await waitFor(async () => (await row(approval['id'])).status === 'cancelled', { description: 'approval cancelled across replicas' });
    expect(gateway.dataPlane.approvals?.size).toBe(0);
    expect(String(await outcome)).toMatch(/timed out/i);
    await client.close();
  });

  it('session end cancels the approval', async () => {
    const client = await connect(gateway.url);
    const transport = client.transport as StreamableHTTPClientTransport;
    void client.callTool({ name: 'ks__echo', arguments: { message: 'bye' } }).catch(() => undefined);
    const approval = await pendingApproval();
    await transport.terminateSession();
    await waitFor(async () => (await row(approval['id'])).status === 'cancelled', { description: 'approval cancelled by session end' });
    await client.close();
  });

  it('a tool blocked while its call waited is refused when the call is approved (pinning checks again)', async () => {
    const client = await connect(gateway.url);
    const outcome = client.callTool({ name: 'ks__echo', arguments: { message: 'meanwhile' } }).then(
      () => null,
      (error: unknown) => error,
    );
    const approval = await pendingApproval();
    // An administrator blocks the tool during the wait; the gateways hear of it on the upstreams channel.
    const upstream = await cp.system.upstream.findFirstOrThrow({ where: { tenantId: tenant.id, name: 'ks' }, select: { id: true } });
    const pin = await cp.system.upstreamTool.create({
      data: { tenantId: tenant.id, upstreamId: upstream.id, kind: 'tool', name: 'echo', definition: {}, contentHash: 'blocked-by-test', status: 'blocked' },
      select: { id: true },
    });
    const publisher = createRedisClient({ url: testContext().redisUrl, connectionName: 'held-calls-e2e' });
    try {
      await publisher.publish(CHANGE_CHANNELS.upstreams, tenant.id);
      const observer = await connect(gateway.url);
      await waitFor(async () => !(await observer.listTools()).tools.some((tool) => tool.name === 'ks__echo'), { description: 'echo hidden by its pin' });
      await observer.close();

      expect((await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: owner.token, body: { argumentsHash: approval['argumentsHash'] } })).status).toBe(200);
      const error = await outcome;
      expect(error).toBeInstanceOf(McpError);
      expect((error as McpError).code).toBe(-32003);
      expect((error as McpError).data).toMatchObject({ reason: 'tool_pin_blocked' });
    } finally {
      await cp.system.upstreamTool.delete({ where: { id: pin.id } });
      await publisher.publish(CHANGE_CHANNELS.upstreams, tenant.id);
      await publisher.quit();
      await client.close();
    }
  });

  it('a held call ends when its key is revoked, and with its session and approval when its agent client is disabled', async () => {
    // An agent client and keys of its own, so that revoking and disabling leave the other tests alone.
    const agent = await cp.request('POST', `/api/v1/tenants/${tenant.id}/agent-clients`, { token: owner.token, body: { name: 'leaky-bot' } });
    expect(agent.status).toBe(201);
    const newKey = async () => {
      const created = await cp.request('POST', `/api/v1/tenants/${tenant.id}/api-keys`, { token: owner.token, body: { name: 'leaky', agentClientId: agent.json['id'] } });
      expect(created.status).toBe(201);
      return { id: String(created.json['id']), secret: String(created.json['secret']) };
    };
    const status = (secret: string) =>
      fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: '{}',
      }).then((res) => res.status);
    const heldCall = async (secret: string) => {
      // The gateway learns of a new key on the apiKeys channel (a malformed body answers 400 once the key is known).
      await waitFor(async () => (await status(secret)) === 400, { description: 'the new key accepted' });
      const client = new Client({ name: 'approvals-e2e', version: '1.0.0' }, { capabilities: {} });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${secret}` } } }));
      const outcome = client.callTool({ name: 'ks__echo', arguments: { message: 'with a leaked key' } }).then(
        () => null,
        (error: unknown) => error,
      );
      return { client, outcome, approval: await pendingApproval() };
    };

    // Revoked while it waits: the approval is cancelled with the key, and the call ends.
    const first = await newKey();
    const revokedCall = await heldCall(first.secret);
    expect((await cp.request('POST', `/api/v1/tenants/${tenant.id}/api-keys/${first.id}/revoke`, { token: owner.token })).status).toBe(200);
    expect((await row(revokedCall.approval['id'])).status).toBe('cancelled');
    // Three notices race to end it, each with its own reason: the approval's cancellation (-32032); the key's
    // revocation, on which the gateway withdraws every POST of that key under way (-32003); and the end of the session
    // of a principal left with no usable key, which cancels what it holds (-32054). Whichever comes first, the call ends
    // with an error.
    const outcome = (await revokedCall.outcome) as { code?: number; data?: { reason?: string } } | null;
    expect(HELD_CALL_ENDINGS).toContainEqual({ code: outcome?.code, reason: outcome?.data?.reason });
    await revokedCall.client.close().catch(() => undefined);

    // The agent client disabled while the call waits (its keys stop working): its POST is withdrawn as soon as the key
    // is refused, and its session ends with it (ADR 0007: a principal left with no usable key), the held call and its
    // approval with them, so nobody can approve what could never run. (Were it approved in between, the call would be
    // refused again: `credentialsAfterApproval`, its own specs.)
    const second = await newKey();
    const disabledCall = await heldCall(second.secret);
    await cp.system.agentClient.update({ where: { id: String(agent.json['id']) }, data: { disabled: true } });
    const publisher = createRedisClient({ url: testContext().redisUrl, connectionName: 'held-calls-e2e-keys' });
    try {
      await publisher.publish(CHANGE_CHANNELS.apiKeys, tenant.id);
    } finally {
      await publisher.quit();
    }
    await waitFor(async () => (await status(second.secret)) === 401, { description: 'the disabled client’s key refused' });
    await waitFor(async () => (await row(disabledCall.approval['id'])).status === 'cancelled', { description: 'the disabled client’s held call cancelled' });
    // Someone other than the keys' creator tries to approve (four eyes: whoever created a key of the agent may not).
    const approver = await cp.member(tenant.id, 'admin');
    const approve = await cp.request('POST', `${approvalsUrl()}/${String(disabledCall.approval['id'])}/approve`, { token: approver.token, body: { argumentsHash: disabledCall.approval['argumentsHash'] } });
    expect(approve.status).toBe(409);
    const error = await disabledCall.outcome;
    expect(error).toBeInstanceOf(McpError);
    expect(HELD_CALL_ENDINGS).toContainEqual({ code: (error as McpError).code, reason: ((error as McpError).data as { reason?: string } | undefined)?.reason });
    await disabledCall.client.close().catch(() => undefined);
  });

  // Before, nothing cancelled it: the API showed it pending until its own timeout and an approval of it was recorded,
  // though the gateway would refuse to run it (a revoked key's approvals are cancelled by the control plane).
  it("a held call whose key expires while it waits is cancelled, and its approval with it", async () => {
    const agent = await cp.request('POST', `/api/v1/tenants/${tenant.id}/agent-clients`, { token: owner.token, body: { name: 'short-lived-bot' } });
    expect(agent.status).toBe(201);
    const expiresAt = new Date(Date.now() + 8_000);
    const created = await cp.request('POST', `/api/v1/tenants/${tenant.id}/api-keys`, {
      token: owner.token,
      body: { name: 'short-lived', agentClientId: agent.json['id'], expiresAt: expiresAt.toISOString() },
    });
    expect(created.status).toBe(201);
    const secret = String(created.json['secret']);
    const client = new Client({ name: 'approvals-e2e', version: '1.0.0' }, { capabilities: {} });
    await waitFor(
      async () => {
        const res = await fetch(`${gateway.url}/t/${tenant.slug}/mcp`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: '{}',
        });
        return res.status === 400;
      },
      { description: 'the new key accepted' },
    );
    await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/t/${tenant.slug}/mcp`), { requestInit: { headers: { authorization: `Bearer ${secret}` } } }));
    const outcome = client.callTool({ name: 'ks__echo', arguments: { message: 'until the key expires' } }).then(
      () => null,
      (error: unknown) => error,
    );
    const approval = await pendingApproval();
    expect(Date.now()).toBeLessThan(expiresAt.getTime());
    await waitFor(async () => (await row(approval['id'])).status === 'cancelled', { timeoutMs: 15_000, description: 'the approval cancelled at the expiry' });
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt.getTime());
    // Someone other than the key's creator (four eyes), too late.
    const approver = await cp.member(tenant.id, 'admin');
    const late = await cp.request('POST', `${approvalsUrl()}/${String(approval['id'])}/approve`, { token: approver.token, body: { argumentsHash: approval['argumentsHash'] } });
    expect(late.status).toBe(409);
    expect(((await outcome) as McpError | null)?.code).toBe(-32003);
    await client.close().catch(() => undefined);
  });
});
