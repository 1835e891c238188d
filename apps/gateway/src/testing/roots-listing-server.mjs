#!/usr/bin/env node
// A stdio MCP server on the SDK, scoped to its client's roots as a file server is: its resources/list asks the client
// for them (roots/list) and lists one resource under each. Its tool `hold` answers after HOLD_MS, to keep a call in
// flight. For apps/gateway/src/shared-stdio-roots.int-spec.ts.
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { CallToolRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const HOLD_MS = 3_000;
const server = new Server({ name: 'roots-listing', version: '1.0.0' }, { capabilities: { tools: {}, resources: {} } });
server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: 'hold', description: 'Answers after a while.', inputSchema: { type: 'object' } }] }));
server.setRequestHandler(CallToolRequestSchema, () => new Promise((resolve) => setTimeout(() => resolve({ content: [{ type: 'text', text: 'held' }] }), HOLD_MS)));
server.setRequestHandler(ListResourcesRequestSchema, async () => {
  const { roots } = await server.listRoots();
  return { resources: roots.map((root) => ({ uri: `${root.uri}/index`, name: `index of ${root.name ?? root.uri}` })) };
});
await server.connect(new StdioServerTransport());
