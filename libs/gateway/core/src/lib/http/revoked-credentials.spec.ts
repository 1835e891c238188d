/**
 * Streams of a credential that is gone (a key revoked or expired, its tenant suspended): none opens, none goes on, and
 * POSTs under way end with a credential_no_longer_valid error for each request still to be answered (a batch as a
 * batch, its invalid elements' errors kept, a request the agent cancelled left unanswered), whether or not their
 * answer streamed yet; their calls' later messages reach the agent nowhere.
 * - A GET authenticated just before a revocation, still looking its session up when the reload's revalidation ran,
 *   was not among the streams closed, and nothing looked at its credential again until the next reload: it is checked
 *   again right before the stream opens.
 * - Once `revalidateStreams` ends the SSE stream a POST turned into, nothing more of its call reaches the agent: a
 *   server request its upstream makes afterwards is refused, not sent to the session's standalone stream (open under
 *   another key of the same agent client).
 * - A POST's stream whose key expires ends at the expiry, as standalone and legacy streams do, not at the next reload
 *   (never, while the database is out of reach).
 */
import type { Principal } from '@portcullis/gateway/mcp';
import { createLogger } from '@portcullis/shared/util-logger';
import { waitFor } from '@portcullis/shared/util-testing';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthOutcome, Authenticator } from '../auth/authenticator';
import { SessionEngine } from '../dispatch/session-engine';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { FakeConnector, fakeConfig, MemorySessionStore, SPEC_ENGINE_OPTIONS } from '../testing/fake-upstreams';
import { registerMcpRoutes } from './mcp-routes';

const logger = createLogger({ service: 'spec', level: 'silent' });
const apps: FastifyInstance[] = [];
const engines: SessionEngine[] = [];
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(apps.splice(0).map((app) => app.close()));
  await Promise.all(engines.splice(0).map((engine) => engine.shutdown()));
});

const principal: Principal = { tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId: 'k1' };

/** An API-key-like authenticator (answers at once) whose one key can be revoked. */
class RevocableKey implements Authenticator {
  revoked = false;
  /** Revoked right after the next admission: the reload lands while the request's body is still on its way. */
  revokeOnAdmission = false;
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (this.revoked || authorization !== 'Bearer good') return { ok: false, reason: 'unauthenticated' };
    if (this.revokeOnAdmission) this.revoked = true;
    return { ok: true, principal, credentialId: 'k1' };
  }
  stillValid(): boolean {
    return !this.revoked;
  }
}


type Handle = ConstructorParameters<typeof FakeConnector>[0][string]['handle'];

/**
 * The routes over an engine with one upstream (`docs`, answering with `handle`), listening on 127.0.0.1, closed after
 * the test. `initialize` opens a session with `key` and answers its id.
 */
async function gateway(authenticator: Authenticator, handle: Handle, capabilities: Record<string, unknown> = { tools: {} }) {
  const registry = new UpstreamRegistry('__');
  registry.replace([fakeConfig('u1', 'docs')], () => undefined);
  const connector = new FakeConnector({ u1: { capabilities, handle } });
  const engine = new SessionEngine({ registry, connector, sessions: new MemorySessionStore(), logger, options: { ...SPEC_ENGINE_OPTIONS, listTimeoutMs: 1_000 } });
  engines.push(engine);
  const app = Fastify();
  apps.push(app);
  const routes = await registerMcpRoutes(app, { authenticator, engine, logger, origin: { allowedHosts: new Set(), allowedOrigins: new Set() }, bodyLimitBytes: 64 * 1024, keepAliveMs: 15_000 });
  closers.push(() => routes.closeStreams());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/t/acme/mcp`;
  const headers = (key: string) => ({ authorization: `Bearer ${key}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json' });
  let protocolVersion = '';
  let sessionId = '';
  return {
    url,
    engine,
    routes,
    headers,
    async initialize(key: string, version: string, capabilities: Record<string, unknown> = {}): Promise<string> {
      const init = await fetch(url, {
        method: 'POST',
        headers: headers(key),
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: version, capabilities, clientInfo: { name: 'spec', version: '1' } } }),
      });
      expect(init.status).toBe(200);
      await init.text();
      protocolVersion = version;
      sessionId = init.headers.get('mcp-session-id') ?? '';
      return sessionId;
    },
    /** Headers of a request in the session `initialize` opened. */
    inSession: (key: string) => ({ ...headers(key), 'mcp-session-id': sessionId, 'mcp-protocol-version': protocolVersion }),
  };
}

