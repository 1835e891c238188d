import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { repoRoot } from './app-process';

/** Debian's Chromium (`apt-get install -y chromium`); Playwright never downloads a browser here. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Flags that keep Chromium quiet and offline on CI machines (docs: shared STACK.md, Chromium). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Where e2e runs keep browser profiles, caches and screenshots (git-ignored). */
export const e2eTmpDir = path.join(repoRoot, 'tmp', 'e2e');

export interface Browser {
  readonly context: BrowserContext;
  close(): Promise<void>;
}

/**
 * Headless Chromium with a fresh profile under tmp/e2e, and XDG cache/config pointed there too so
 * nothing lands in the home directory.
 */
export async function launchBrowser(name: string): Promise<Browser> {
  mkdirSync(e2eTmpDir, { recursive: true });
  const runDir = mkdtempSync(path.join(e2eTmpDir, `${name}-`));
  const xdgCache = path.join(runDir, 'cache');
  const xdgConfig = path.join(runDir, 'config');
  mkdirSync(xdgCache, { recursive: true });
  mkdirSync(xdgConfig, { recursive: true });
  const context = await chromium.launchPersistentContext(path.join(runDir, 'profile'), {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: CHROMIUM_ARGS,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: runDir,
      XDG_CACHE_HOME: xdgCache,
      XDG_CONFIG_HOME: xdgConfig,
    },
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(runDir, { recursive: true, force: true });
    },
  };
}
