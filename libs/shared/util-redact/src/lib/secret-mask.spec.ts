import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { credentialArgIndex, credentialArgs, credentialMaskOf, embeddedUrls, maskListedItem, maskValue, SecretMask, secretMaskOf, type UpstreamSecrets } from './secret-mask';

const config = (overrides: Partial<UpstreamSecrets> = {}): UpstreamSecrets => ({
  url: 'http://127.0.0.1:1/mcp',
  headers: { authorization: 'Bearer upstream-token-0123456789', 'x-api-key': 'key-abcdefghijkl' },
  args: [],
  env: {},
  ...overrides,
});

describe('credentialArgs', () => {
  it('takes the values of flags named like credentials, in both spellings, and nothing else', () => {
    expect(
      credentialArgs(['server.js', '--api-key=sk-live-123456', '--token', 'tok_abcdefgh', '--port', '8080', '--client_secret=s3cr3t-value', '-password', 'hunter22', '--verbose']),
    ).toEqual(['sk-live-123456', 'tok_abcdefgh', 's3cr3t-value', 'hunter22']);
    // A flag with no value after it (the next is another flag, or none) gives nothing.
    expect(credentialArgs(['--token', '--verbose', '--auth'])).toEqual([]);
    // By whole parts of the name: not every flag that happens to contain "key".
    expect(credentialArgs(['/srv/mcp/keys.js', '--monkey=banana', '--keyboard', 'us', '--authToken=abcdefgh1'])).toEqual(['abcdefgh1']);
  });
});