/** A legacy HTTP+SSE session opened with the good key beside `url`'s endpoint: its stream and its messages URL. */
async function openLegacy(url: string, signal: AbortSignal): Promise<{ endpoint: URL; stream: ReturnType<typeof collect> }> {
  const sse = await fetch(url.replace(/\/mcp$/, '/sse'), { headers: { authorization: 'Bearer good', accept: 'text/event-stream' }, signal });
  const stream = collect(sse);
  await waitFor(() => stream.text().includes('sessionId='), { timeoutMs: 2_000, description: 'the endpoint event' });
  return { endpoint: new URL(/data: (.+)\n/.exec(stream.text())?.[1] ?? '', url), stream };
}

/** Reads a response's body as it comes: `text()` so far, `done` once it ends. */
function collect(response: Response): { text: () => string; done: Promise<void> } {
  let text = '';
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const done = (async () => {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value, { stream: true });
  })().catch(() => undefined);
  return { text: () => text, done };
}

describe('a key revoked while its standalone GET is being opened', () => {
  it('does not leave the revoked key with an open stream', async () => {
    const authenticator = new RevocableKey();
    const { url, engine, routes, initialize, inSession } = await gateway(authenticator, async () => ({ tools: [] }));
    await initialize('good', '2025-06-18');

    // The session lookup of the GET takes a Redis round trip; the revocation's reload lands during it.
    let lookups = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const lookup = engine.session.bind(engine);
    engine.session = async (id, who) => {
      lookups += 1;
      await held;
      return lookup(id, who);
    };
    const controller = new AbortController();
    const opening = fetch(url, { headers: { ...inSession('good'), accept: 'text/event-stream' }, signal: controller.signal });
    await waitFor(() => lookups === 1, { timeoutMs: 2_000, description: 'the GET is looking its session up' });
    authenticator.revoked = true;
    expect(routes.revalidateStreams()).toBe(0); // the reload that followed the revocation: nothing open yet
    release();
    const stream = await opening;
    // Refused (401), or opened and ended at once: either way the revoked key holds no stream.
    if (stream.status === 200) {
      const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
      const ended = (async () => {
        for (;;) if ((await reader.read()).done) return 'ended';
      })().catch(() => 'ended');
      const outcome = await Promise.race([ended, new Promise((resolve) => setTimeout(() => resolve('still open'), 1_000))]);
      controller.abort();
      expect(outcome).toBe('ended');
    } else {
      expect(stream.status).toBe(401);
    }
    expect(routes.openStreams).toBe(0);
  });
});

const who = (credentialId: string): Principal => ({ tenantId: 't1', kind: 'agent_client', id: 'a1', credentialId });

/** Two keys of one agent client (a rotation): `old` can be revoked. */
class TwoKeys implements Authenticator {
  revoked = false;
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (authorization === 'Bearer old' && !this.revoked) return { ok: true, principal: who('old'), credentialId: 'old' };
    if (authorization === 'Bearer new') return { ok: true, principal: who('new'), credentialId: 'new' };
    return { ok: false, reason: 'unauthenticated' };
  }
  stillValid(credentialId: string): boolean {
    return credentialId === 'new' || !this.revoked;
  }
}

