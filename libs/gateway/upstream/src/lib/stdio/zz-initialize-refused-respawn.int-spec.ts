import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { UpstreamConnector } from '@portcullis/gateway/mcp';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { identity, upstreamConfig } from '../../test-fixtures/upstream-test-kit';
import { createUpstreamConnector } from '../upstream-connector';

const dir = mkdtempSync(path.join(tmpdir(), 'zz-stdio-refuse-'));
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
 * Issue #3: stdio restarted with backoff, and a circuit that opens after repeated failures. A failed start whose
 * initialize was answered with an error is stopped by the gateway itself, so its exit is no "crash" (no backoff), and
 * the error answer first resets the breaker (`onAnswer` -> success) before the start counts its one failure: the
 * count goes 0 -> 1 on every start and the circuit never opens. Every connect (an agent initialize, a join retry, a
 * call) spawns a new process at once, without bound.
 */
describe('zz: a stdio server that refuses initialize', () => {
  const connectors: UpstreamConnector[] = [];
  afterEach(async () => {
    await Promise.allSettled(connectors.splice(0).map((c) => c.shutdown()));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is not respawned for every connect: the circuit opens (or a backoff applies) after repeated failed starts', async () => {
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
    const circuit = connector.circuits().find((c) => c.upstreamId === config.id)?.state;
    // Five failed starts in a row open the circuit (failureThreshold 5): later connects are refused without a spawn.
    expect({ spawned, circuit }).toEqual({ spawned: 5, circuit: 'open' });
  }, 60_000);
});
