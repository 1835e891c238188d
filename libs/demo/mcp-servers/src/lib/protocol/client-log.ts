import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  LoggingLevelSchema,
  SetLevelRequestSchema,
  type LoggingLevel,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';

export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const SEVERITY: ReadonlyMap<LoggingLevel, number> = new Map(
  LoggingLevelSchema.options.map((level, index) => [level, index]),
);

/**
 * MCP logging (`notifications/message`) for one server instance, honouring `logging/setLevel`.
 *
 * Messages are sent as notifications *related to the request being handled*, so over Streamable HTTP
 * they travel on that request's SSE stream and reach clients that never open the standalone GET stream
 * (a proxy, for instance). The server must declare the `logging` capability.
 */
export class ClientLog {
  private level: LoggingLevel | undefined;

  constructor(
    server: McpServer,
    private readonly loggerName: string,
  ) {
    // Replaces the SDK's default handler, which keeps the level where only unrelated sends can see it.
    server.server.setRequestHandler(SetLevelRequestSchema, (request) => {
      this.level = request.params.level;
      return {};
    });
  }

  /** The level the client asked for, if it asked. */
  get currentLevel(): LoggingLevel | undefined {
    return this.level;
  }

  async send(extra: ToolExtra, level: LoggingLevel, data: unknown): Promise<void> {
    if (this.level !== undefined && (SEVERITY.get(level) ?? 0) < (SEVERITY.get(this.level) ?? 0)) return;
    await extra.sendNotification({
      method: 'notifications/message',
      params: { level, logger: this.loggerName, data },
    });
  }
}