describe('a POST stream ended for a revoked key', () => {
  it("relays none of its call's later server requests to the agent (not on the standalone stream either)", async () => {
    let go: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (go = resolve));
    const asked: string[] = [];
    const authenticator = new TwoKeys();
    const { url, routes, initialize, inSession } = await gateway(authenticator, async (method, params, options) => {
      if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
      if (method !== 'tools/call') return {};
      const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
      options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1, message: 'working' } });
      await gate;
      const answer = options?.onServerRequest?.(
        { jsonrpc: '2.0', id: 'e1', method: 'elicitation/create', params: { message: 'Approve the transfer?', requestedSchema: { type: 'object', properties: {} } } },
        new AbortController().signal,
      );
      await answer?.then(
        () => asked.push('answered'),
        (error: unknown) => asked.push(`refused: ${String((error as Error).message)}`),
      );
      return { content: [{ type: 'text', text: 'done' }] };
    });
    await initialize('new', '2025-06-18', { elicitation: {} });

    // The agent's standalone stream, opened with its new key.
    const controller = new AbortController();
    const get = await fetch(url, { headers: { ...inSession('new'), accept: 'text/event-stream' }, signal: controller.signal });
    expect(get.status).toBe(200);
    const standalone = collect(get);

    // A slow call made with the old key: it streams its progress.
    const post = await fetch(url, {
      method: 'POST',
      headers: inSession('old'),
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {}, _meta: { progressToken: 'p1' } } }),
    });
    expect(post.headers.get('content-type')).toContain('text/event-stream');
    const posted = collect(post);
    await waitFor(() => posted.text().includes('working'), { timeoutMs: 2_000, description: 'progress streamed' });

    // The old key is revoked: its POST stream ends with the error.
    authenticator.revoked = true;
    routes.revalidateStreams();
    await posted.done;
    expect(posted.text()).toContain('credential_no_longer_valid');

    // The call goes on upstream and asks the agent something: it must not reach the agent any more.
    go();
    await waitFor(() => asked.length > 0, { timeoutMs: 2_000, description: 'the upstream told what became of its question' });
    controller.abort();
    expect(standalone.text()).not.toContain('elicitation/create');
    // Refused to the upstream at once, not left to wait for an agent that will never see it.
    expect(asked).toEqual([expect.stringMatching(/^refused/)]);
  });
});

/** An API key that expires at `expiresAt` (as ApiKeyAuthenticator: refused from then on, no reload needed). */
class ExpiringKey implements Authenticator {
  constructor(readonly at: number) {}
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (authorization !== 'Bearer good' || Date.now() >= this.at) return { ok: false, reason: 'unauthenticated' };
    return { ok: true, principal, credentialId: 'k1' };
  }
  stillValid(): boolean {
    return Date.now() < this.at;
  }
  expiresAt(): number {
    return this.at;
  }
}

describe('a POST stream whose key expires mid-call (no reload meanwhile)', () => {
  it('ends at the expiry with credential_no_longer_valid, as the standalone stream does, relaying no more progress', async () => {
    const authenticator = new ExpiringKey(Date.now() + 1_000);
    const { url, initialize, inSession } = await gateway(authenticator, async (method, params, options) => {
      if (method === 'tools/list') return { tools: [{ name: 'tick', inputSchema: { type: 'object' } }] };
      if (method !== 'tools/call') return {};
      const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
      for (let n = 1; n <= 25; n++) {
        options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: n, message: `tick-${n}` } });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return { content: [{ type: 'text', text: 'ticked' }] };
    });
    await initialize('good', '2025-06-18');
    const post = await fetch(url, {
      method: 'POST',
      headers: inSession('good'),
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__tick', arguments: {}, _meta: { progressToken: 'p1' } } }),
    });
    expect(post.headers.get('content-type')).toContain('text/event-stream');
    let text = '';
    const afterExpiry: string[] = [];
    const reader = (post.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const reading = (async () => {
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        const part = decoder.decode(chunk.value, { stream: true });
        text += part;
        if (Date.now() > authenticator.at + 500) afterExpiry.push(...(part.match(/tick-\d+/g) ?? []));
      }
    })();
    await waitFor(() => text.includes('tick-1'), { timeoutMs: 2_000, description: 'progress streamed' });
    await reading;
    expect(afterExpiry).toEqual([]);
    expect(text).toContain('credential_no_longer_valid');
  }, 10_000);
});

