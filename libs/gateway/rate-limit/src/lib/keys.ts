import { createHash } from 'node:crypto';
import type { RateLimitScope } from '@portcullis/contracts/policy-ir';
import { canonicalResourceUri, foldCaseWide } from '@portcullis/policy/engine';

/** Who and what a call is, for the purpose of counting it. */
export interface RateLimitSubject {
  readonly tenantId: string;
  readonly userId: string | null;
  readonly agentClientId: string | null;
  readonly tool: string | null;
}

/**
 * Rule ids kept as they are in a counter key; any other is percent-encoded (so it holds no `:` or `$`, and cannot
 * equal a kept one). Rule ids are the tenant's to write: written raw, `a:t` scoped by user and `a` scoped by tenant and
 * user shared one counter, and a rule named `$tenant` shared the tenant-wide limit's.
 */
const SAFE_RULE_ID = /^[A-Za-z0-9_.-]+$/;

/**
 * The rule id under which a tenant's own limit (tenant settings) is counted: empty, which no rule id is (ids are at
 * least one character), keyed as `$tenant`, which no rule id is keyed as (a `$` is always percent-encoded). A rule the
 * tenant names `$tenant` used to share the tenant-wide limit's counters.
 */
export const TENANT_LIMIT_RULE = '';

/**
 * The counter key of one limit for one call: tenant, the rule, then each scope part in the order the
 * rule lists it. A scope part the call does not have (no user on an agent-key call) counts under `-`,
 * so "per user" limits still bound anonymous agent traffic as one bucket.
 */
export function counterKey(subject: RateLimitSubject, ruleId: string, scope: readonly RateLimitScope[]): string {
  let key = `${subject.tenantId}:${ruleId === TENANT_LIMIT_RULE ? '$tenant' : SAFE_RULE_ID.test(ruleId) ? ruleId : encodeURIComponent(ruleId)}`;
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

/** Longest name kept as it is in a counter key; a longer one (a resource URI, up to 8 KiB) is keyed by its hash. */
export const MAX_KEYED_NAME_LENGTH = 200;

/**
 * The `tool` part of a subject: the upstream's id (two upstreams' same-named tools stay apart), the kind and the name.
 * A resource's name is its URI, the agent's to choose and up to 8 KiB long: beyond `MAX_KEYED_NAME_LENGTH` it is keyed
 * by SHA-256 instead, so every counter key stays short in Redis however long the URIs an agent reads.
 */
export function targetKey(upstreamId: string, kind: string, name: string): string {
  // Every spelling of one resource URI counts as one (the policy engine matches them as one too), and so do names that
  // differ only in case, folded as the engine compares names for restrictions (`foldCaseWide`: `ſ` is `s`, composed and
  // decomposed accents are one, `ß` is `ss`): an upstream that looks names up case-insensitively runs `ECHO` as `echo`,
  // and a limit per tool must not grow by one budget per spelling (restrictions err wide, as deny rules do). Before,
  // `straße` and `strasse` had a counter each, though the engine gave both the limit.
  const keyed = foldCaseWide(kind === 'resource' ? canonicalResourceUri(name) : name);
  const part = keyed.length <= MAX_KEYED_NAME_LENGTH ? keyed : `#${createHash('sha256').update(keyed).digest('base64url')}`;
  return `${upstreamId}/${kind}/${part}`;
}
