import type { ServerResponse } from 'node:http';
import { sseFrame, type JsonRpcMessage, type JsonRpcResponse } from '@portcullis/gateway/mcp';

/** Where messages related to one agent request go besides its response (progress, server requests, logs). */
export interface MessageSink {
  /** False when the agent cannot receive extra messages for this request (JSON-only, batch, closed stream). */
  readonly canStream: boolean;
  send(message: JsonRpcMessage): boolean;
}

export const NO_STREAM: MessageSink = { canStream: false, send: () => false };

let streamCounter = 0;
const streamPrefix = (): string => `${Date.now().toString(36)}${(++streamCounter).toString(36)}`;

/**
 * The response to one Streamable HTTP POST: plain JSON when the answer is the only message, switched
 * to an SSE stream (with event ids) the moment anything must be sent before the answer.
 */
export class PostResponder implements MessageSink {
  private state: 'pending' | 'sse' | 'done' = 'pending';
  /** Event ids are minted only once the response turns into a stream (most responses never do). */
  private streamId = '';
  private seq = 0;

  /** `sessionId`: echoed as `Mcp-Session-Id` on the response. */
  constructor(
    private readonly res: ServerResponse,
    private readonly sessionId: string,
  ) {}

  get canStream(): boolean {
    return this.state !== 'done' && !this.res.destroyed;
  }

  send(message: JsonRpcMessage): boolean {
    if (!this.canStream) return false;
    if (this.state === 'pending') {
      this.res.writeHead(200, ['mcp-session-id', this.sessionId, 'content-type', 'text/event-stream', 'cache-control', 'no-cache, no-transform', 'connection', 'keep-alive']);
      this.state = 'sse';
      this.streamId = streamPrefix();
    }
    this.res.write(sseFrame(JSON.stringify(message), `${this.streamId}_${++this.seq}`));
    return true;
  }

  /**
   * The answer. A plain JSON response goes out as one write: status line, headers and body together
   * (a flat header list skips Node's per-header bookkeeping).
   */
  finish(response: JsonRpcResponse | readonly JsonRpcResponse[]): void {
    if (this.state === 'done') return;
    const body = JSON.stringify(response);
    if (this.state === 'sse') {
      this.res.end(sseFrame(body, `${this.streamId}_${++this.seq}`));
    } else if (!this.res.destroyed) {
      this.res.writeHead(200, ['mcp-session-id', this.sessionId, 'content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))]);
      this.res.end(body);
    }
    this.state = 'done';
  }
}

/** A long-lived SSE stream: the standalone GET stream, or a legacy HTTP+SSE session's stream. */
export class EventStream implements MessageSink {
  private readonly streamId = streamPrefix();
  private seq = 0;
  private readonly keepAlive: NodeJS.Timeout;

  constructor(
    private readonly res: ServerResponse,
    headers: Readonly<Record<string, string>>,
    keepAliveMs: number,
  ) {
    res.writeHead(200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' });
    res.flushHeaders();
    this.keepAlive = setInterval(() => {
      if (!res.destroyed) res.write(': keep-alive\n\n');
    }, keepAliveMs);
    this.keepAlive.unref();
    res.on('close', () => clearInterval(this.keepAlive));
  }

  get canStream(): boolean {
    return !this.res.destroyed && !this.res.writableEnded;
  }

  send(message: JsonRpcMessage): boolean {
    if (!this.canStream) return false;
    this.res.write(sseFrame(JSON.stringify(message), `${this.streamId}_${++this.seq}`));
    return true;
  }

  /** A raw event (the legacy transport's `endpoint` event). */
  event(name: string, data: string): void {
    if (this.canStream) this.res.write(sseFrame(data, undefined, name));
  }

  onClose(handler: () => void): void {
    this.res.on('close', handler);
  }

  close(): void {
    clearInterval(this.keepAlive);
    if (!this.res.writableEnded) this.res.end();
  }
}
