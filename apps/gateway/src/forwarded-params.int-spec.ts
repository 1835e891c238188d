/**
 * What MCP types strictly in a request's params is checked by the gateway before it forwards anything: `_meta` and its
 * progress token, prompt and completion arguments, the client capabilities it relays, and numbers its JSON parse would
 * change. Before, each reached the upstream as it came: an HTTP upstream refused it (the agent heard "upstream
 * unavailable" or read the upstream's schema dump), the SDK's stdio server dropped it unanswered (the call waited out
 * its timeout, and a few such calls had a shared process killed and its circuit opened for every agent), and a number
 * past 2^53 or past the double range reached the tool as another value. `arguments: null` is absent for the upstream
 * too, as for the policy.
 */
import path from 'node:path';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createTestTenant, testContext, type TestTenant } from '@portcullis/shared/util-testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOW_ALL, writeActiveSnapshot } from './testing/policy-fixtures';
import {
  createAgentWithKey,
  demoDist,
  messageOf,
  startDemoUpstreams,
  startRecordingProxy,
  startTestGateway,
  type DemoUpstreams,
  type RecordingProxy,
  type TestGateway,
} from './testing/gateway-harness';

const ctx = testContext();
let db: SystemPrismaClient;
let demo: DemoUpstreams;
let proxy: RecordingProxy;
let gateway: TestGateway;
let tenant: TestTenant;
let key: string;

beforeAll(async () => {
  db = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  demo = await startDemoUpstreams();
  proxy = await startRecordingProxy(demo.url);
  tenant = await createTestTenant(db);
  await writeActiveSnapshot(db, tenant.id, ALLOW_ALL);
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'ks', toolPrefix: 'ks', transport: 'streamable_http', url: `${proxy.url}/kitchen-sink/mcp`, connectTimeoutMs: 3_000, callTimeoutMs: 8_000 },
  });
  // The column's default call timeout (30 s): an unanswered call would hold the spec far past its bound below.
  await db.upstream.create({
    data: { tenantId: tenant.id, name: 'sx', toolPrefix: 'sx', transport: 'stdio', command: process.execPath, args: [path.join(demoDist, 'stdio.js'), 'kitchen-sink'], connectTimeoutMs: 5_000 },
  });
  ({ key } = await createAgentWithKey(db, tenant.id, 'params-agent'));
  gateway = await startTestGateway({ systemDb: db, redisUrl: ctx.redisUrl });
}, 60_000);

afterAll(async () => {
  await gateway?.close();
  await proxy?.close();
  await demo?.stop();
  await db?.$disconnect();
});

const HEADERS = () => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' });
const post = (body: string, headers: Record<string, string> = HEADERS()) => fetch(`${gateway.url}/t/${tenant.slug}/mcp`, { method: 'POST', headers, body });
const initialize = (capabilities: unknown) =>
  post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities, clientInfo: { name: 'params', version: '1' } } }));

/** A session's headers, its initialize answered. */
async function openSession(): Promise<Record<string, string>> {
  const init = await initialize({});
  expect(init.status).toBe(200);
  await init.text();
  const headers = { ...HEADERS(), 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25' };
  await (await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), headers)).text();
  return headers;
}

/** One request in a session, as text (for numbers JSON.stringify would not write): its answer and what the upstream got. */
async function send(headers: Record<string, string>, body: string): Promise<{ status: number; answer: Record<string, unknown>; forwarded: string[] }> {
  const before = proxy.posted.length;
  const response = await post(body, headers);
  const answer = await messageOf(response);
  const method = (JSON.parse(body) as { method: string }).method;
  return { status: response.status, answer, forwarded: proxy.posted.slice(before).filter((text) => text.includes(`"${method}"`)) };
}
const request = (id: string, method: string, params: Record<string, unknown>) => JSON.stringify({ jsonrpc: '2.0', id, method, params });
const codeOf = (answer: Record<string, unknown>) => (answer['error'] as { code?: number } | undefined)?.code;

