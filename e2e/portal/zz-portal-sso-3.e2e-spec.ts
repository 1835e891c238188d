import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@portcullis/shared/util-testing';

// The built portal (`next start`) over HTTP, no browser, as http.e2e-spec.ts: needs apps/portal/.next.
const portalDir = path.resolve(__dirname, '../../apps/portal');
const nextBin = path.resolve(portalDir, '../../node_modules/next/dist/bin/next');

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** A provider that serves only its discovery document (these requests never reach it). */
function startProvider(): Promise<Server> {
  const server = createServer((req, res) => {
    const self = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url !== '/.well-known/openid-configuration') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ issuer: self, authorization_endpoint: `${self}/auth`, token_endpoint: `${self}/token`, jwks_uri: `${self}/jwks`, response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] }));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('the built portal: /api/auth requests with a JSON body a visitor wrote', () => {
  let portal: ChildProcess | undefined;
  let output = '';
  let provider: Server | undefined;
  let portalUrl = '';

  beforeAll(async () => {
    if (!existsSync(path.join(portalDir, '.next/BUILD_ID'))) throw new Error('apps/portal/.next/BUILD_ID is missing: run `npx nx run portal:build` first');
    provider = await startProvider();
    const port = await freePort();
    portalUrl = `http://localhost:${port}`;
    portal = spawn(process.execPath, [nextBin, 'start', '--port', String(port), '--hostname', '127.0.0.1'], {
      cwd: portalDir,
      env: {
        PATH: process.env['PATH'] ?? '',
        HOME: process.env['HOME'] ?? '/tmp',
        NODE_ENV: 'production',
        NEXT_TELEMETRY_DISABLED: '1',
        NEXTAUTH_URL: portalUrl,
        NEXTAUTH_SECRET: randomBytes(32).toString('base64url'),
        PORTAL_OIDC_ISSUER: `http://127.0.0.1:${(provider.address() as AddressInfo).port}`,
        PORTAL_OIDC_CLIENT_SECRET: randomBytes(24).toString('base64url'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    portal.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    portal.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    await waitFor(
      async () => {
        if (portal?.exitCode !== null) throw new Error(`the portal exited (${portal?.exitCode}):\n${output}`);
        return (await fetch(`${portalUrl}/healthz`)).ok;
      },
      { timeoutMs: 60_000, intervalMs: 150, description: `${portalUrl}/healthz` },
    );
  }, 90_000);

  afterAll(async () => {
    if (portal && portal.exitCode === null) {
      const exited = once(portal, 'exit');
      portal.kill('SIGTERM');
      await exited;
    }
    provider?.close();
  });

  const postJson = (route: string, body: string) =>
    fetch(`${portalUrl}/api/auth/${route}`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/json' }, body });

  it('answers a callbackUrl that is not a string without a 500 (the redirect callback threw on it)', async () => {
    for (const body of ['{"callbackUrl":1}', '{"callbackUrl":{"a":1}}', '{"callbackUrl":["/tenants"]}', '{"callbackUrl":true}']) {
      for (const route of ['session', 'signout', 'signin/oidc', 'csrf']) {
        const { status } = await postJson(route, body);
        expect({ route, body, status }).toEqual({ route, body, status: expect.any(Number) });
        expect({ route, body, serverError: status >= 500 }).toEqual({ route, body, serverError: false });
      }
    }
  });

  it('answers a body that is not JSON at all without a 500 (next-auth parses it unguarded)', async () => {
    for (const route of ['session', 'signout', 'signin/oidc']) {
      const { status } = await postJson(route, '{not json');
      expect({ route, serverError: status >= 500 }).toEqual({ route, serverError: false });
    }
  });

  it('logged no error for any of these requests', () => {
    expect(output).not.toMatch(/TypeError|SyntaxError|\[next-auth\]\[error\]/);
  });
});
