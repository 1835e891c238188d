import type { Readable, Writable } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Logger } from '@portcullis/shared/util-logger';
import { createDemoServer, type DemoServerName } from '../demo-servers';

export interface StdioServerHandle {
  /** Resolves when the transport closed (stdin ended, or `close()` was called). */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/**
 * Serves one demo server over stdio. stdout carries the protocol, so `logger` must write elsewhere
 * (stderr). Ends when stdin ends.
 */
export async function runStdioServer(
  name: DemoServerName,
  logger: Logger,
  stdin: Readable = process.stdin,
  stdout: Writable = process.stdout,
): Promise<StdioServerHandle> {
  const server = createDemoServer(name);
  const transport = new StdioServerTransport(stdin, stdout);
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    markClosed = resolve;
  });
  transport.onclose = () => {
    logger.info({ server: name }, 'stdio transport closed');
    markClosed();
  };
  transport.onerror = (error) => logger.warn({ err: error, server: name }, 'stdio transport error');
  const onEnd = () => void server.close();
  stdin.once('end', onEnd);
  await server.connect(transport);
  logger.info({ server: name }, 'serving over stdio');
  return {
    closed,
    close: async () => {
      stdin.off('end', onEnd);
      await server.close();
    },
  };
}
