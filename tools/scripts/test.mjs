#!/usr/bin/env node
// `npm test`: everything CI runs, in order, stopping at the first failing stage.
//   npm test                 all stages
//   npm test -- unit int     only the named stages (lint, typecheck, drift, build, unit, int, e2e)
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { checkServices } from './lib/services.mjs';
import { bin, repoRoot, run } from './lib/run.mjs';

const ALL = ['lint', 'typecheck', 'drift', 'build', 'unit', 'int', 'e2e'];
const requested = process.argv.slice(2).filter((arg) => !arg.startsWith('-'));
const unknown = requested.filter((stage) => !ALL.includes(stage));
if (unknown.length > 0) {
  console.error(`unknown stage(s): ${unknown.join(', ')}; choose from ${ALL.join(', ')}`);
  process.exit(2);
}
const stages = requested.length > 0 ? ALL.filter((stage) => requested.includes(stage)) : ALL;

const adminUrl = process.env.DATABASE_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const steps = {
  // The module-boundaries rule reads Nx's project graph; on a fresh clone it must be computed first,
  // or the rule is silently skipped.
  lint: async () => (await run(bin('nx'), ['show', 'projects'], { spawn: { stdio: 'ignore' } })) || run(bin('eslint'), ['.', '--max-warnings=0']),
  typecheck: async () =>
    (await run(bin('tsc'), ['-p', 'tsconfig.json'])) ||
    (await run(bin('tsc'), ['-p', 'apps/portal/tsconfig.json', '--noEmit'])) ||
    // The portal's libs with their specs (the portal's own tsconfig leaves specs out of the Next build).
    run(bin('tsc'), ['-p', 'libs/portal/auth/tsconfig.json']),
  drift: () => run(process.execPath, ['tools/scripts/db.mjs', 'drift']),
  build: () => run(bin('nx'), ['run-many', '-t', 'build', '--outputStyle=static']),
  tests: (projects) => {
    const report = path.join(repoRoot, 'tmp/vitest-report.json');
    rmSync(report, { force: true });
    return run(bin('vitest'), [
      'run',
      ...projects.flatMap((project) => ['--project', project]),
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${report}`,
    ]);
  },
};

function summarise() {
  try {
    const report = JSON.parse(readFileSync(path.join(repoRoot, 'tmp/vitest-report.json'), 'utf8'));
    const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
    return { passed: report.numPassedTests, failed: report.numFailedTests, skipped, total: report.numTotalTests };
  } catch {
    return undefined;
  }
}

mkdirSync(path.join(repoRoot, 'tmp'), { recursive: true });
const started = Date.now();
const needsServices = stages.some((stage) => ['drift', 'int', 'e2e'].includes(stage));
if (needsServices && !(await checkServices({ databaseUrl: adminUrl, redisUrl }))) process.exit(1);

let failedStage;
for (const stage of stages.filter((s) => !['unit', 'int', 'e2e'].includes(s))) {
  console.log(`\n▶ ${stage}`);
  const t0 = Date.now();
  if ((await steps[stage]()) !== 0) {
    failedStage = stage;
    break;
  }
  console.log(`✔ ${stage} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

const testProjects = stages.filter((s) => ['unit', 'int', 'e2e'].includes(s));
let summary;
if (!failedStage && testProjects.length > 0) {
  console.log(`\n▶ tests: ${testProjects.join(', ')}`);
  const code = await steps.tests(testProjects);
  summary = summarise();
  if (code !== 0) failedStage = 'tests';
}

const seconds = ((Date.now() - started) / 1000).toFixed(0);
if (summary) {
  console.log(`\ntests: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
}
if (failedStage) {
  console.error(`\n✘ ${failedStage} failed after ${seconds} s`);
  process.exit(1);
}
if (summary && summary.total === 0) {
  console.error('\n✘ no test ran');
  process.exit(1);
}
console.log(`\n✔ all stages passed in ${seconds} s`);
