import { describe, expect, it } from 'vitest';
import { DbToolError, parseDatabaseUrl, redactUrl } from './index.mjs';

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

  // A password typed raw with an `@` in it, or given with an empty user name: the message quoted the URL, and the
  // masking stopped at the first `@` or needed a user name (found in review).
  it.each([
    ['postgresql://portcullis_app:Sh4rp@Tooth%Fang@127.0.0.1:5432/portcullis', ['Tooth', 'Fang']],
    ['postgresql://:Sh4rpTooth%Fang@127.0.0.1:5432/portcullis', ['Sh4rpTooth', 'Fang']],
  ] as const)('refuses a malformed escape without quoting any of the password (%s)', (url, pieces) => {
    let thrown: unknown;
    try {
      parseDatabaseUrl(url);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(DbToolError);
    const message = (thrown as Error).message;
    expect(message).toContain('password has a malformed percent-escape');
    for (const piece of pieces) expect(message, message).not.toContain(piece);
  });
});

describe('redactUrl', () => {
  it('masks the whole password, up to the host\'s @, with or without a user name', () => {
    expect(redactUrl('postgresql://app:Sh4rp@Tooth@db.internal:5432/portcullis')).toBe('postgresql://app:***@db.internal:5432/portcullis');
    expect(redactUrl('postgresql://:Sh4rpTooth@db.internal/portcullis')).toBe('postgresql://:***@db.internal/portcullis');
    expect(redactUrl('postgresql://app@db.internal/portcullis')).toBe('postgresql://app@db.internal/portcullis');
    expect(redactUrl('not a url')).toBe('not a url');
  });
});
