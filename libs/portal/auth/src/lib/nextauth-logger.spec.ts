import { createRequire } from 'node:module';
import path from 'node:path';
import { format } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
// next-auth's own logger: core/index.js calls setLogger(authOptions.logger, authOptions.debug) on every request, and
// core/lib/oauth/callback.js logs `GET /api/auth/callback/oidc?error=<anything>` through it before any portal code.
// (Not in next-auth's package exports: loaded by path, the same module instance core/index.js uses.)
const { default: nextAuthLogger, setLogger } = createRequire(__filename)(
  path.resolve(__dirname, '../../../../../node_modules/next-auth/utils/logger.js'),
) as { default: { error(code: string, metadata: unknown): void }; setLogger(logger?: unknown, debug?: boolean): void };
import { createLogger } from '@portcullis/shared/util-logger';
import { createAuthOptions } from './auth-options';

const portalLines: string[] = [];
const logger = createLogger({ service: 'portal', level: 'info', destination: { write: (line: string) => portalLines.push(line) } });
const options = createAuthOptions(
  { issuer: 'http://127.0.0.1:9', clientId: 'portal', clientSecret: 'secret', scopes: ['openid'], sessionSecret: 'x'.repeat(32), sessionMaxAgeSeconds: 3_600 },
  logger,
  { revoke: async () => undefined, isRevoked: async () => false },
);

afterEach(() => vi.restoreAllMocks());

describe('next-auth logs of the portal', () => {
  // Found by review: next-auth printed its errors with console.error, a visitor's `?error=` text as it came.
  it('never write a visitor-chosen line into the log stream (GET /api/auth/callback/oidc?error=...)', () => {
    const printed: string[] = [];
    for (const level of ['error', 'warn', 'log', 'info', 'debug'] as const) {
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => void printed.push(format(...args)));
    }
    // What an anonymous visitor's `?error=` becomes in next-auth (core/lib/oauth/callback.js), as the portal runs it.
    setLogger(options.logger, options.debug);
    const forged = '{"level":50,"service":"portal","event":"sign-out.revocation-failed","msg":"forged"}';
    nextAuthLogger.error('OAUTH_CALLBACK_HANDLER_ERROR', { error: new Error(`x\n${forged}\n`), error_description: undefined, providerId: 'oidc' } as never);

    const lines = [...printed.join('\n').split('\n'), ...portalLines.join('').split('\n')].filter((line) => line.trim() !== '');
    // The visitor's text must not become a log line of its own (one JSON object per line is what collectors read).
    expect(lines).not.toContain(forged);
    // And what next-auth logs goes through the portal's structured logger, as ADR 0004 says the portal logs.
    expect(printed).toEqual([]);
    const entries = portalLines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(entries).toEqual([expect.objectContaining({ event: 'next-auth.error', code: 'OAUTH_CALLBACK_HANDLER_ERROR', msg: 'next-auth reported an error' })]);
  });
});
