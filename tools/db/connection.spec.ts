import { describe, expect, it } from 'vitest';
import { DbToolError, parseDatabaseUrl } from './index.mjs';

describe('parseDatabaseUrl', () => {
  it('decodes percent-escapes in each part', () => {
    expect(parseDatabaseUrl('postgresql://us%40er:p%25ss@127.0.0.1:5433/port%2Dcullis')).toEqual({
      host: '127.0.0.1',
      port: 5433,
      user: 'us@er',
      password: 'p%ss',
      database: 'port-cullis',
    });
  });

  it("refuses a malformed percent-escape as the caller's mistake, naming the part and not the password", () => {
    // A literal % in a password (not written %25): decodeURIComponent's URIError reached the operator as an uncaught
    // exception with a stack, naming neither the variable's problem nor the part.
    for (const [url, part] of [
      ['postgresql://postgres:Adm1n%ZZsecret@127.0.0.1:1/portcullis', 'password'],
      ['postgresql://post%ZZgres@127.0.0.1:1/portcullis', 'user'],
      ['postgresql://postgres@127.0.0.1:1/port%ZZcullis', 'database name'],
    ] as const) {
      let thrown: unknown;
      try {
        parseDatabaseUrl(url);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, url).toBeInstanceOf(DbToolError);
      expect((thrown as Error).message).toContain(`${part} has a malformed percent-escape`);
      expect((thrown as Error).message).not.toContain('Adm1n');
    }
  });
});