describe('credentialArgIndex', () => {
  it('finds an argument that plainly holds a credential: a flag named for it with a token-shaped value, a known token, a URL password', () => {
    expect(credentialArgIndex(['server.js', '--api-key=sk_live_0123456789'])).toBe(1);
    expect(credentialArgIndex(['server.js', '--token', 'tok_abcdefgh1'])).toBe(2);
    expect(credentialArgIndex(['--clientSecret', 's3cr3t-value'])).toBe(1);
    expect(credentialArgIndex(['run', `ghp_${'a'.repeat(36)}`])).toBe(1);
    expect(credentialArgIndex(['--header', 'Authorization: Bearer abcdefgh12345'])).toBe(1);
    expect(credentialArgIndex(['--dsn=postgres://app:hunter2x@db.internal/app'])).toBe(0);
    expect(credentialArgIndex(['--endpoint', 'https://api.example.com/v1?api_key=abc123'])).toBe(1);
  });

  it('leaves what is about a credential, not one: paths, URLs without one, references to the env, words and short values', () => {
    expect(
      credentialArgIndex([
        'server.js',
        '--key-file', '/etc/mcp/key.pem',
        '--token-url', 'https://auth.example.com/token',
        '--auth-type', 'client-credentials',
        '--api-key', '${API_KEY}',
        '--password=${DB_PASSWORD}',
        '--secret', './secret.json',
        '--token', 'none',
        '--key', '0',
        '--port', '8080',
        '--verbose',
      ]),
    ).toBe(-1);
    // A flag whose value is the next flag gives nothing to judge.
    expect(credentialArgIndex(['--token', '--verbose'])).toBe(-1);
  });

  // Found by re-review: references in URLs, relative key paths and identifiers were refused; Docker's -e form passed.
  it('judges references as the empty text they stand for, and relative paths, file names, identifiers and public keys as no credential', () => {
    expect(credentialArgIndex(['-y', '@modelcontextprotocol/server-postgres', 'postgresql://app:${PGPASSWORD}@db.internal:5432/app'])).toBe(-1);
    expect(credentialArgIndex(['--endpoint', 'https://api.example.com/v1?api_key=${API_KEY}', '--header', 'Authorization: Bearer ${TOKEN}'])).toBe(-1);
    expect(credentialArgIndex(['--cert', 'certs/server.crt', '--key', 'certs/server.key', '--ssh-key', 'keys/id_ed25519', '--key', 'keyfile.pem'])).toBe(-1);
    expect(credentialArgIndex(['--sort-key', 'created_at', '--public-key', 'ssh-ed25519', '--project', 'Basic research'])).toBe(-1);
    // What a reference leaves is judged: a password written beside one is still one.
    expect(credentialArgIndex(['postgresql://app:pw${X}123@db/app'])).toBe(0);
  });

  // Found by re-review: base64 holds `/` (an AWS secret key passed as a relative path), and a passphrase of words is one.
  it('finds a base64 key with slashes, and a passphrase of lower-case words given to a password flag', () => {
    expect(credentialArgIndex(['--aws-secret-access-key', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'])).toBe(1);
    expect(credentialArgIndex(['run', '-e', 'AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'])).toBe(2);
    expect(credentialArgIndex(['--password', 'correct-horse-battery-staple'])).toBe(1);
    // Starting with a slash, or with a short lower-case segment (found by the next re-review).
    expect(credentialArgIndex(['--aws-secret-access-key', 'q8/K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEM'])).toBe(1);
    expect(credentialArgIndex(['--aws-secret-access-key', '/K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI1'])).toBe(1);
    expect(credentialArgIndex(['--secret-key', '/abcdefGHIJKLmnopQRSTuvwxYZabcdEFGH'])).toBe(1);
    expect(credentialArgIndex(['-e', 'AWS_SECRET_ACCESS_KEY=x3k/K7MDENGbPxRfiCYEXAMPLEKEYwJalrXU'])).toBe(1);
    // Key files under directories of any case are paths.
    expect(credentialArgIndex(['--tls-key', 'config/TLS/server.key', '--ssl-key=Certs/client.pem', '--key', '/srv/MyApplicationConfig/id_ed25519'])).toBe(-1);
  });

  it("finds a credential given as a variable, Docker's -e NAME=value", () => {
    expect(credentialArgIndex(['run', '-i', '--rm', '-e', 'BRAVE_API_KEY=BSAq7x9Lm2Kp4Rt8Vw', 'mcp/brave-search'])).toBe(4);
    expect(credentialArgIndex(['run', '--env', 'GITHUB_PERSONAL_ACCESS_TOKEN=a1b2c3d4e5f6a7b8c9d0', 'ghcr.io/github/github-mcp-server'])).toBe(2);
    expect(credentialArgIndex(['run', '-e', 'GITHUB_PERSONAL_ACCESS_TOKEN', '-e', 'GITHUB_TOKEN=${GITHUB_TOKEN}', '-e', 'LOG_LEVEL=debug', '-e', 'TOKEN_URL=https://auth.example.com/token'])).toBe(-1);
  });
});

describe('SecretMask', () => {
  it('masks configured values wherever they appear, as written and as JSON escapes them, longest first', () => {
    const mask = new SecretMask(['abc', 'pa"ss\\word-123', 'token-123456', 'token-123456-and-more']);
    expect(mask.mask('x abc token-123456-and-more token-123456 y')).toBe('x abc [redacted] [redacted] y');
    expect(mask.mask(JSON.stringify({ env: 'pa"ss\\word-123' }))).toBe('{"env":"[redacted]"}');
    expect(mask.longest).toBe('token-123456-and-more'.length);
    expect(new SecretMask([]).mask('nothing to hide')).toBe('nothing to hide');
  });
});

describe('the secrets of an upstream, in the forms it may quote them', () => {
  it('masks parts of header values, the credentials a Basic value encodes, URL-encoded forms, and the URL password and query', () => {
    const upstream = config({
      url: 'https://svc:url-password-77@mcp.example.com/mcp?api_key=query-key-123456&region=eu',
      headers: {
        authorization: `Basic ${Buffer.from('alice:hunter2hunter2').toString('base64')}`,
        cookie: 'sid=session-cookie-value; theme=dark',
        'x-token': 'Token token=token-param-value, realm=r',
        'x-plus': 'sk+live/abc=123456',
      },
    });
    const mask = secretMaskOf(upstream);
    const quoted = 'hunter2hunter2 alice:hunter2hunter2 session-cookie-value token-param-value sk%2Blive%2Fabc%3D123456 url-password-77 query-key-123456';
    expect(mask.mask(quoted)).toBe(Array(7).fill('[redacted]').join(' '));
    // Words of the values that are no credential stay (shorter than 8 characters).
    expect(mask.mask('theme=dark region eu')).toBe('theme=dark region eu');
  });

  it('masks a credential of the env inside any base64 text the server makes of it (Basic account:token, found by review)', () => {
    const token = 'ATATT3xFfGF0q8R2kz7LmN4pVb9Yc1Dw';
    const upstream = config({ headers: {}, env: { JIRA_EMAIL: 'ops@example.com', JIRA_API_TOKEN: token } });
    const middle = token.slice(2, -2);
    /** Whether a piece of `text` between masks, read as base64 from any of its four starting characters, holds the token's middle. */
    const leaks = (text: string): boolean =>
      text.split('[redacted]').some((piece) => [0, 1, 2, 3].some((shift) => Buffer.from(piece.slice(shift), 'base64').toString('latin1').includes(middle)));
    for (const mask of [secretMaskOf(upstream), credentialMaskOf(upstream)]) {
      fc.assert(
        fc.property(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), (before, after) => {
          const quoted = `Authorization: Basic ${Buffer.from(`${before}${token}${after}`).toString('base64')}`;
          expect(leaks(quoted)).toBe(true);
          const masked = mask.mask(quoted);
          expect(masked.startsWith('Authorization: Basic ')).toBe(true);
          expect(leaks(masked)).toBe(false);
        }),
        { numRuns: 300 },
      );
    }
    // An ordinary text is left alone.
    expect(credentialMaskOf(upstream).mask('Basic b3BzQGV4YW1wbGUuY29t')).toBe('Basic b3BzQGV4YW1wbGUuY29t');
  });

  it('masks passwords of 8 to 10 characters inside Basic account:password whatever the account (found by re-review)', () => {
    const leaked: string[] = [];
    for (const password of ['Pa55w0rd', 'Pa55w0rd9', 'Tr0ub4dor!']) {
      const upstream = config({ headers: {}, env: { SERVICE_USER: 'ops', SERVICE_PASSWORD: password } });
      const middle = password.slice(2, -2);
      for (const account of ['o', 'op', 'ops', 'ops1', 'ops12', 'ops123']) {
        const quoted = `Authorization: Basic ${Buffer.from(`${account}:${password}`).toString('base64')}`;
        for (const mask of [secretMaskOf(upstream), credentialMaskOf(upstream)]) {
          const pieces = mask.mask(quoted).split('[redacted]');
          if (pieces.some((piece) => [0, 1, 2, 3].some((shift) => Buffer.from(piece.slice(shift), 'base64').toString('latin1').includes(middle)))) leaked.push(`${account}:${password}`);
        }
      }
    }
    expect(leaked).toEqual([]);
  });

  it('masks a password of letters only inside base64 in an error, as it is masked plain there (found by re-review)', () => {
    for (const password of ['correcthorsebattery', 'Sunshineandrainbows']) {
      const mask = secretMaskOf(config({ headers: {}, env: { SERVICE_USER: 'ops', SERVICE_PASSWORD: password } }));
      expect(mask.mask(`login failed for ops with ${password}`)).toBe('login failed for ops with [redacted]');
      const pieces = mask.mask(`401 Unauthorized; sent Authorization: Basic ${Buffer.from(`ops:${password}`).toString('base64')}`).split('[redacted]');
      const middle = password.slice(2, -2);
      expect(pieces.some((piece) => [0, 1, 2, 3].some((shift) => Buffer.from(piece.slice(shift), 'base64').toString('latin1').includes(middle)))).toBe(false);
    }
  });

  it('leaves base64 content that holds no configured value alone: no middles of values not named as credentials (found by re-review)', () => {
    const mask = secretMaskOf(config({ headers: {}, env: { NODE_ENV: 'production', ALLOWED_DIR: '/srv/data' } }));
    const readme = '# Introduction\n\nThe reports live under /srv/docs/reports; see /srv/docs/index.md.\n';
    const svg = '<svg xmlns="http://www.w3.org/2000/svg"><text x="1" y="9">Productivity by team</text></svg>';
    for (const text of [readme, svg, JSON.stringify({ path: '/srv/docs/a.txt', stage: 'introduction' })]) {
      const encoded = Buffer.from(text).toString('base64');
      expect(mask.mask(encoded)).toBe(encoded);
    }
  });

  it('masks the values of flags ending in pass as those of --password (--pass, --smtp-pass; found by re-review)', () => {
    for (const flag of ['--pass', '--smtp-pass', '--db-pass']) {
      for (const args of [[flag, 'sunshinerainbow'], [`${flag}=sunshinerainbow`]]) {
        expect(secretMaskOf(config({ headers: {}, args })).mask('auth failed with sunshinerainbow'), args.join(' ')).toBe('auth failed with [redacted]');
      }
      for (const args of [[flag, 'Xy7!kq9Lm2pQ'], [`${flag}=Xy7!kq9Lm2pQ`]]) {
        expect(credentialMaskOf(config({ headers: {}, args })).mask('auth failed with Xy7!kq9Lm2pQ'), args.join(' ')).toBe('auth failed with [redacted]');
      }
    }
  });

  it('takes env values named for a personal access token or a password as credentials (GH_PAT, SMTP_PASS; found by reviews)', () => {
    const upstream = config({
      headers: {},
      env: { GH_PAT: 'ghp_0123456789abcdefABCDEF', AZURE_DEVOPS_EXT_PAT: 'x7q2m9k4p1z8w3r6t5y0u2i4', SMTP_USER: 'mailer', SMTP_PASS: 'Xy7!kq9Lm2pQ', DB_PASS: 'n0t-so-s3cret', PATH_PREFIX: '/srv/data/patterns' },
    });
    expect(credentialMaskOf(upstream).mask('token ghp_0123456789abcdefABCDEF and x7q2m9k4p1z8w3r6t5y0u2i4 under /srv/data/patterns; login as mailer with Xy7!kq9Lm2pQ; db n0t-so-s3cret')).toBe(
      'token [redacted] and [redacted] under /srv/data/patterns; login as mailer with [redacted]; db [redacted]',
    );
  });

  it('masks a value with slashes as a JSON writer that escapes them quotes it (PHP)', () => {
    const mask = secretMaskOf(config({ headers: { authorization: 'Bearer abc/def+ghi/jkl==', 'x-api-key': 'Key abcdefghijkl==' } }));
    expect(mask.mask('{"error":"bad token abc\\/def+ghi\\/jkl=="}')).toBe('{"error":"bad token [redacted]"}');
    // A base64 token's padding is no `name=value` separator: the token is masked bare.
    expect(mask.mask('bad token abc/def+ghi/jkl== and key abcdefghijkl==')).toBe('bad token [redacted] and key [redacted]');
  });

  it('masks the bare text of a quoted auth-parameter value, unescaped', () => {
    const mask = secretMaskOf(
      config({ headers: { authorization: 'Token token="abcdef0123456789"', 'proxy-authorization': 'Digest username="u", response="6629fae4\\"9393a05"' } }),
    );
    expect(mask.mask('invalid token abcdef0123456789')).toBe('invalid token [redacted]');
    expect(mask.mask('response 6629fae4"9393a05 refused')).toBe('response [redacted] refused');
  });

  it('leaves the parts of other headers and the values of other query parameters alone (ordinary words)', () => {
    const upstream = config({
      url: 'https://mcp.example.com/mcp?version=2025-06-18&region=us-east-1&access_token=query-token-98765',
      headers: { 'x-org': 'Acme Corporation', 'x-format': 'text/markdown; charset=utf-8', authorization: 'Bearer upstream-token-0123456789' },
    });
    const mask = secretMaskOf(upstream);
    expect(mask.mask('Corporation us-east-1 2025-06-18 text/markdown')).toBe('Corporation us-east-1 2025-06-18 text/markdown');
    // The whole of a configured header value is still a secret, and so is a credential-named query value.
    expect(mask.mask('Acme Corporation query-token-98765 upstream-token-0123456789')).toBe('[redacted] [redacted] [redacted]');
  });

  it('masks the user and password of a connection string in the env or the arguments', () => {
    const upstream = config({
      url: null,
      args: ['postgresql://reporting:db-pass-4242@db.internal/sales'],
      env: { CACHE_URL: 'redis://cache-user:cache-pass-77@cache:6379/0' },
    });
    expect(secretMaskOf(upstream).mask('password authentication failed for reporting (db-pass-4242); cache-pass-77')).toBe(
      'password authentication failed for [redacted] ([redacted]); [redacted]',
    );
  });

  it('masks the user and password of a connection string inside a longer argument or env value', () => {
    const upstream = config({
      url: null,
      args: ['--dsn=postgres://dsn-user:dsn-pass-5150@db.internal/app'],
      env: { OPTIONS: 'timeout=5;url=mysql://mysql-user:my-pass-6060@mysql:3306/app;ssl=on' },
    });
    expect(secretMaskOf(upstream).mask('login failed for dsn-user with dsn-pass-5150; mysql-user/my-pass-6060; db.internal')).toBe(
      'login failed for [redacted] with [redacted]; [redacted]/[redacted]; db.internal',
    );
    // A bare connection string whose password holds a character that ends an embedded match is still read whole.
    const separators = config({ url: null, args: ['postgres://app-user:s3cr;t-pass,22@db/app'] });
    expect(secretMaskOf(separators).mask('password s3cr;t-pass,22 refused')).toBe('password [redacted] refused');
  });

  it('masks strings only, so numbers and the shape of data stay, keys included', () => {
    const mask = new SecretMask(['12345678', 'secret-key-value']);
    const data = { count: 123456789, list: [1, 'secret-key-value', { 'secret-key-value': 'x' }], id: 'id-12345678' };
    expect(maskValue(mask, data)).toEqual({ count: 123456789, list: [1, '[redacted]', { '[redacted]': 'x' }], id: 'id-[redacted]' });
    const untouched = { a: [1, 2, { b: 'c' }] };
    expect(maskValue(mask, untouched)).toBe(untouched);
    // Nested past the walk's depth: masked whole when it holds a secret.
    let deep: unknown = 'secret-key-value';
    for (let i = 0; i < 40; i++) deep = { d: deep };
    expect(JSON.stringify(maskValue(mask, deep))).not.toContain('secret-key-value');
    // And passed whole when it holds none (a deep payload reaches the agent as the upstream sent it).
    let clean: unknown = 'leaf';
    for (let i = 0; i < 40; i++) clean = { d: clean };
    expect(maskValue(mask, clean)).toBe(clean);
    // Deeper than JSON.stringify goes: the part past the walk's depth masked whole.
    let abyss: unknown = 'leaf';
    for (let i = 0; i < 20_000; i++) abyss = [abyss];
    expect(JSON.stringify(maskValue(mask, abyss))).toBe(`${'['.repeat(32)}"[redacted]"${']'.repeat(32)}`);
  });
});

describe('the secrets of an upstream as the upstream reads them (found by review)', () => {
  it('masks a header value with white space around it as its server quotes it: trimmed by the HTTP parser', () => {
    const key = 'hcaik_01hq3f9z8x7w6v5u4t3s2r1q0pzz';
    const mask = secretMaskOf({ url: 'https://api.example.com/mcp', headers: { 'X-Honeycomb-Team': ` ${key} ` }, args: [], env: {} });
    expect(mask.mask(`unknown team key ${key}`)).toBe('unknown team key [redacted]');
  });

  it('masks a value URL-encoded with lower-case hex, or with its "/" kept, as other encoders write it', () => {
    const secret = 'pa/ss+word=0123456789';
    const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { SERVICE_PASSWORD: secret } });
    expect(mask.mask('sent pa%2fss%2bword%3d0123456789')).toBe('sent [redacted]');
    expect(mask.mask('sent pa/ss%2Bword%3D0123456789')).toBe('sent [redacted]');
    expect(mask.mask(`sent ${encodeURIComponent(secret)}`)).toBe('sent [redacted]');
  });

  it('masks a value URL-encoded as Python, Go, PHP and Java write it: ! \' ( ) * and ~ encoded, a space as + (found by re-review)', () => {
    const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { DB_PASSWORD: 'P@ssw0rd!2024', API_KEY: 'abcd~efgh~1234', SERVICE_PHRASE: 'correct horse battery 42' } });
    expect(mask.mask('sent P%40ssw0rd%212024')).toBe('sent [redacted]');
    expect(mask.mask('sent abcd%7Eefgh%7E1234')).toBe('sent [redacted]');
    expect(mask.mask('sent abcd%7eefgh%7e1234')).toBe('sent [redacted]');
    expect(mask.mask('q=correct+horse+battery+42')).toBe('q=[redacted]');
  });

  it('masks a value as Java\'s URLEncoder (* kept) and .NET\'s HttpUtility (! * ( ) kept, lower-case hex) write it (found by re-review)', () => {
    const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { DB_PASSWORD: "Sup3r*Secret!2024 (x)'~" } });
    expect(mask.mask('password=Sup3r*Secret%212024+%28x%29%27%7E')).toBe('password=[redacted]');
    expect(mask.mask('password=Sup3r*Secret!2024+(x)%27%7e')).toBe('password=[redacted]');
  });

  it('masks a value as .NET\'s JSON writer spells a control character (\\u001F) and leaves a backslash before "u00ab" alone', () => {
    const control = 'abc\u001fdef+123';
    const backslash = 'a\\u00ab+x12345';
    const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { CONTROL_SECRET: control, BACKSLASH_SECRET: backslash } });
    expect(mask.mask('{"v":"abc\\u001Fdef\\u002B123"}')).toBe('{"v":"[redacted]"}');
    // What .NET writes for the second: the backslash escaped, `u00ab` as it is, `+` as \u002B.
    expect(mask.mask('{"v":"a\\\\u00ab\\u002Bx12345"}')).toBe('{"v":"[redacted]"}');
  });

  it('masks an env value with white space after it as a server that trims it quotes it', () => {
    const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { SERVICE_PASSWORD: 'correct-horse-42 \t' } });
    expect(mask.mask('refused correct-horse-42.')).toBe('refused [redacted].');
  });
});