describe('a POST of a key revoked before its answer streamed', () => {
  it("relays none of its call's later progress or server requests to the revoked key", async () => {
    let go: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (go = resolve));
    let calls = 0;
    const asked: string[] = [];
    const authenticator = new RevocableKey();
    const { url, routes, initialize, inSession } = await gateway(authenticator, async (method, params, options) => {
      if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
      if (method !== 'tools/call') return {};
      calls += 1;
      await gate;
      const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
      options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1, message: 'working-after-revocation' } });
      const answer = options?.onServerRequest?.(
        { jsonrpc: '2.0', id: 'e1', method: 'elicitation/create', params: { message: 'Approve the transfer?', requestedSchema: { type: 'object', properties: {} } } },
        new AbortController().signal,
      );
      await Promise.race([
        answer?.then(
          () => asked.push('answered'),
          (error: unknown) => asked.push(`refused: ${String((error as Error).message)}`),
        ),
        new Promise((resolve) => setTimeout(resolve, 500)),
      ]);
      return { content: [{ type: 'text', text: 'done' }] };
    });
    await initialize('good', '2025-06-18', { elicitation: {} });

    const posting = fetch(url, {
      method: 'POST',
      headers: inSession('good'),
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {}, _meta: { progressToken: 'p1' } } }),
    });
    await waitFor(() => calls === 1, { timeoutMs: 2_000, description: 'the call is upstream' });
    // The key is revoked; the reload's revalidation runs while the POST has sent nothing yet.
    authenticator.revoked = true;
    routes.revalidateStreams();
    go();
    const post = await posting;
    const body = await post.text();
    // Nothing of the call after the revocation reaches the revoked key's agent.
    expect(body).not.toContain('working-after-revocation');
    expect(body).not.toContain('elicitation/create');
    expect(body).toContain('credential_no_longer_valid');
    await waitFor(() => asked.length > 0, { timeoutMs: 2_000, description: 'the upstream told what became of its question' });
    expect(asked).toEqual([expect.stringMatching(/^refused/)]);
  });
});

/** Two keys of one agent client: `old` expires at `at`, `new` does not. */
/** Key `old` expires at `at`; `expireIn` sets it from now, so that a slow set-up under load does not eat the window. */
class OldExpires implements Authenticator {
  constructor(public at: number) {}
  expireIn(ms: number): void {
    this.at = Date.now() + ms;
  }
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (authorization === 'Bearer old' && Date.now() < this.at) return { ok: true, principal: who('old'), credentialId: 'old' };
    if (authorization === 'Bearer new') return { ok: true, principal: who('new'), credentialId: 'new' };
    return { ok: false, reason: 'unauthenticated' };
  }
  stillValid(credentialId: string): boolean {
    return credentialId === 'new' || Date.now() < this.at;
  }
  expiresAt(credentialId: string): number | null {
    return credentialId === 'old' ? this.at : null;
  }
}

/** An upstream whose one tool `slow` answers 300 ms after the old key's expiry. */
const slowPastExpiry =
  (authenticator: OldExpires, called: () => void): Handle =>
  async (method) => {
    if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
    if (method !== 'tools/call') return {};
    called();
    while (Date.now() < authenticator.at + 1_500) await new Promise((resolve) => setTimeout(resolve, 50));
    return { content: [{ type: 'text', text: 'done' }] };
  };

describe('a batch POST withdrawn at its key expiry', () => {
  it("still answers the batch's invalid element (its id known) with its Invalid Request error", async () => {
    let calls = 0;
    const authenticator = new OldExpires(Date.now() + 3_000);
    const { url, initialize, inSession } = await gateway(authenticator, slowPastExpiry(authenticator, () => (calls += 1)));
    authenticator.expireIn(3_000);
    await initialize('old', '2025-03-26');
    const post = await fetch(url, {
      method: 'POST',
      headers: inSession('old'),
      body: JSON.stringify([
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } },
        { jsonrpc: '2.0', id: 9, method: 'tools/call', params: ['not', 'an', 'object'] },
      ]),
    });
    expect(calls).toBe(1);
    const text = await post.text();
    expect(text).toContain('credential_no_longer_valid');
    const answered = JSON.parse(text) as { id: unknown; error?: { code: number } }[];
    // A batch is answered with an array (JSON-RPC 2.0 §6), withdrawn or not.
    expect(Array.isArray(answered)).toBe(true);
    expect(answered.find((answer) => answer.id === 2)?.error).toMatchObject({ data: { reason: 'credential_no_longer_valid' } });
    // The invalid element's own error is part of the batch's answer, withdrawn or not.
    expect(answered.find((answer) => answer.id === 9)?.error?.code).toBe(-32600);
  }, 15_000);
});

