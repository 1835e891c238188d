import type { PolicyRuleSource, PolicySource } from '@portcullis/contracts/policy-ir';

/** A small tenant used by the engine's specs. */
export function tenantSource(rules: PolicyRuleSource[], defaultEffect: 'allow' | 'deny' = 'deny'): PolicySource {
  return {
    tenantId: 't-acme',
    version: 1,
    defaultEffect,
    directory: {
      members: [
        { userId: 'u-alice', role: 'owner' },
        { userId: 'u-bob', role: 'admin' },
        { userId: 'u-carol', role: 'member' },
      ],
      groups: [
        { name: 'engineering', members: ['u-carol', 'u-bob'] },
        { name: 'support', members: ['u-alice'] },
      ],
      agentClients: [{ id: 'ac-ci' }, { id: 'ac-ide' }],
    },
    upstreams: [
      {
        name: 'tickets',
        tools: [
          { kind: 'tool', name: 'create_ticket' },
          { kind: 'tool', name: 'delete_ticket' },
        ],
      },
      { name: 'db', tools: [{ kind: 'tool', name: 'query' }] },
    ],
    rules,
  };
}
