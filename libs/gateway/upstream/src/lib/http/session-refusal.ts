import type { IncomingMessage } from 'node:http';

/** The most of a 400's body read for its reason, and the longest it is waited for. */
export const MAX_REFUSAL_BYTES = 4_096;
export const REFUSAL_READ_MS = 1_000;

/**
 * The words servers use in a 400 for a session they do not know, where MCP asks for 404: servers built on older SDK
 * examples ("Bad Request: No valid session ID provided", "Invalid or missing session ID"), an SDK server transport
 * started afresh after a restart ("Bad Request: Server not initialized"), and a few plainer forms. Narrow on purpose: a
 * 400 about anything else that merely names a session is the request's own.
 */
const SESSION_REFUSED =
  /no valid session|session not found|invalid or missing session|unknown session|session(?: id)? (?:is )?(?:invalid|expired|unknown)|server not initiali[sz]ed/i;

/**
 * Whether a 400's body (`text`: as much of it as was read) says the server does not know the session. A JSON-RPC answer
 * carrying the request's own id (`ownId`) answers that request, whatever it says: the request's failure, not the
 * session's.
 */
export function refusesSession(text: string, ownId?: string | number): boolean {
  if (!SESSION_REFUSED.test(text)) return false;
  if (ownId === undefined) return true;
  try {
    const parsed: unknown = JSON.parse(text);
    return !(typeof parsed === 'object' && parsed !== null && (parsed as { id?: unknown }).id === ownId);
  } catch {
    return true;
  }
}

/**
 * Reads at most MAX_REFUSAL_BYTES of a refusal's body, for at most REFUSAL_READ_MS, then lets the response go
 * (destroyed: a body that never ends must not hold its socket) and hands over what came.
 */
export function readRefusal(res: IncomingMessage, done: (text: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    res.destroy();
    done(Buffer.concat(chunks).subarray(0, MAX_REFUSAL_BYTES).toString('utf8'));
  };
  const timer = setTimeout(finish, REFUSAL_READ_MS);
  res.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= MAX_REFUSAL_BYTES) finish();
  });
  res.on('end', finish);
  res.on('error', finish);
  res.on('close', finish);
}