/**
 * `OldExpires` whose first check of a woken expiry timer still finds the key valid, as when the timer wakes a moment
 * before the clock reaches the expiry and the clock then moves on before the timer is armed again.
 */
class WokenEarly extends OldExpires {
  private lied = false;
  override stillValid(credentialId: string): boolean {
    if (credentialId === 'old' && !this.lied && Date.now() >= this.at - 5) {
      this.lied = true;
      // The clock moves past the expiry before the timer is armed again.
      while (Date.now() <= this.at) {
        // wait a moment
      }
      return true;
    }
    return super.stillValid(credentialId);
  }
}

describe('a POST whose key expires while its expiry timer wakes a moment early (a flake in CI)', () => {
  it('is still withdrawn at the expiry, not left to run on', async () => {
    const authenticator = new WokenEarly(Date.now() + 3_000);
    let calls = 0;
    const { url, initialize, inSession } = await gateway(authenticator, slowPastExpiry(authenticator, () => (calls += 1)));
    authenticator.expireIn(1_000);
    await initialize('old', '2025-06-18');
    const post = await fetch(url, { method: 'POST', headers: inSession('old'), body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } }) });
    const text = await post.text();
    expect(calls).toBe(1);
    expect(text).toContain('credential_no_longer_valid');
  }, 15_000);
});

describe('a batch POST withdrawn at its key expiry, one of its requests cancelled by the agent', () => {
  it('sends no response for the cancelled request (as the batch itself would not)', async () => {
    let calls = 0;
    const authenticator = new OldExpires(Date.now() + 3_000);
    const { url, initialize, inSession } = await gateway(authenticator, slowPastExpiry(authenticator, () => (calls += 1)));
    authenticator.expireIn(3_000);
    await initialize('old', '2025-03-26');
    const posting = fetch(url, {
      method: 'POST',
      headers: inSession('old'),
      body: JSON.stringify([
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } },
        { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } },
      ]),
    });
    await waitFor(() => calls === 2, { timeoutMs: 2_000, description: 'both calls upstream' });
    const cancel = await fetch(url, { method: 'POST', headers: inSession('old'), body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 3 } }) });
    expect(cancel.status).toBe(202);
    const text = await (await posting).text();
    expect(text).toContain('credential_no_longer_valid');
    const answered = JSON.parse(text) as { id: unknown }[] | { id: unknown };
    const ids = (Array.isArray(answered) ? answered : [answered]).map((answer) => answer.id);
    expect(ids).not.toContain(3);
  }, 15_000);
});

describe('a batch POST withdrawn at its key expiry', () => {
  it("relays none of its calls' later server requests to the session's standalone stream", async () => {
    let calls = 0;
    const authenticator = new OldExpires(Date.now() + 3_000);
    const { url, initialize, inSession } = await gateway(authenticator, async (method, _params, options) => {
      if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
      if (method !== 'tools/call') return {};
      calls += 1;
      // Waits past the old key's expiry, then asks the agent something.
      while (Date.now() < authenticator.at + 1_500) await new Promise((resolve) => setTimeout(resolve, 50));
      const answer = options?.onServerRequest?.(
        { jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: 'secret-question' } }], maxTokens: 10 } },
        new AbortController().signal,
      );
      await Promise.race([answer?.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 500))]);
      return { content: [{ type: 'text', text: 'done' }] };
    });
    await initialize('new', '2025-03-26', { sampling: {} });

    const controller = new AbortController();
    const get = await fetch(url, { headers: { ...inSession('new'), accept: 'text/event-stream' }, signal: controller.signal });
    expect(get.status).toBe(200);
    const standalone = collect(get);

    authenticator.expireIn(3_000);
    const posting = fetch(url, {
      method: 'POST',
      headers: inSession('old'),
      body: JSON.stringify([
        { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } },
        { jsonrpc: '2.0', id: 3, method: 'ping' },
      ]),
    });
    await waitFor(() => calls === 1, { timeoutMs: 2_000, description: 'the call is upstream' });
    const post = await posting;
    const answered = await post.text();
    // Withdrawn at the expiry: errors in place of the batch's answers.
    expect(answered).toContain('credential_no_longer_valid');
    await waitFor(() => standalone.text().includes('secret-question') || Date.now() > authenticator.at + 1_500, { timeoutMs: 5_000, description: 'the question came, or not' });
    controller.abort();
    expect(standalone.text()).not.toContain('sampling/createMessage');
  }, 15_000);
});

