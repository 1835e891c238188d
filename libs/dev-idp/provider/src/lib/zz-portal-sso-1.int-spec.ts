import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@portcullis/shared/util-logger';
import { readIdentitiesFile } from './identities';
import { type RunningDevIdp, startDevIdp } from './server';

const identities = readIdentitiesFile(path.resolve(__dirname, '../../../../../tools/demo/identities.json'));

/** Sends one raw HTTP/1.1 request and resolves with the status line (or a description of what happened instead). */
function rawRequest(port: number, requestLine: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`${requestLine}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let data = '';
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve(data.split('\r\n')[0] || 'no answer within 2 s');
    });
    socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
    socket.on('close', () => resolve(data.split('\r\n')[0] || 'connection closed without an answer'));
    socket.on('error', (error) => resolve(`socket error: ${error.message}`));
  });
}

describe('dev IdP: a request target that is not a URL', () => {
  let idp: RunningDevIdp;

  beforeAll(async () => {
    idp = await startDevIdp({
      host: '127.0.0.1',
      port: 0,
      identities,
      logger: createLogger({ service: 'dev-idp-test', level: 'fatal' }),
      clients: [{ clientId: 'p', clientSecret: 'p-secret-0123456789', redirectUris: ['http://localhost:1/cb'], postLogoutRedirectUris: [], firstParty: true }],
    });
  });

  afterAll(async () => {
    await idp?.close();
  });

  // `new URL(req.url, base)` in the request listener throws for `//[` (a host that does not parse); thrown in a plain
  // node:http listener it is an uncaught exception: the real dev-idp process (apps/dev-idp/src/main.ts) exits.
  it('answers 400 and keeps serving', async () => {
    for (const target of ['//[', '//a b', '//:99999']) {
      expect({ target, status: await rawRequest(idp.port, `GET ${target} HTTP/1.1`) }).toEqual({ target, status: expect.stringMatching(/^HTTP\/1\.1 4\d\d/) });
    }
    expect((await fetch(`${idp.issuer}/healthz`)).status).toBe(200);
  });
});
