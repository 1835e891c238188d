import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  ErrorCode,
  McpError,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import type { ToolExtra } from './client-log';

/** JSON-RPC code the MCP specification gives "resource not found". */
export const RESOURCE_NOT_FOUND = -32002;

/**
 * `resources/subscribe` and `resources/unsubscribe` for one server instance (one client session), and
 * `notifications/resources/updated` for the URIs that client subscribed to. The server must declare
 * `capabilities.resources.subscribe`.
 */
export class ResourceSubscriptions {
  private readonly subscribed = new Set<string>();

  constructor(
    private readonly server: McpServer,
    isKnownUri: (uri: string) => boolean,
  ) {
    server.server.setRequestHandler(SubscribeRequestSchema, (request) => {
      const { uri } = request.params;
      if (!isKnownUri(uri)) throw new McpError(RESOURCE_NOT_FOUND, `Resource ${uri} not found`, { uri });
      this.subscribed.add(uri);
      return {};
    });
    server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
      if (!this.subscribed.delete(request.params.uri)) {
        throw new McpError(ErrorCode.InvalidParams, `Not subscribed to ${request.params.uri}`);
      }
      return {};
    });
  }

  isSubscribed(uri: string): boolean {
    return this.subscribed.has(uri);
  }

  /**
   * Tells the client that `uri` changed, if it subscribed. Inside a request handler pass its `extra`, so
   * the notification rides that request's stream; otherwise it goes out unrelated.
   */
  async notifyUpdated(uri: string, extra?: ToolExtra): Promise<void> {
    if (!this.subscribed.has(uri) || !this.server.isConnected()) return;
    if (extra) {
      await extra.sendNotification({ method: 'notifications/resources/updated', params: { uri } });
    } else {
      await this.server.server.sendResourceUpdated({ uri });
    }
  }
}
