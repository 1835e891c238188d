import { describe, expect, it } from 'vitest';
import { eventId, newStreamId, parseEventId } from './replay-log';

describe('SSE event ids', () => {
  it('round-trip through Last-Event-ID and name their stream kind', () => {
    const post = newStreamId('p');
    const standalone = newStreamId('s');
    expect(post).not.toBe(newStreamId('p'));
    expect(parseEventId(eventId(post, 7))).toEqual({ streamId: post, kind: 'p', seq: 7 });
    expect(parseEventId(` ${eventId(standalone, 1)} `)).toEqual({ streamId: standalone, kind: 's', seq: 1 });
  });

  it('refuses anything the gateway could not have minted', () => {
    for (const value of [
      undefined,
      '',
      'garbage',
      'x0123456789abcdef1_1',
      `${newStreamId('p')}_`,
      `${newStreamId('p')}_-1`,
      `${newStreamId('p')}_1234567890`,
      `${newStreamId('p')}:1`,
    ]) {
      expect(parseEventId(value)).toBeUndefined();
    }
  });
});
