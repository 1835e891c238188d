import { Client, type ClientOptions } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { Implementation } from '@modelcontextprotocol/sdk/types.js';

export interface InMemoryConnection {
  readonly client: Client;
  readonly server: McpServer;
  close(): Promise<void>;
}

export interface ConnectInMemoryOptions {
  readonly clientInfo?: Implementation;
  readonly clientOptions?: ClientOptions;
  /** Runs before `connect`, to install request handlers (sampling, elicitation, roots). */
  readonly configureClient?: (client: Client) => void;
}

/** Connects a real SDK client to `server` over a linked in-memory transport pair (no I/O). */
export async function connectInMemory(
  server: McpServer,
  options: ConnectInMemoryOptions = {},
): Promise<InMemoryConnection> {
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const client = new Client(
    options.clientInfo ?? { name: 'in-memory-test-client', version: '0.0.0' },
    options.clientOptions,
  );
  options.configureClient?.(client);
  await server.connect(serverTransport);
  await client.connect(clientTransport);
  return {
    client,
    server,
    close: async () => {
      await client.close();
      await server.close();
    },
  };
}
