/**
 * A listing's deadline (`AbortSignal.timeout(GATEWAY_LIST_TIMEOUT_MS)`, the bound on merging a listing, not the
 * upstream's call timeout) is no timeout of a stdio process: an agent's three listings after initialize, while the
 * process is busy with another session's long call, do not get it taken for hung and killed, that call with it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamConnector, UpstreamSession } from '@portcullis/gateway/mcp';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { identity, recordingLogger, upstreamConfig } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const scripts = mkdtempSync(path.join(tmpdir(), 'pcs-listing-deadline-'));
afterAll(() => rmSync(scripts, { recursive: true, force: true }));

/** A server that handles one message at a time (as a synchronous server does): `busy` holds it for `ms`. */
const serial = path.join(scripts, 'serial.mjs');
writeFileSync(
  serial,
  `import { createInterface } from 'node:readline';
const send = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, method, params } = JSON.parse(line);
  if (id === undefined) return;
  if (method === 'initialize') return send({ jsonrpc: '2.0', id, result: { protocolVersion: params.protocolVersion, capabilities: { tools: {}, prompts: {}, resources: {} }, serverInfo: { name: 'serial', version: '1' } } });
  if (method === 'tools/call') {
    const until = Date.now() + (params.arguments?.ms ?? 0);
    while (Date.now() < until);
    return send({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'done ' + process.pid }] } });
  }
  if (method === 'tools/list') return send({ jsonrpc: '2.0', id, result: { tools: [] } });
  if (method === 'prompts/list') return send({ jsonrpc: '2.0', id, result: { prompts: [] } });
  if (method === 'resources/list') return send({ jsonrpc: '2.0', id, result: { resources: [] } });
  send({ jsonrpc: '2.0', id, result: {} });
});
`,
);

describe('a listing deadline on a stdio upstream', () => {
  const connectors: UpstreamConnector[] = [];
  const sessions: UpstreamSession[] = [];
  afterEach(async () => {
    await Promise.allSettled(sessions.splice(0).map((s) => s.close()));
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });

  it("does not kill a busy process (and another session's call under way) for three listings that outlived the listing deadline", async () => {
    const logger = recordingLogger();
    const connector = createUpstreamConnector({ maxStdioProcessesPerUpstream: 1, stdioIdleMs: 60_000, stdioRestartBackoffMs: { initial: 20, max: 200 }, stdioKillGraceMs: 500, logger });
    connectors.push(connector);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [serial], callTimeoutMs: 10_000 });
    const a = await connector.connect(config, identity);
    const b = await connector.connect(config, identity);
    sessions.push(a, b);
    // Session A's call: 1.5 s of work, well within its 10 s call timeout.
    const long = a.request('tools/call', { name: 'work', arguments: { ms: 1_500 } });
    long.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Session B's agent lists tools, prompts and resources as the engine does: each page within the listing's deadline.
    const listTimeoutMs = 200;
    const pages = ['tools/list', 'prompts/list', 'resources/list'].map((method) => b.request(method, undefined, { signal: AbortSignal.timeout(listTimeoutMs), timeoutMs: listTimeoutMs }));
    await Promise.allSettled(pages);
    // A's call is answered: the process was busy, not hung.
    await expect(long).resolves.toMatchObject({ content: [{ text: expect.stringMatching(/^done /) }] });
    expect(logger.entries.map((entry) => entry.message)).not.toContain('upstream process stopped answering; killing it for a restart');
  });
});
