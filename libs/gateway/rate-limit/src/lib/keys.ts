import type { RateLimitScope } from '@portcullis/contracts/policy-ir';

/** Who and what a call is, for the purpose of counting it. */
export interface RateLimitSubject {
  readonly tenantId: string;
  readonly userId: string | null;
  readonly agentClientId: string | null;
  readonly tool: string | null;
}

/**
 * The counter key of one limit for one call: tenant, the rule, then each scope part in the order the
 * rule lists it. A scope part the call does not have (no user on an agent-key call) counts under `-`,
 * so "per user" limits still bound anonymous agent traffic as one bucket.
 */
export function counterKey(subject: RateLimitSubject, ruleId: string, scope: readonly RateLimitScope[]): string {
  let key = `${subject.tenantId}:${ruleId}`;
  for (const part of scope) {
    switch (part) {
      case 'tenant':
        key += ':t';
        break;
      case 'user':
        key += `:u=${subject.userId ?? '-'}`;
        break;
      case 'agent_client':
        key += `:a=${subject.agentClientId ?? '-'}`;
        break;
      case 'tool':
        key += `:x=${subject.tool ?? '-'}`;
        break;
    }
  }
  return key;
}