describe('a POST whose key is revoked after its headers were admitted, while its body came', () => {
  it('runs nothing, on /mcp and on legacy /messages (refused 401)', async () => {
    let calls = 0;
    const authenticator = new RevocableKey();
    const { url, initialize, inSession } = await gateway(authenticator, async (method) => {
      if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
      if (method === 'tools/call') calls += 1;
      return { content: [] };
    });
    await initialize('good', '2025-06-18');
    const call = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__run', arguments: {} } });
    const controller = new AbortController();
    const { endpoint } = await openLegacy(url, controller.signal);

    authenticator.revokeOnAdmission = true;
    const onMcp = await fetch(url, { method: 'POST', headers: inSession('good'), body: call });
    expect(onMcp.status).toBe(401);
    authenticator.revoked = false;
    const onLegacy = await fetch(endpoint, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: call });
    expect(onLegacy.status).toBe(401);
    controller.abort();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(0);
  });
});

describe('a legacy /messages POST whose key is revoked while its session is looked up (after the 202)', () => {
  it('runs nothing upstream, as /mcp re-checks after its session lookup', async () => {
    let calls = 0;
    const authenticator = new RevocableKey();
    const { url, engine, routes } = await gateway(authenticator, async (method) => {
      if (method === 'tools/list') return { tools: [{ name: 'run', inputSchema: { type: 'object' } }] };
      if (method === 'tools/call') calls += 1;
      return { content: [] };
    });
    const controller = new AbortController();
    const { endpoint, stream } = await openLegacy(url, controller.signal);
    const post = (body: unknown) => fetch(endpoint, { method: 'POST', headers: { authorization: 'Bearer good', 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'spec', version: '1' } } })).status).toBe(202);
    await waitFor(() => stream.text().includes('"id":1'), { timeoutMs: 2_000, description: 'the initialize answer' });
    await post({ jsonrpc: '2.0', method: 'notifications/initialized' });

    // The per-message session lookup (a Redis round trip); the revocation's reload lands during it.
    let lookups = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const lookup = engine.session.bind(engine);
    engine.session = async (id, who) => {
      lookups += 1;
      await held;
      return lookup(id, who);
    };
    expect((await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__run', arguments: {} } })).status).toBe(202);
    await waitFor(() => lookups === 1, { timeoutMs: 2_000, description: 'the POST is looking its session up' });
    authenticator.revoked = true;
    routes.revalidateStreams();
    release();
    await new Promise((resolve) => setTimeout(resolve, 300));
    controller.abort();
    expect(calls).toBe(0);
  });
});

/** Two keys of one agent client: `stream` opens a legacy session's stream, `post` (revocable) posts to it. */
class StreamAndPostKeys implements Authenticator {
  revoked = false;
  authenticate(authorization: string | string[] | undefined): AuthOutcome {
    if (authorization === 'Bearer stream') return { ok: true, principal: who('stream'), credentialId: 'stream' };
    if (authorization === 'Bearer post' && !this.revoked) return { ok: true, principal: who('post'), credentialId: 'post' };
    return { ok: false, reason: 'unauthenticated' };
  }
  stillValid(credentialId: string): boolean {
    return credentialId === 'stream' || !this.revoked;
  }
}

/** A legacy session opened with `streamKey`, initialised: its stream and a POST to its messages URL with a key. */
async function legacySession(url: string, streamKey: string, signal: AbortSignal, capabilities: Record<string, unknown> = {}, protocolVersion = '2024-11-05') {
  const sse = await fetch(url.replace(/\/mcp$/, '/sse'), { headers: { authorization: `Bearer ${streamKey}`, accept: 'text/event-stream' }, signal });
  const stream = collect(sse);
  await waitFor(() => stream.text().includes('sessionId='), { timeoutMs: 2_000, description: 'the endpoint event' });
  const endpoint = new URL(/data: (.+)\n/.exec(stream.text())?.[1] ?? '', url);
  const post = (key: string, body: unknown) => fetch(endpoint, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect((await post(streamKey, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion, capabilities, clientInfo: { name: 'spec', version: '1' } } })).status).toBe(202);
  await waitFor(() => stream.text().includes('"id":1'), { timeoutMs: 2_000, description: 'the initialize answer' });
  await post(streamKey, { jsonrpc: '2.0', method: 'notifications/initialized' });
  return { stream, post };
}

