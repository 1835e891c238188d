#!/usr/bin/env node
// `npm start`: the whole local stack in one command. Checks Postgres and Redis, migrates and seeds the
// database, builds every app, starts them, waits until each /readyz is green, and prints where to go.
// Ctrl-C (or SIGTERM) stops every app gracefully.
import { spawn } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pollReady } from './lib/harness.mjs';
import { checkServices } from './lib/services.mjs';
import { baseEnv, bin, repoRoot, run } from './lib/run.mjs';
import { stackEnv } from './lib/stack-env.mjs';

if (existsSync(path.join(repoRoot, '.env'))) process.loadEnvFile(path.join(repoRoot, '.env'));

/**
 * Development-only secrets, made once per checkout and kept in tmp/ (ignored by git), so sealed upstream
 * secrets and portal sessions survive restarts. `.env` or the environment override them.
 */
function localSecrets() {
  const file = path.join(repoRoot, 'tmp/dev-secrets.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const secrets = {
    NEXTAUTH_SECRET: randomBytes(32).toString('base64url'),
    PORTAL_OIDC_CLIENT_SECRET: randomBytes(24).toString('base64url'),
    DEV_IDP_COOKIE_SECRET: randomBytes(32).toString('base64url'),
    SECRETS_KEYRING: `local:${randomBytes(32).toString('base64')}`,
    CONTROL_PLANE_JWT_SECRET: randomBytes(32).toString('base64url'),
  };
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}
const secrets = localSecrets();

/** The audit worker's development signing key (tmp/audit-signing.key, its public half beside it as .pub). */
function localAuditSigningKey() {
  const file = path.join(repoRoot, 'tmp/audit-signing.key');
  const pub = path.join(repoRoot, 'tmp/audit-signing.pub');
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  // The public half, from the private one (so a deleted .pub comes back).
  if (!existsSync(pub)) writeFileSync(pub, createPublicKey(readFileSync(file, 'utf8')).export({ type: 'spki', format: 'pem' }));
  return file;
}

const env = stackEnv(process.env, {
  secrets,
  auditSigningKeyFile: localAuditSigningKey(),
  auditVerifyKeysFile: path.join(repoRoot, 'tmp/audit-signing.pub'),
});

const urls = {
  portal: 'http://localhost:3000',
  controlPlane: 'http://127.0.0.1:3100',
  gateway: 'http://127.0.0.1:3200',
  auditWorker: 'http://127.0.0.1:3300',
  devIdp: 'http://localhost:3400',
  demoUpstream: 'http://127.0.0.1:3500',
};

const apps = [
  { name: 'dev-idp', cmd: [process.execPath, 'dist/apps/dev-idp/main.js'], ready: `${urls.devIdp}/readyz` },
  { name: 'demo-upstreams', cmd: [process.execPath, 'dist/apps/demo-upstreams/main.js'], ready: `${urls.demoUpstream}/readyz` },
  { name: 'control-plane', cmd: [process.execPath, 'dist/apps/control-plane/main.js'], ready: `${urls.controlPlane}/readyz` },
  { name: 'gateway', cmd: [process.execPath, 'dist/apps/gateway/main.js'], ready: `${urls.gateway}/readyz` },
  { name: 'audit-worker', cmd: [process.execPath, 'dist/apps/audit-worker/main.js'], ready: `${urls.auditWorker}/readyz` },
  {
    name: 'portal',
    cmd: [bin('next'), 'start', '--port', '3000', '--hostname', 'localhost'],
    cwd: 'apps/portal',
    // `next start` serves the production build; Next refuses to mix it with NODE_ENV=development.
    env: { NODE_ENV: 'production' },
    ready: `${urls.portal}/readyz`,
  },
];

const children = new Map();
let stopping = false;

function stopAll(exitCode) {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping every app…');
  for (const child of children.values()) child.kill('SIGTERM');
  const deadline = setTimeout(() => {
    for (const child of children.values()) child.kill('SIGKILL');
    process.exit(exitCode || 1);
  }, 15_000);
  const check = setInterval(() => {
    if ([...children.values()].every((child) => child.exitCode !== null || child.signalCode !== null)) {
      clearInterval(check);
      clearTimeout(deadline);
      console.log('all apps stopped.');
      process.exit(exitCode);
    }
  }, 100);
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));

