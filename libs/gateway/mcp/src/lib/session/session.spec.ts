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
      'mem://pub/%2e%2e/hr',
      'mem://pub/a%2F..%2Fhr',
      'mem://pub/..\\hr',
      'mem://pub/..?x',
      'mem://pub/x/.%2E',
    ]) {
      expect(subscriptionCovers('mem://pub', uri), uri).toBe(false);
    }
    // Dots inside a name are no segment of their own.
    expect(subscriptionCovers('mem://pub', 'mem://pub/..hidden/x')).toBe(true);
    expect(subscriptionCovers('mem://pub', 'mem://pub/a..b')).toBe(true);
  });

  it('covers parts whose query holds a URL or an encoded path, and ones with an empty segment or an encoded "/" (found by re-review)', () => {
    expect(subscriptionCovers('mem://feeds/news', 'mem://feeds/news/item-7?link=https://example.com/story')).toBe(true);
    expect(subscriptionCovers('gh://repo/contents', 'gh://repo/contents/x?path=src%2Findex.ts&from=../y')).toBe(true);
    expect(subscriptionCovers('gitlab://projects/42/files', 'gitlab://projects/42/files/src%2Fmain.ts')).toBe(true);
    expect(subscriptionCovers('s3://bucket/logs', 's3://bucket/logs/app//2024-01-01.log')).toBe(true);
  });
});