// First: the stdio processes are started by this session, which offers sampling (a process keeps the client
// capabilities it was started with, and the test gateway runs one a configuration).
describe("the agent's answer to a stdio upstream's request", () => {
  /** Calls the sampling tool, answers its relayed sampling request with `answer(id)`, and times the call's own answer. */
  async function callAnswering(headers: Record<string, string>, answer: (id: string) => string): Promise<{ ms: number; final: Record<string, unknown> }> {
    const started = Date.now();
    const response = await post(request('call', 'tools/call', { name: 'sx__summarize_with_llm', arguments: { text: 'long text' } }), headers);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`the stream ended without the call's answer: ${response.status} ${buffer}`);
      buffer += decoder.decode(chunk.value);
      const events = buffer.split('\n\n');
      buffer = events.pop() ?? '';
      for (const event of events) {
        const data = /^data: (.*)$/m.exec(event)?.[1];
        if (!data?.startsWith('{')) continue;
        const message = JSON.parse(data) as Record<string, unknown>;
        if (message['method'] === 'sampling/createMessage') await (await post(answer(message['id'] as string), headers)).text();
        else if (message['id'] === 'call') {
          await reader.cancel();
          return { ms: Date.now() - started, final: message };
        }
      }
    }
  }

  it('ends the call at once when the answer cannot be passed on (a malformed _meta, a number the parse changed)', async () => {
    const init = await initialize({ sampling: {} });
    expect(init.status).toBe(200);
    await init.text();
    const headers = { ...HEADERS(), 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25' };
    await (await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), headers)).text();
    const result = (id: string, extra = '') => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{${extra}"role":"assistant","content":{"type":"text","text":"A summary."},"model":"m"}}`;
    // A well-formed answer completes the call.
    const good = await callAnswering(headers, (id) => result(id));
    expect(JSON.stringify(good.final)).toContain('A summary.');
    // The call's timeout is the column's default (30 s): each of these ends it within a few seconds instead.
    const badMeta = await callAnswering(headers, (id) => result(id, '"_meta":{"progressToken":{"not":"a token"}},'));
    expect(badMeta.ms, JSON.stringify(badMeta.final)).toBeLessThan(5_000);
    expect(JSON.stringify(badMeta.final)).not.toContain('A summary.');
    const badNumber = await callAnswering(headers, (id) => result(id, '"_meta":{"n":9007199254740993},'));
    expect(badNumber.ms, JSON.stringify(badNumber.final)).toBeLessThan(5_000);
    expect(JSON.stringify(badNumber.final)).not.toContain('A summary.');
  }, 60_000);
});

describe('params MCP types strictly, malformed', () => {
  let headers: Record<string, string>;
  beforeAll(async () => {
    headers = await openSession();
  });

  it.each([
    ['tools/call, _meta a string', 'tools/call', { name: 'ks__echo', arguments: { message: 'x' }, _meta: 'x' }, '_meta must be an object'],
    ['tools/call, a progress token not an integer', 'tools/call', { name: 'ks__echo', arguments: { message: 'x' }, _meta: { progressToken: 1.5 } }, 'progressToken'],
    ['tools/call, a progress token an object', 'tools/call', { name: 'ks__echo', arguments: { message: 'x' }, _meta: { progressToken: { a: 1 } } }, 'progressToken'],
    ['prompts/get, _meta a string', 'prompts/get', { name: 'ks__greeting', arguments: { name: 'Ada' }, _meta: 'x' }, '_meta must be an object'],
    ['prompts/get, an argument not text', 'prompts/get', { name: 'ks__greeting', arguments: { name: 5 } }, 'arguments must map names to strings'],
    ['completion/complete, context a string', 'completion/complete', { ref: { type: 'ref/prompt', name: 'ks__greeting' }, argument: { name: 'language', value: 'F' }, context: 'x' }, 'context must be an object'],
    ['completion/complete, a context argument not text', 'completion/complete', { ref: { type: 'ref/prompt', name: 'ks__greeting' }, argument: { name: 'language', value: 'F' }, context: { arguments: { name: [] } } }, 'context.arguments'],
    ['completion/complete, no argument', 'completion/complete', { ref: { type: 'ref/prompt', name: 'ks__greeting' } }, 'needs an argument'],
  ])('%s: Invalid params (-32602) from the gateway, nothing forwarded', async (_label, method, params, says) => {
    const { answer, forwarded } = await send(headers, request('bad', method, params));
    expect(answer['id']).toBe('bad');
    expect(codeOf(answer), JSON.stringify(answer)).toBe(-32602);
    expect((answer['error'] as { message: string }).message).toContain(says);
    expect(forwarded).toEqual([]);
  });

  it.each([
    ['tools/call', 'ks__echo'],
    ['prompts/get', 'ks__greeting'],
  ])('%s with arguments: null is forwarded without arguments (absent, as the policy saw it)', async (method, name) => {
    const { answer, forwarded } = await send(headers, request('null', method, { name, arguments: null }));
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]).not.toContain('"arguments"');
    // The upstream answers as to a request without arguments (its own error for a missing one, never its schema dump).
    expect(JSON.stringify(answer)).not.toContain('invalid_type');
  });
});

// MCP 2025-11-25: "Receivers that do not declare the task capability for a request type MUST process requests of that
// type normally, ignoring any task-augmentation metadata if present." The gateway declares it for tools/call at most;
// any other request's `task` went upstream as it came, and the SDK's server failed the request (-32603).
describe('a task augmentation on a request type the gateway does not take it for', () => {
  let headers: Record<string, string>;
  beforeAll(async () => {
    headers = await openSession();
  });

  it.each([
    ['prompts/get', { name: 'ks__greeting', arguments: { name: 'Ada', language: 'french' } }],
    ['completion/complete', { ref: { type: 'ref/prompt', name: 'ks__greeting' }, argument: { name: 'language', value: 'fr' } }],
    ['logging/setLevel', { level: 'info' }],
  ])('%s: ignored, answered as without it, and not forwarded', async (method, params) => {
    const { answer, forwarded } = await send(headers, request('tasked', method, { ...params, task: { ttl: 60_000 } }));
    expect(answer['error'], JSON.stringify(answer)).toBeUndefined();
    expect(answer['result']).toBeDefined();
    expect(forwarded.length).toBeGreaterThan(0);
    for (const text of forwarded) expect(text).not.toContain('"task"');
  });
});

describe('numbers the JSON parse would change', () => {
  let headers: Record<string, string>;
  beforeAll(async () => {
    headers = await openSession();
  });
  const call = (number: string, id = 'n') => `{"jsonrpc":"2.0","id":"${id}","method":"tools/call","params":{"name":"ks__echo","arguments":{"message":"x","account":${number}}}}`;

  it.each([
    ['an integer past 2^53', '9007199254740993', 'cannot be passed on exactly'],
    ['a number past the double range', '1e400', 'past the range'],
    ['a negative one', '-1.5E+999', 'past the range'],
    ['a non-zero number below it', '1e-400', 'too small'],
  ])('%s is refused with 400 and Invalid params (-32602), nothing forwarded', async (_label, number, says) => {
    const { status, answer, forwarded } = await send(headers, call(number));
    expect(status).toBe(400);
    expect(answer['id']).toBe('n');
    expect(codeOf(answer)).toBe(-32602);
    expect((answer['error'] as { message: string }).message).toContain(says);
    expect(forwarded).toEqual([]);
  });

  it('passes numbers the parse keeps, and digits inside strings, as they are', async () => {
    for (const number of ['9007199254740991', '9007199254740992', '1e300', '123.456e-7', '0.000', '0e400']) {
      const { status, forwarded } = await send(headers, call(number, 'ok'));
      expect(status, number).toBe(200);
      expect(forwarded).toHaveLength(1);
      expect(JSON.parse(forwarded[0] as string).params.arguments.account).toBe(Number(number));
    }
    const inString = `{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"ks__echo","arguments":{"message":"card 12345678901234567890, 1e999 \\" 9007199254740993"}}}`;
    const { status, forwarded } = await send(headers, inString);
    expect(status).toBe(200);
    expect(forwarded[0]).toContain('card 12345678901234567890, 1e999 \\" 9007199254740993');
  });
});

