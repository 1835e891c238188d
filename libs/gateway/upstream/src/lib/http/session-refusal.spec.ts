import { describe, expect, it } from 'vitest';
import { refusesSession } from './session-refusal';

describe('refusesSession: what a 400 says of the session', () => {
  it('knows the words servers use for a session they do not know', () => {
    for (const body of [
      '{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}',
      '{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}',
      'Invalid or missing session ID',
      'Session not found',
      'session id is invalid',
    ]) {
      expect(refusesSession(body, 7), body).toBe(true);
    }
  });

  it('takes another 400 as the request\'s own, and one answering the request (its id) whatever it says', () => {
    expect(refusesSession('{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}', 7)).toBe(false);
    expect(refusesSession('Bad Request: session_id is a required property', 7)).toBe(false);
    expect(refusesSession('{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"unknown session browser-7"}}', 7)).toBe(false);
    // Another request's id is no answer to this one.
    expect(refusesSession('{"jsonrpc":"2.0","id":8,"error":{"code":-32000,"message":"Session not found"}}', 7)).toBe(true);
  });
});
