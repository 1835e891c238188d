import { describe, expect, it } from 'vitest';
import { compile } from './compile';
import { visibleTools } from './evaluate';
import { tenantSource } from './testing.fixtures';

const tools = [
  { upstream: 'tickets', name: 'create_ticket' },
  { upstream: 'tickets', name: 'delete_ticket' },
  { upstream: 'db', name: 'query' },
  { upstream: 'new', name: 'unlisted' },
];

describe('visibleTools', () => {
  it('hides tools under an unconditional deny, shows conditional allows, falls back to the default', () => {
    const result = compile(
      tenantSource([
        {
          id: 'r-tickets',
          subjects: [{ type: 'group', group: 'engineering' }],
          targets: [{ kind: 'tool', upstream: 'tickets', name: '*' }],
          effect: 'allow',
        },
        {
          id: 'r-no-delete',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'tool', upstream: '*', name: 'delete_*' }],
          effect: 'deny',
        },
        {
          id: 'r-db-small',
          subjects: [{ type: 'role', role: 'member' }],
          targets: [{ kind: 'tool', upstream: 'db', name: 'query' }],
          effect: 'allow',
          condition: 'size(args.sql) < 200',
        },
        {
          id: 'r-db-risky',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'tool', upstream: 'db', name: 'query' }],
          effect: 'deny',
          condition: 'args.sql.contains("DROP")',
        },
      ]),
    );
    if (!result.ok) throw new Error(JSON.stringify(result.errors));
    const names = (principal: { userId?: string; agentClientId?: string }) =>
      visibleTools(result.snapshot, principal, tools).map((t) => `${t.upstream}/${t.name}`);
    expect(names({ userId: 'u-carol' })).toEqual(['tickets/create_ticket', 'db/query']);
    expect(names({ userId: 'u-alice' })).toEqual([]);
    expect(names({})).toEqual([]);
    const open = compile(tenantSource([], 'allow'));
    if (!open.ok) throw new Error('compile failed');
    expect(visibleTools(open.snapshot, { agentClientId: 'ac-ci' }, tools)).toEqual(tools);
  });
});