type HandleOptions = Parameters<Handle>[2];

/**
 * A question (`request`) an upstream handler asks the agent once let through (`go`): `ask` waits for that, asks, and
 * notes what became of it in `asked` ('answered', 'refused'; nothing if no answer came within 500 ms).
 */
function heldQuestion(request: Parameters<NonNullable<NonNullable<HandleOptions>['onServerRequest']>>[0]) {
  let go: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (go = resolve));
  const asked: string[] = [];
  let started = false;
  return {
    asked,
    get started() {
      return started;
    },
    go: () => go(),
    async ask(options: HandleOptions) {
      started = true;
      await gate;
      const answer = options?.onServerRequest?.(request, new AbortController().signal);
      await Promise.race([answer?.then(() => asked.push('answered'), () => asked.push('refused')), new Promise((resolve) => setTimeout(resolve, 500))]);
    },
  };
}

/** Once the held request is upstream, revokes the POST's key, waits for its withdrawal, then lets the upstream ask. */
async function withdrawnWhileHeld(
  authenticator: StreamAndPostKeys,
  routes: { revalidateStreams(): void },
  stream: { text: () => string },
  question: ReturnType<typeof heldQuestion>,
): Promise<void> {
  await waitFor(() => question.started, { timeoutMs: 2_000, description: 'the request is upstream' });
  authenticator.revoked = true;
  routes.revalidateStreams();
  await waitFor(() => stream.text().includes('credential_no_longer_valid'), { timeoutMs: 2_000, description: 'the withdrawal' });
  question.go();
  await waitFor(() => question.asked.length > 0, { timeoutMs: 2_000, description: 'the upstream told what became of its question' });
}

