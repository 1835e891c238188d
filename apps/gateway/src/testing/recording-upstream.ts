import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/** An upstream started by a spec: where it listens, the sessions it opened, and the ones a DELETE closed. */
export interface RecordingUpstream {
  readonly url: string;
  readonly opened: string[];
  readonly closed: string[];
  /** Standalone GET streams of its sessions: how many it answered, and how many are open now. */
  readonly getStreams: { answered: number; open: number };
  readonly server: Server;
}

/** A stateful SDK Streamable HTTP server that records the sessions it opened and the ones DELETE closed. */
export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const opened: string[] = [];
  const closed: string[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const getStreams = { answered: 0, open: 0 };
  const server = createServer((req, res) => {
    const id = req.headers['mcp-session-id'];
    const existing = typeof id === 'string' ? transports.get(id) : undefined;
    if (existing && req.method === 'GET') {
      // Counted once the SDK answers it as a stream (a second one of a session gets 409), and only if the gateway had
      // not hung up by then (the SDK may answer a request whose connection has already closed).
      let gone = false;
      let counted = false;
      res.once('close', () => {
        gone = true;
        if (counted) getStreams.open -= 1;
      });
      const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => typeof res;
      res.writeHead = ((status: number, ...rest: unknown[]) => {
        if (status === 200 && !gone && !counted) {
          counted = true;
          getStreams.answered += 1;
          getStreams.open += 1;
        }
        return writeHead(status, ...rest);
      }) as typeof res.writeHead;
    }
    if (existing) {
      void existing.handleRequest(req, res);
      return;
    }
    if (typeof id === 'string') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
      return;
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sessionId) => {
        opened.push(sessionId);
        transports.set(sessionId, transport);
      },
      onsessionclosed: (sessionId) => {
        closed.push(sessionId);
        transports.delete(sessionId);
      },
    });
    const mcp = new McpServer({ name: 'recording-upstream', version: '1.0.0' });
    mcp.registerTool('echo', { inputSchema: { message: z.string() } }, ({ message }) => ({
      content: [{ type: 'text', text: message }],
    }));
    mcp.registerTool('slow', { inputSchema: { ms: z.number() } }, async ({ ms }) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return { content: [{ type: 'text', text: `slept ${ms}` }] };
    });
    // Progress `tick-<n>` every 100 ms for `ms`, to the call's progress token, then `ticked`.
    mcp.registerTool('tick', { inputSchema: { ms: z.number() } }, async ({ ms }, extra) => {
      const token = extra._meta?.progressToken;
      const started = Date.now();
      for (let n = 1; Date.now() - started < ms; n++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: n, message: `tick-${n}` } });
      }
      return { content: [{ type: 'text', text: 'ticked' }] };
    });
    // Adds a tool: the SDK tells the session's standalone stream (if one is open) that its tools changed.
    let grown = 0;
    mcp.registerTool('grow', { inputSchema: {} }, () => {
      grown += 1;
      mcp.registerTool(`grown_${grown}`, { inputSchema: {} }, () => ({ content: [] }));
      return { content: [{ type: 'text', text: `grown ${grown}` }] };
    });
    void mcp.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}/mcp`, opened, closed, getStreams, server };
}