describe('numbers the JSON parse would change, in a batch (2025-03-26)', () => {
  it('refuses the element that holds one with its own Invalid params, and handles the others', async () => {
    const init = await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'batch', version: '1' } } }));
    expect(init.status).toBe(200);
    await init.text();
    const headers = { ...HEADERS(), 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-03-26' };
    const response = await post('[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"b","method":"ping","params":{"_meta":{"n":9007199254740993}}},{"jsonrpc":"2.0","id":"c","method":"ping","params":{"x":[1,"2,3",{"y":1e400}]}}]', headers);
    expect(response.status).toBe(200);
    const text = await response.text();
    const answers = (text.startsWith('[') ? JSON.parse(text) : text.split('\n').filter((line) => line.startsWith('data: ')).flatMap((line) => JSON.parse(line.slice(6)) as unknown)) as Record<string, unknown>[];
    const byId = new Map(answers.map((answer) => [answer['id'], answer]));
    expect(byId.get('a')).toMatchObject({ result: {} });
    expect(byId.get('b')).toMatchObject({ error: { code: -32602 } });
    expect(byId.get('c')).toMatchObject({ error: { code: -32602, message: expect.stringContaining('1e400') } });
  });
});

describe('client capabilities the gateway relays to its upstreams', () => {
  it.each([
    ['roots.listChanged a string', { roots: { listChanged: 'yes' } }, 'capabilities.roots.listChanged'],
    ['elicitation.form a number', { elicitation: { form: 5 } }, 'capabilities.elicitation.form'],
    ['sampling not an object', { sampling: true }, 'capabilities.sampling'],
  ])('an initialize whose %s is refused with Invalid params (-32602)', async (_label, capabilities, says) => {
    const init = await initialize(capabilities);
    expect(init.status).toBe(400);
    const answer = await messageOf(init);
    expect(codeOf(answer)).toBe(-32602);
    expect((answer['error'] as { message: string }).message).toContain(says);
  });

  it('well-formed ones open a session with the tenant\'s upstreams', async () => {
    // `sampling.context` of any shape: never relayed (and a 2025-06-18 client may send one the newer schema refuses).
    const init = await initialize({ roots: { listChanged: true }, elicitation: {}, sampling: { tools: {}, context: true } });
    expect(init.status).toBe(200);
    await init.text();
    const headers = { ...HEADERS(), 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25' };
    const listed = await messageOf(await post(request('l', 'tools/list', {}), headers));
    const names = ((listed['result'] as { tools: { name: string }[] }).tools ?? []).map((tool) => tool.name);
    expect(names).toContain('ks__echo');
  });
});

describe('a stdio upstream', () => {
  it('answers a call whose _meta is malformed at once with Invalid params, and serves the next call', async () => {
    const headers = await openSession();
    const started = Date.now();
    const { answer } = await send(headers, request('m', 'tools/call', { name: 'sx__echo', arguments: { message: 'x' }, _meta: 'x' }));
    expect(codeOf(answer)).toBe(-32602);
    expect(Date.now() - started).toBeLessThan(5_000);
    const next = await send(headers, request('ok', 'tools/call', { name: 'sx__echo', arguments: { message: 'hi' } }));
    expect(JSON.stringify(next.answer['result'])).toContain('hi');
  }, 30_000);
});