describe('maskListedItem', () => {
  it('masks what an item says, not what names it, and returns the same item when nothing is masked', () => {
    const mask = secretMaskOf(config());
    const item = { name: 'whoami', description: 'Runs as Bearer upstream-token-0123456789', inputSchema: { type: 'object', default: 'key-abcdefghijkl' } };
    expect(maskListedItem(mask, item)).toEqual({ name: 'whoami', description: 'Runs as [redacted]', inputSchema: { type: 'object', default: '[redacted]' } });
    expect(item.description).toBe('Runs as Bearer upstream-token-0123456789');
    const plain = { name: 'forecast', description: 'Weather' };
    expect(maskListedItem(mask, plain)).toBe(plain);
  });
});

describe('SecretMask: a configured value of several lines', () => {
  const body = ['MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj', 'MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu'];
  const pem = ['-----BEGIN PRIVATE KEY-----', ...body, '-----END PRIVATE KEY-----'].join('\n');
  const token = 'eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.c2VjcmV0';
  const kubeconfig = ['apiVersion: v1', 'kind: Config', 'clusters:', '- cluster:', '    server: https://10.0.0.1:6443', 'users:', '- name: admin', '  user:', `    token: ${token}`].join('\n');
  const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { TLS_KEY: pem, KUBECONFIG_DATA: kubeconfig } });

  it('masks its key lines and credential entries one by one, as a log read a line at a time shows them', () => {
    for (const line of body) expect(mask.mask(`> ${line}`)).toBe('> [redacted]');
    expect(mask.mask(`    token: ${token}`)).toBe('    token: [redacted]');
    expect(mask.mask(pem)).toBe('[redacted]');
  });

  it('leaves its ordinary lines readable: PEM armour, YAML structure', () => {
    const tool = { name: 'sign', description: 'Signs with a key given as PEM text, from -----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----.' };
    expect(maskListedItem(mask, tool)).toEqual(tool);
    const manifest = 'Apply a manifest such as:\napiVersion: v1\nkind: Config\nusers:\n- name: admin';
    expect(mask.mask(manifest)).toBe(manifest);
  });

  it('masks the lines of a private key however many certificate lines share its value (found by re-review)', () => {
    const keyBody = Array.from({ length: 50 }, (_, i) => `MIIJ${String(i).padStart(4, '0')}${'K'.repeat(56)}`);
    const certificate = (i: number) => ['-----BEGIN CERTIFICATE-----', ...Array.from({ length: 30 }, (_, j) => `MIIC${String(i * 100 + j).padStart(4, '0')}${'C'.repeat(56)}`), '-----END CERTIFICATE-----'];
    const value = ['-----BEGIN PRIVATE KEY-----', ...keyBody, '-----END PRIVATE KEY-----', ...certificate(1), ...certificate(2)].join('\n');
    expect(value.split('\n').length).toBeGreaterThan(100);
    const chained = secretMaskOf({ url: null, headers: {}, args: [], env: { TLS_CLIENT_PEM: value } });
    expect(chained.mask(`debug: ${keyBody[10]}`)).toBe('debug: [redacted]');
    // The certificates' lines, public, are masked only within the whole value.
    const certificateLine = certificate(2)[5] as string;
    expect(chained.mask(certificateLine)).toBe(certificateLine);
  });

  it('masks a bundle of many lines (public certificates) whole only', () => {
    const certificate = (i: number) => ['-----BEGIN CERTIFICATE-----', `MIIB${String(i).padStart(6, '0')}${'Q'.repeat(54)}`, '-----END CERTIFICATE-----'].join('\n');
    const bundle = Array.from({ length: 50 }, (_, i) => certificate(i)).join('\n');
    const bundled = secretMaskOf({ url: null, headers: {}, args: [], env: { CA_BUNDLE: bundle } });
    const line = `MIIB000007${'Q'.repeat(54)}`;
    expect(bundled.mask(line)).toBe(line);
    expect(bundled.mask(`x ${bundle} y`)).toBe('x [redacted] y');
  });
});

