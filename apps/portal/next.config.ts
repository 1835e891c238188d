import { join } from 'node:path';
import type { NextConfig } from 'next';

const securityHeaders = [
  { key: 'X-Frame-Options', value: 'DENY' },
  { key: 'X-Content-Type-Options', value: 'nosniff' },
  { key: 'Referrer-Policy', value: 'strict-origin-when-cross-origin' },
  // Browsers take HSTS only over https, so it costs a plain-http development server nothing.
  { key: 'Strict-Transport-Security', value: 'max-age=31536000; includeSubDomains' },
  // No framing, plugins or <base> rewriting. Scripts are not restricted here: Next's inline bootstrap scripts would
  // need per-request nonces (form-action is left out too: it would block the redirect to the identity provider).
  { key: 'Content-Security-Policy', value: "frame-ancestors 'none'; object-src 'none'; base-uri 'self'" },
];

const nextConfig: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // The monorepo root: the portal compiles libs/portal/* and libs/shared/* from source (tsconfig paths).
  turbopack: { root: join(__dirname, '..', '..') },
  headers: async () => [{ source: '/:path*', headers: securityHeaders }],
};

export default nextConfig;
