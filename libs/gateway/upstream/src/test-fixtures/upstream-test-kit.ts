import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClientIdentity, UpstreamConfig, UpstreamTransport } from '@portcullis/gateway/mcp';
import type { UpstreamLogger } from '../lib/core/logger';

/** Test helpers for the connector's integration specs (not exported from the lib). */

export const identity: ClientIdentity = {
  clientInfo: { name: 'portcullis-int-test', version: '0.0.0' },
  capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } },
  protocolVersion: '2025-11-25',
};

let counter = 0;
export function upstreamConfig(
  transport: UpstreamTransport,
  overrides: Partial<UpstreamConfig> = {},
): UpstreamConfig {
  counter += 1;
  return {
    id: `upstream-${counter}`,
    tenantId: 'tenant-test',
    name: `test-${counter}`,
    toolPrefix: 'test',
    transport,
    url: null,
    headers: {},
    command: null,
    args: [],
    env: {},
    connectTimeoutMs: 5_000,
    callTimeoutMs: 10_000,
    version: 1,
    ...overrides,
  };
}

export interface RecordingLogger extends UpstreamLogger {
  readonly entries: { level: string; fields: Record<string, unknown>; message: string }[];
}

export function recordingLogger(): RecordingLogger {
  const entries: RecordingLogger['entries'] = [];
  const at = (level: string) => (fields: Record<string, unknown>, message: string) =>
    void entries.push({ level, fields, message });
  return { entries, warn: at('warn'), info: at('info'), debug: at('debug') };
}

export async function waitFor<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error('waitFor timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface RawServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** A bare HTTP server for behaviour the demo servers do not have (hanging, bad endpoints, header checks). */
export async function rawServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<RawServer> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on. */
export async function deadPort(): Promise<number> {
  const server = await rawServer(() => undefined);
  await server.close();
  return server.port;
}

export const textOf = (result: Record<string, unknown>): string =>
  ((result['content'] as { type: string; text?: string }[] | undefined) ?? [])
    .map((c) => c.text ?? '')
    .join('');
