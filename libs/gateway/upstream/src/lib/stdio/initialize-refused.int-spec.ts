import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { identity, upstreamConfig } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const dir = mkdtempSync(path.join(tmpdir(), 'stdio-refuse-'));
const starts = path.join(dir, 'starts');
/**
 * A stdio server that stays up and answers every initialize with a JSON-RPC error (a misconfigured server: a bad
 * token in its env, a protocol version it refuses). Each start appends its pid to `starts`.
 */
const refusing = path.join(dir, 'refusing.mjs');
writeFileSync(
  refusing,
  `import { appendFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
appendFileSync(${JSON.stringify(starts)}, process.pid + '\\n');
createInterface({ input: process.stdin }).on('line', (line) => {
  const { id } = JSON.parse(line);
  if (id !== undefined) process.stdout.write(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32603, message: 'bad credentials' } }) + '\\n');
});
`,
);

/**
 * A failed start is one failure of the upstream's circuit. An error answer to the process's own initialize used to
 * reset the count (the multiplexer's answer hook) just before the failed start counted one: 0 -> 1 on every start, so
 * the circuit never opened and every connect (an agent's initialize, a join retry) spawned a new process at once
 * (found by review).
 */
describe('a stdio server that refuses initialize', () => {
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is not spawned again for every connect: its circuit opens after as many failed starts as the threshold', async () => {
    const connector = createUpstreamConnector({
      maxStdioProcessesPerUpstream: 1,
      stdioIdleMs: 60_000,
      stdioKillGraceMs: 200,
      breaker: { failureThreshold: 5, cooldownMs: 60_000 },
    });
    connectors.push(connector);
    const config = upstreamConfig('stdio', { command: process.execPath, args: [refusing], connectTimeoutMs: 3_000 });
    const reasons: string[] = [];
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const error = await connector.connect(config, identity).then(
        () => 'connected',
        (e: unknown) => (e as { reason?: string; message?: string }).reason ?? (e as Error).message,
      );
      reasons.push(error);
    }
    const spawned = existsSync(starts) ? readFileSync(starts, 'utf8').trim().split('\n').length : 0;
    const circuit = connector.circuits?.().find((c) => c.upstreamId === config.id)?.state;
    // Five failed starts in a row open the circuit (failureThreshold 5): later connects are refused without a spawn.
    expect({ spawned, circuit }).toEqual({ spawned: 5, circuit: 'open' });
    expect(reasons.slice(0, 5).every((reason) => reason !== 'circuit_open' && reason !== 'connected')).toBe(true);
    expect(reasons.slice(5)).toEqual(Array.from({ length: 7 }, () => 'circuit_open'));
  }, 60_000);
});