function prefixLines(name, stream, target) {
  let buffered = '';
  stream.on('data', (chunk) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) target.write(`[${name}] ${line}\n`);
  });
}

/** True once `url` answers 2xx; false after `timeoutMs` or once the stack is stopping. */
async function waitReady(url, timeoutMs) {
  const state = await pollReady(url, { timeoutMs, intervalMs: 300, requestTimeoutMs: 2_000, stop: () => stopping });
  return state === 'ready';
}

async function step(title, fn) {
  console.log(`\n▶ ${title}`);
  const code = await fn();
  if (code !== 0) {
    console.error(`✘ ${title} failed (exit ${code})`);
    process.exit(1);
  }
}

if (!(await checkServices({ databaseUrl: env.DATABASE_ADMIN_URL, redisUrl: env.REDIS_URL }))) process.exit(1);

await step('migrating the database', () => run(process.execPath, ['tools/scripts/db.mjs', 'migrate'], { env }));
await step('seeding demo data', () => run(process.execPath, ['tools/scripts/db.mjs', 'seed'], { env }));
if (!process.argv.includes('--no-build')) {
  await step('building every app', () => run(bin('nx'), ['run-many', '-t', 'build', '--outputStyle=static'], { env }));
}

console.log('\n▶ starting apps');
const started = Date.now();
for (const app of apps) {
  const [command, ...args] = app.cmd;
  const child = spawn(command, args, {
    cwd: path.join(repoRoot, app.cwd ?? '.'),
    // NODE_ENV only for the running apps: `next build` must not see development.
    env: baseEnv({ NODE_ENV: 'development', ...env, ...app.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.set(app.name, child);
  prefixLines(app.name, child.stdout, process.stdout);
  prefixLines(app.name, child.stderr, process.stderr);
  child.once('exit', (code, signal) => {
    if (!stopping) {
      console.error(`\n✘ ${app.name} exited unexpectedly (${signal ?? `exit ${code}`}); stopping the stack`);
      stopAll(1);
    }
  });
}

const readiness = await Promise.all(apps.map(async (app) => [app.name, await waitReady(app.ready, 90_000)]));
const notReady = readiness.filter(([, ok]) => !ok).map(([name]) => name);
if (notReady.length > 0) {
  console.error(`\n✘ not ready within 90 s: ${notReady.join(', ')}`);
  stopAll(1);
} else {
  const identities = JSON.parse(readFileSync(path.join(repoRoot, 'tools/demo/identities.json'), 'utf8'));
  const took = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`
✔ Portcullis is up (apps ready in ${took} s)

  Portal (sign in via SSO)    ${urls.portal}
  Control-plane API docs      ${urls.controlPlane}/api/docs
  Gateway (MCP endpoints)     ${urls.gateway}/t/<tenant>/mcp   e.g. ${urls.gateway}/t/acme/mcp
  Gateway metrics             ${env.GATEWAY_METRICS_PORT ? `http://${env.GATEWAY_METRICS_HOST ?? '127.0.0.1'}:${env.GATEWAY_METRICS_PORT}/metrics` : 'off (GATEWAY_METRICS_PORT is empty)'}
  Control-plane metrics       ${env.CONTROL_PLANE_METRICS_PORT ? `http://${env.CONTROL_PLANE_METRICS_HOST ?? '127.0.0.1'}:${env.CONTROL_PLANE_METRICS_PORT}/metrics` : 'off (CONTROL_PLANE_METRICS_PORT is empty)'}
  Dev OpenID provider         ${urls.devIdp}/.well-known/openid-configuration
  Demo upstream MCP server    ${urls.demoUpstream}/mcp
  Audit worker health         ${urls.auditWorker}/readyz   metrics ${urls.auditWorker}/metrics

  Demo logins (password: ${identities.password})
${identities.users
  .map((u) => `    ${u.email.padEnd(32)} ${u.memberships.map((m) => `${m.role}@${m.tenant}`).join(', ')}`)
  .join('\n')}

  Tenant API keys were printed by the seed step above (only when first created).
  Press Ctrl-C to stop everything.
`);
}
