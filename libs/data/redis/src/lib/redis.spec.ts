import { describe, expect, it } from 'vitest';
import { reconnectDelay } from './redis';

describe('reconnectDelay', () => {
  it('backs off exponentially and caps at two seconds', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 20].map(reconnectDelay)).toEqual([50, 100, 200, 400, 800, 1600, 2000, 2000]);
  });
});
