#!/usr/bin/env node
// An upstream for `npm run bench:tools-list`: an MCP server on the official SDK (Streamable HTTP, stateless, JSON
// answers) that lists TOOLS tools with realistic descriptions and input schemas, at /<any name>/mcp. 127.0.0.1 only.
//
//   node tools/bench/lib/many-tools-server.mjs <port> <tools per server> [full|minimal]
// minimal: a name, a one-line description and an empty object schema per tool (about 90 bytes instead of 490).
import http from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const [portArg, countArg, shape = 'full'] = process.argv.slice(2);
const count = Number(countArg ?? '100');
const minimal = (i) => ({ name: `tool_${String(i).padStart(3, '0')}`, description: `Looks up record ${i}.`, inputSchema: { type: 'object' } });
const full = (i) => ({
  name: `tool_${String(i).padStart(3, '0')}`,
  description: `Looks up record ${i} in the inventory system and returns its current state, owner and history. Use it before changing the record.`,
  inputSchema: {
    type: 'object',
    properties: {
      id: { type: 'string', description: 'The record id, as shown in the inventory UI' },
      includeHistory: { type: 'boolean', description: 'Also return the last 20 changes' },
      fields: { type: 'array', items: { type: 'string' }, description: 'Only these fields (default: all)' },
    },
    required: ['id'],
  },
});
const tools = Array.from({ length: count }, (_, i) => (shape === 'minimal' ? minimal(i) : full(i)));

function newServer() {
  const server = new Server({ name: 'many-tools', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, (request) => ({ content: [{ type: 'text', text: request.params.name }] }));
  return server;
}

const httpServer = http.createServer((req, res) => {
  if (req.url === '/readyz') {
    res.writeHead(200).end('ok');
    return;
  }
  if (!/^\/[\w-]+\/mcp$/.test(req.url ?? '') || req.method !== 'POST') {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    // Stateless: a server and a transport per request, as the SDK's stateless examples do.
    const server = newServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    try {
      await server.connect(transport);
      await transport.handleRequest(req, res, JSON.parse(Buffer.concat(chunks).toString('utf8')));
    } catch {
      if (!res.headersSent) res.writeHead(400).end();
    }
  });
});
httpServer.listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => {
  httpServer.close();
  setTimeout(() => process.exit(0), 200).unref();
});
