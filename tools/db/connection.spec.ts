import { describe, expect, it } from 'vitest';
import { DbToolError, parseDatabaseUrl, redactUrl, unreachable } from './index.mjs';

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

// libpq (psql, pg_dump, most drivers) takes the password as a query parameter too: `?password=` (and `sslpassword=`
// for the client key). parseDatabaseUrl ignores the query, so such a URL connects without its password and fails, and
// the failure quoted the URL through redactUrl, which masked only a password in the user-info (found in review).
describe('redactUrl with a password in the query', () => {
  const url = 'postgresql://portcullis_app@127.0.0.1:5432/portcullis?password=Sh4rpTooth&sslpassword=KeyPhr4se';

  it('masks it in redactUrl', () => {
    const text = redactUrl(url);
    expect(text).not.toContain('Sh4rpTooth');
    expect(text).not.toContain('KeyPhr4se');
  });

  it('does not print it when the connection fails', () => {
    const error = unreachable(url, Object.assign(new Error('password authentication failed for user "portcullis_app"'), { code: '28P01' }));
    expect(error).toBeInstanceOf(DbToolError);
    expect(error.message).not.toContain('Sh4rpTooth');
  });

  it('does not print it when the URL names no database', () => {
    let message = '';
    try {
      parseDatabaseUrl('postgresql://portcullis_app@127.0.0.1:5432/?password=Sh4rpTooth');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('names no database');
    expect(message).not.toContain('Sh4rpTooth');
  });
});
