import { join } from 'node:path';
import type { NextConfig } from 'next';

const securityHeaders = [
  { key: 'X-Frame-Options', value: 'DENY' },
  { key: 'X-Content-Type-Options', value: 'nosniff' },
  { key: 'Referrer-Policy', value: 'strict-origin-when-cross-origin' },
];

const nextConfig: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // The monorepo root: the portal compiles libs/portal/* and libs/shared/* from source (tsconfig paths).
  turbopack: { root: join(__dirname, '..', '..') },
  headers: async () => [{ source: '/:path*', headers: securityHeaders }],
};

export default nextConfig;
