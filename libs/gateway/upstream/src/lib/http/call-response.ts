import {
  UpstreamRpcError,
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '@portcullis/gateway/mcp';
import { errors } from '../core/wire';
import { consumeEventStream, contentTypeOf, parseMessages, type ResponseLike } from './event-stream';
import { readBody } from './http-pool';

export interface CallResponseHandlers {
  readonly maxBytes: number;
  /** The request carried an Mcp-Session-Id, so a 404 means the upstream forgot the session. */
  readonly hasSession: boolean;
  notification(notification: JsonRpcNotification): void;
  serverRequest(request: JsonRpcRequest): void;
  /** The upstream answered 404 to a known session. */
  expired(): void;
  /** The upstream answered at the HTTP level (the breaker resets) or failed with 5xx (it counts). */
  reachable(healthy: boolean): void;
  /** Called once with the outcome of the call. */
  settle(error: unknown, result: Record<string, unknown> | undefined): void;
}

function settleWith(message: JsonRpcResponse, handlers: CallResponseHandlers): void {
  if ('error' in message)
    handlers.settle(
      new UpstreamRpcError(message.error.code, message.error.message, message.error.data),
      undefined,
    );
  else handlers.settle(null, message.result);
}

/**
 * Handles the HTTP response to one POSTed JSON-RPC request (Streamable HTTP): a JSON body with the
 * response, or an SSE stream carrying notifications and server requests about this request and, last,
 * its response. Messages that arrive after the response are still delivered.
 */
export function handleCallResponse(res: ResponseLike, id: JsonRpcId, handlers: CallResponseHandlers): void {
  const status = res.statusCode ?? 0;
  if (status !== 200) {
    res.resume();
    if (status === 404 && handlers.hasSession) {
      handlers.reachable(true);
      handlers.expired();
      handlers.settle(errors.sessionExpired(), undefined);
      return;
    }
    handlers.reachable(status < 500);
    handlers.settle(errors.protocol(`HTTP ${status}`), undefined);
    return;
  }
  handlers.reachable(true);
  let answered = false;
  const dispatch = (text: string): void => {
    const messages = parseMessages(text);
    if (messages === undefined) return;
    for (const classified of messages) {
      switch (classified.kind) {
        case 'response':
          if (!answered && classified.message.id === id) {
            answered = true;
            settleWith(classified.message, handlers);
          }
          break;
        case 'notification':
          handlers.notification(classified.message);
          break;
        case 'request':
          handlers.serverRequest(classified.message);
          break;
        default:
          break;
      }
    }
  };
  const type = contentTypeOf(res.headers);
  if (type === 'text/event-stream') {
    consumeEventStream(
      res,
      handlers.maxBytes,
      (event) => {
        // 2025-11-25 servers open with an event that has an id and empty data (a resumption point).
        if (event.event === 'message' && event.data !== '') dispatch(event.data);
      },
      (error) => {
        if (!answered) {
          answered = true;
          handlers.settle(
            errors.protocol(
              error ? 'the response stream broke' : 'the response stream ended without an answer',
            ),
            undefined,
          );
        }
      },
    );
    return;
  }
  if (type === 'application/json') {
    readBody(res, handlers.maxBytes, (error, text) => {
      if (error === null) dispatch(text);
      if (!answered) {
        answered = true;
        handlers.settle(
          errors.protocol(error ? 'the response body broke' : 'the response did not answer the request'),
          undefined,
        );
      }
    });
    return;
  }
  res.resume();
  handlers.settle(errors.protocol('unexpected content type'), undefined);
}
