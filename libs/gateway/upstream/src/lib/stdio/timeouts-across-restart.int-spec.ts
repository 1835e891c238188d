import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamConnector, UpstreamSession } from '@portcullis/gateway/mcp';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { identity, upstreamConfig } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const dir = mkdtempSync(path.join(tmpdir(), 'stdio-timeouts-'));
/** Answers initialize and `pid` at once; never answers `slow` (a tool that runs past the call timeout). */
const server = path.join(dir, 'server.mjs');
const starts = path.join(dir, 'starts');
writeFileSync(
  server,
  `import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
appendFileSync(${JSON.stringify(starts)}, process.pid + '\\n');
setInterval(() => undefined, 60_000);
const send = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, params } = JSON.parse(line);
  if (id === undefined) return;
  if (method === 'initialize') send({ jsonrpc: '2.0', id, result: { protocolVersion: params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'slowish', version: '1.0.0' } } });
  else if (params?.name === 'pid') send({ jsonrpc: '2.0', id, result: { content: [], structuredContent: { pid: process.pid } } });
});
`,
);

const pidOf = async (session: UpstreamSession): Promise<number> =>
  ((await session.request('tools/call', { name: 'pid' }, { timeoutMs: 3_000 }))['structuredContent'] as { pid: number }).pid;
const slowCall = (session: UpstreamSession) => session.request('tools/call', { name: 'slow' }, { timeoutMs: 200 }).catch(() => undefined);

/**
 * A process is killed as hung after UNRESPONSIVE_AFTER (3) calls in a row timed out with no answer in between. A new
 * process starts that count afresh: once the answers to its own start-up messages stopped counting (a server refusing
 * initialize must open its circuit), the previous process's count carried over and a healthy new process was killed on
 * its first timed-out call (found by review).
 */
describe('a freshly started stdio process', () => {
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is not killed as hung on its first timed-out call because of timeouts of the process before it', async () => {
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 2_000, stdioKillGraceMs: 200 });
    connectors.push(connector);
    const session = await connector.connect(upstreamConfig('stdio', { command: process.execPath, args: [server] }), identity);
    await pidOf(session);
    // Two slow tool calls time out on the first process (not three: it is not taken for hung).
    await slowCall(session);
    await slowCall(session);
    // Nothing more for a while: it is stopped as idle.
    await new Promise((resolve) => setTimeout(resolve, 2_700));
    // The next call starts it again (its initialize answered: a new, healthy process), and is a slow one: it times out.
    await session.request('tools/call', { name: 'slow' }, { timeoutMs: 1_000 }).catch(() => undefined);
    const second = Number(readFileSync(starts, 'utf8').trim().split('\n')[1]);
    // One timeout of the new process is not three in a row: it runs on and answers the next call.
    const next = await pidOf(session).catch((error: { reason?: string }) => `failed: ${error.reason ?? String(error)}`);
    expect(next).toBe(second);
  }, 20_000);
});
