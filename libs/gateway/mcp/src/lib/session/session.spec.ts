import { describe, expect, it } from 'vitest';
import { subscriptionCovers } from './session';

describe('subscriptionCovers', () => {
  it('covers the URI subscribed to and its parts (MCP: an update may name a sub-resource)', () => {
    expect(subscriptionCovers('file:///project', 'file:///project')).toBe(true);
    expect(subscriptionCovers('file:///project', 'file:///project/a.ts')).toBe(true);
    expect(subscriptionCovers('file:///project/', 'file:///project/src/a.ts')).toBe(true);
    expect(subscriptionCovers('file:///project', 'file:///project/.env.example')).toBe(true);
    expect(subscriptionCovers('file:///project', 'file:///projects/a.ts')).toBe(false);
  });

  it('does not cover a part that climbs out of it or names another resource a resolver would read (found by review)', () => {
    for (const uri of [
      'mem://pub/../hr/salaries',
      'mem://pub/a/../../hr',
      'mem://pub/..',
      'mem://pub/./x',
      'mem://pub//x',
      'mem://pub/%2e%2e/hr',
      'mem://pub/a%2Fb',
      'mem://pub/..\\hr',
      'mem://pub/..?x',
    ]) {
      expect(subscriptionCovers('mem://pub', uri), uri).toBe(false);
    }
    // Dots inside a name are no segment of their own.
    expect(subscriptionCovers('mem://pub', 'mem://pub/..hidden/x')).toBe(true);
    expect(subscriptionCovers('mem://pub', 'mem://pub/a..b')).toBe(true);
  });
});
