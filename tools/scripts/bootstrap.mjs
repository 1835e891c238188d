#!/usr/bin/env node
// `npm run bootstrap -- --email <email> --tenant <slug> [--name <name>]`: the first platform admin, the first tenant
// and a short-lived access token (on stdout). Refuses to run a second time. `--token-for <email>` mints a new token
// for an existing platform admin. Builds the control plane first when its bundle is missing.
//
// Environment: DATABASE_SYSTEM_URL (default: the local system role; making a platform admin is not the application
// role's to do), CONTROL_PLANE_JWT_* as for the control plane.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { bin, repoRoot, run } from './lib/run.mjs';

// As `npm start`: a local .env is read (the environment wins over it).
if (existsSync(path.join(repoRoot, '.env'))) process.loadEnvFile(path.join(repoRoot, '.env'));

const entry = path.join(repoRoot, 'dist/apps/control-plane/bootstrap.js');
if (!existsSync(entry)) {
  console.error('building the control plane…');
  const built = await run(bin('nx'), ['run', 'control-plane:build', '--outputStyle=static'], { spawn: { stdio: ['ignore', 2, 2] } });
  if (built !== 0) process.exit(built);
}
const code = await run(process.execPath, [entry, ...process.argv.slice(2)], {
  env: { DATABASE_SYSTEM_URL: process.env.DATABASE_SYSTEM_URL ?? 'postgresql://portcullis_system@127.0.0.1:5432/portcullis' },
});
process.exit(code);