// A legacy session's requests are answered on its stream, which may be another key's of the same agent client. Before,
// a /messages POST was not among the POSTs a credential's going withdraws: a call posted with a key revoked (or
// expired) while it ran still sent its progress, its upstream's questions and its result to the stream.
describe('a legacy /messages POST of another key than its stream\'s, revoked while its call runs', () => {
  it('is answered credential_no_longer_valid, and nothing more of its call reaches the stream', async () => {
    let go: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (go = resolve));
    let calls = 0;
    const asked: string[] = [];
    const authenticator = new StreamAndPostKeys();
    const { url, routes } = await gateway(authenticator, async (method, params, options) => {
      if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
      if (method !== 'tools/call') return {};
      calls += 1;
      await gate;
      const token = (params?.['_meta'] as Record<string, unknown> | undefined)?.['progressToken'];
      options?.onNotification?.({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: 1, message: 'working-after-revocation' } });
      const answer = options?.onServerRequest?.({ jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } }, new AbortController().signal);
      await Promise.race([
        answer?.then(
          () => asked.push('answered'),
          (error: unknown) => asked.push(`refused: ${String((error as Error).message)}`),
        ),
        new Promise((resolve) => setTimeout(resolve, 500)),
      ]);
      return { content: [{ type: 'text', text: 'SECRET-RESULT' }] };
    });
    const controller = new AbortController();
    const { stream, post } = await legacySession(url, 'stream', controller.signal, { sampling: {} });

    expect((await post('post', { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {}, _meta: { progressToken: 'p1' } } })).status).toBe(202);
    await waitFor(() => calls === 1, { timeoutMs: 2_000, description: 'the call is upstream' });
    authenticator.revoked = true;
    routes.revalidateStreams();
    await waitFor(() => stream.text().includes('credential_no_longer_valid'), { timeoutMs: 2_000, description: 'the withdrawal' });
    go();
    await waitFor(() => asked.length > 0, { timeoutMs: 2_000, description: 'the upstream told what became of its question' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    controller.abort();
    const text = stream.text();
    expect(text).not.toContain('working-after-revocation');
    expect(text).not.toContain('sampling/createMessage');
    expect(text).not.toContain('SECRET-RESULT');
    expect(asked).toEqual([expect.stringMatching(/^refused/)]);
    // The stream's own key is fine: the session goes on.
    expect(text.match(/"id":2/g)).toHaveLength(1);
  });

  // Before, a batch's requests ran with no sink the withdrawal reached: their upstreams' questions went on the stream.
  it('lets no upstream question of a batch\'s call reach the stream once the batch is withdrawn', async () => {
    const question = heldQuestion({ jsonrpc: '2.0', id: 's1', method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } });
    const authenticator = new StreamAndPostKeys();
    const { url, routes } = await gateway(authenticator, async (method, _params, options) => {
      if (method === 'tools/list') return { tools: [{ name: 'slow', inputSchema: { type: 'object' } }] };
      if (method !== 'tools/call') return {};
      await question.ask(options);
      return { content: [{ type: 'text', text: 'SECRET-RESULT' }] };
    });
    const controller = new AbortController();
    const { stream, post } = await legacySession(url, 'stream', controller.signal, { sampling: {} }, '2025-03-26');
    expect((await post('post', [{ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } }])).status).toBe(202);
    await withdrawnWhileHeld(authenticator, routes, stream, question);
    controller.abort();
    expect({ asked: question.asked, relayed: stream.text().includes('sampling/createMessage'), result: stream.text().includes('SECRET-RESULT') }).toEqual({ asked: ['refused'], relayed: false, result: false });
  });

  // A listing's question goes on the listing's own stream (MCP: related to the request), and to no one once withdrawn.
  // Before, it went on the session's stream, another key's, whatever became of the listing.
  it('lets no upstream question of a listing reach the stream once the listing is withdrawn', async () => {
    const question = heldQuestion({ jsonrpc: '2.0', id: 'r1', method: 'roots/list' });
    const authenticator = new StreamAndPostKeys();
    const { url, routes } = await gateway(
      authenticator,
      async (method, _params, options) => {
        if (method !== 'resources/list') return {};
        await question.ask(options);
        return { resources: [{ uri: 'file:///SECRET-LISTING', name: 'x' }] };
      },
      { resources: {} },
    );
    const controller = new AbortController();
    const { stream, post } = await legacySession(url, 'stream', controller.signal, { roots: { listChanged: true } });
    expect((await post('post', { jsonrpc: '2.0', id: 2, method: 'resources/list' })).status).toBe(202);
    await withdrawnWhileHeld(authenticator, routes, stream, question);
    controller.abort();
    expect({ asked: question.asked, relayed: stream.text().includes('roots/list'), listed: stream.text().includes('SECRET-LISTING') }).toEqual({ asked: ['refused'], relayed: false, listed: false });
  });

  it('is withdrawn at its key\'s expiry without a reload, a batch as a batch', async () => {
    let calls = 0;
    const authenticator = new OldExpires(Date.now() + 3_000);
    const { url } = await gateway(authenticator, slowPastExpiry(authenticator, () => (calls += 1)));
    const controller = new AbortController();
    // Batches are 2025-03-26's.
    const { stream, post } = await legacySession(url, 'new', controller.signal, {}, '2025-03-26');
    authenticator.expireIn(3_000);
    expect(
      (
        await post('old', [
          { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'docs__slow', arguments: {} } },
          { jsonrpc: '2.0', id: 3, method: 'tools/call', params: ['not', 'an', 'object'] },
        ])
      ).status,
    ).toBe(202);
    await waitFor(() => calls === 1, { timeoutMs: 2_000, description: 'the call is upstream' });
    await waitFor(() => stream.text().includes('credential_no_longer_valid'), { timeoutMs: 5_000, description: 'the withdrawal at the expiry' });
    await new Promise((resolve) => setTimeout(resolve, 600));
    controller.abort();
    const batch = /data: (\[.*\])\n/.exec(stream.text())?.[1];
    expect(JSON.parse(batch ?? '[]')).toEqual([
      expect.objectContaining({ id: 3, error: expect.objectContaining({ code: -32600 }) }),
      expect.objectContaining({ id: 2, error: expect.objectContaining({ data: { reason: 'credential_no_longer_valid' } }) }),
    ]);
    expect(stream.text()).not.toContain('"text":"done"');
  });
});