describe('building the masks, in time linear in the configuration (found by review)', () => {
  // Built on the control plane for every listing of an upstream's tools, on each gateway replica at the first relay
  // after a configuration load: seconds each, for every tenant of the process. Each of these took 4.5 to 6 s.
  it("a tenant admin's credential headers whose Basic value decodes to a long line of spaces", () => {
    const decoded = `:${' '.repeat(5_990)}\nx`;
    const headers = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`X-Api-Key-${i}`, `Basic ${Buffer.from(decoded).toString('base64')}`]));
    const started = performance.now();
    secretMaskOf({ url: 'https://mcp.example.com/mcp', headers, args: [], env: {} });
    credentialMaskOf({ url: 'https://mcp.example.com/mcp', headers, args: [], env: {} });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("a stdio server's multi-line env values of long lines of spaces, and an argument of 64,000 letters before a colon", () => {
    const env = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`V${i}`, `${' '.repeat(7_990)}\nx`]));
    const started = performance.now();
    secretMaskOf({ url: null, headers: {}, args: [`${'a'.repeat(63_920)}:x ://@`], env });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('still masks a credential entry of a multi-line value, after a dash or not', () => {
    const mask = secretMaskOf({ url: null, headers: {}, args: [], env: { KUBECONFIG: 'users:\n  - token: kube-token-0123456789\n    password = hunter2-0123456789' } });
    expect(mask.mask('saw kube-token-0123456789 and hunter2-0123456789')).not.toMatch(/kube-token|hunter2/);
  });

  it('finds the URLs inside a text as the pattern it replaced did', () => {
    const pattern = /[a-z][a-z0-9+.-]*:\/\/[^\s'"`,;<>]+/gi;
    const text = fc.string({ unit: fc.constantFrom('a', 'Z', '1', '+', '.', '-', ':', '/', '@', ' ', ';', '"', 'x', 'p'), maxLength: 60 });
    fc.assert(
      fc.property(text, (value) => {
        expect(embeddedUrls(value)).toEqual(value.match(pattern) ?? []);
      }),
      { numRuns: 2_000 },
    );
    expect(embeddedUrls('--dsn=postgres://u:p@db/x;timeout=5 and HTTPS://a@b')).toEqual(['postgres://u:p@db/x', 'HTTPS://a@b']);
  });
});

