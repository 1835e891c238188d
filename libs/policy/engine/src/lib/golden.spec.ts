import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { evaluate } from './evaluate';
import { loadSnapshot, serializeSnapshot } from './snapshot';
import type { PolicyInput } from './types';

/**
 * Golden cases: `<case>.policy.json` (source), `<case>.input.json` (one request), `<case>.decision.json`
 * (the expected decision, compared in full). Regenerate after an intended change with
 * `UPDATE_GOLDEN=1 npx vitest run libs/policy/engine/src/lib/golden.spec.ts` and review the diff.
 */
const dir = join(__dirname, '..', 'golden');
const read = (file: string): unknown => JSON.parse(readFileSync(join(dir, file), 'utf8'));
const cases = readdirSync(dir)
  .filter((file) => file.endsWith('.policy.json'))
  .map((file) => file.slice(0, -'.policy.json'.length))
  .sort();

describe('golden policy cases', () => {
  it('has a meaningful set of cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });

  it.each(cases)('%s', (name) => {
    const compiled = compile(read(`${name}.policy.json`));
    if (!compiled.ok) throw new Error(`${name} does not compile: ${JSON.stringify(compiled.errors)}`);
    const input = read(`${name}.input.json`) as PolicyInput;
    const decision = evaluate(compiled.snapshot, input);
    if (process.env['UPDATE_GOLDEN'] === '1') {
      writeFileSync(join(dir, `${name}.decision.json`), `${JSON.stringify(decision, null, 2)}\n`);
    }
    expect(decision).toEqual(read(`${name}.decision.json`));
    // The stored form decides the same way.
    expect(evaluate(loadSnapshot(serializeSnapshot(compiled.snapshot)), input)).toEqual(decision);
  });
});
