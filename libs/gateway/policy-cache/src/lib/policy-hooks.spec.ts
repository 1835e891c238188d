import type { PolicyRuleSource } from '@portcullis/contracts/policy-ir';
import { composeHooks, GATEWAY_RPC, GatewayRequestError, NO_STREAM, type Admission, type ApprovalGate, type RequestInfo } from '@portcullis/gateway/core';
import type { SessionRecord, UpstreamConfig } from '@portcullis/gateway/mcp';
import { compile, type PolicySnapshot } from '@portcullis/policy/engine';
import { describe, expect, it } from 'vitest';
import { policyHooks, principalOf, type SnapshotLookup } from './policy-hooks';

const TENANT = 'tenant-a';

function snapshotOf(rules: PolicyRuleSource[], defaultEffect: 'allow' | 'deny' = 'deny', version = 3): PolicySnapshot {
  const result = compile({
    tenantId: TENANT,
    version,
    defaultEffect,
    directory: {
      members: [{ userId: 'u-carol', role: 'member' }],
      groups: [{ name: 'support', members: ['u-carol'] }],
      agentClients: [{ id: 'ac-ci' }, { id: 'ac-ide' }],
    },
    upstreams: [],
    rules,
  });
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.snapshot;
}

const lookup = (snapshot?: PolicySnapshot): SnapshotLookup => ({ get: (tenantId) => (tenantId === TENANT ? snapshot : undefined) });

const upstream = (name: string): UpstreamConfig => ({
  id: `id-${name}`,
  tenantId: TENANT,
  name,
  toolPrefix: `${name}p`,
  transport: 'streamable_http',
  url: 'http://127.0.0.1:1/mcp',
  headers: {},
  command: null,
  args: [],
  env: {},
  connectTimeoutMs: 1_000,
  callTimeoutMs: 1_000,
  version: 1,
});

const record = (principalKind: 'agent_client' | 'user', principalId: string, tenantId = TENANT): SessionRecord => ({
  id: 'session',
  tenantId,
  principalKind,
  principalId,
  protocolVersion: '2025-11-25',
  clientInfo: null,
  clientCapabilities: {},
  upstreams: {},
  createdAt: 0,
});

const ci = record('agent_client', 'ac-ci');
const ide = record('agent_client', 'ac-ide');
const carol = record('user', 'u-carol');

function call(session: SessionRecord, kind: 'tool' | 'prompt' | 'resource', upstreamName: string, name: string, args?: Record<string, unknown>): RequestInfo {
  return {
    record: session,
    method: kind === 'tool' ? 'tools/call' : kind === 'prompt' ? 'prompts/get' : 'resources/read',
    requestId: 1,
    traceId: 'trace',
    startedAt: Date.parse('2026-12-01T10:00:00Z'),
    target: { upstream: upstream(upstreamName), kind, name },
    ...(args ? { arguments: args } : {}),
  };
}

/** The policy's deciding hook and its hold, composed as the gateway composes them (other hooks between them). */
const admit = (hooks: ReturnType<typeof policyHooks>, info: RequestInfo) =>
  composeHooks([hooks, hooks.hold]).admit?.(info, NO_STREAM, new AbortController().signal, undefined);

function refusal(fn: () => unknown): GatewayRequestError {
  try {
    fn();
  } catch (error) {
    if (error instanceof GatewayRequestError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

const RULES: PolicyRuleSource[] = [
  {
    id: 'ci-tickets',
    subjects: [{ type: 'agent_client', agentClientId: 'ac-ci' }],
    targets: [{ kind: 'tool', upstream: 'tickets', name: '*' }],
    effect: 'allow',
    rateLimit: { scope: ['agent_client'], requests: 10, windowSeconds: 60 },
  },
  {
    id: 'nobody-deletes',
    subjects: [{ type: 'authenticated' }],
    targets: [{ kind: 'tool', upstream: 'tickets', name: 'delete_*' }],
    effect: 'deny',
  },
  {
    id: 'big-refunds-need-a-human',
    subjects: [{ type: 'authenticated' }],
    targets: [{ kind: 'tool', upstream: 'tickets', name: 'refund' }],
    effect: 'require_approval',
    condition: 'args.amount > 100.0',
  },
  {
    id: 'support-reads-kb',
    subjects: [{ type: 'group', group: 'support' }],
    targets: [
      { kind: 'resource', upstream: 'kb', uri: 'kb://public/**' },
      { kind: 'prompt', upstream: 'kb', name: 'summarise' },
    ],
    effect: 'allow',
  },
];

describe('policyHooks.filter', () => {
  const hooks = policyHooks(lookup(snapshotOf(RULES)));
  const tools = [{ name: 'create_ticket', description: 'x' }, { name: 'delete_ticket' }, { name: 'refund' }, { title: 'nameless' }];

  it('lists per subject: allowed and approvable tools, never a tool an unconditional deny covers', () => {
    expect(hooks.filter?.(ci, 'tool', upstream('tickets'), tools).map((t) => t['name'])).toEqual(['create_ticket', 'refund']);
    // ac-ide has no allow rule; the refund rule (require_approval, conditional) still makes refund callable for it.
    expect(hooks.filter?.(ide, 'tool', upstream('tickets'), tools).map((t) => t['name'])).toEqual(['refund']);
    // Items are passed through untouched (same objects, same order).
    expect(hooks.filter?.(ci, 'tool', upstream('tickets'), tools)[0]).toBe(tools[0]);
  });

  it('filters prompts by name and resources by URI, keeps templates where some resource may be read, and lists nothing without a snapshot', () => {
    const resources = [{ uri: 'kb://public/a', name: 'A' }, { uri: 'kb://private/b', name: 'B' }];
    expect(hooks.filter?.(carol, 'resource', upstream('kb'), resources).map((r) => r['uri'])).toEqual(['kb://public/a']);
    expect(hooks.filter?.(ci, 'resource', upstream('kb'), resources)).toEqual([]);
    expect(hooks.filter?.(carol, 'prompt', upstream('kb'), [{ name: 'summarise' }, { name: 'other' }]).map((p) => p['name'])).toEqual(['summarise']);
    const templates = [{ uriTemplate: 'kb://public/{id}' }];
    expect(hooks.filter?.(carol, 'resourceTemplate', upstream('kb'), templates)).toBe(templates);
    // ac-ci may read nothing on kb: its templates would only tell it of URIs every read of which is denied.
    expect(hooks.filter?.(ci, 'resourceTemplate', upstream('kb'), templates)).toEqual([]);
    // Tools on an upstream do not make its templates of use: they are for reads.
    expect(hooks.filter?.(ci, 'resourceTemplate', upstream('tickets'), templates)).toEqual([]);
    const none = policyHooks(lookup(undefined));
    expect(none.filter?.(ci, 'tool', upstream('tickets'), tools)).toEqual([]);
    expect(none.filter?.(ci, 'resourceTemplate', upstream('kb'), templates)).toEqual([]);
  });
});

describe('policyHooks.instructions', () => {
  const hooks = policyHooks(lookup(snapshotOf(RULES)));
  const text = 'Search before creating a ticket.';

  it('relays an upstream\'s instructions only to a principal who may use something on it', () => {
    expect(hooks.instructions?.(ci, upstream('tickets'), text)).toBe(text);
    // ac-ide holds no allow on tickets, but the refund rule (require_approval for everyone) names a tool there.
    expect(hooks.instructions?.(ide, upstream('tickets'), text)).toBe(text);
    expect(hooks.instructions?.(carol, upstream('kb'), text)).toBe(text);
    expect(hooks.instructions?.(ci, upstream('kb'), text)).toBeUndefined();
    expect(hooks.instructions?.(carol, upstream('billing'), text)).toBeUndefined();
  });

  it('relays none for a tenant without a snapshot, and all under a default allow with nothing closed', () => {
    expect(policyHooks(lookup(undefined)).instructions?.(ci, upstream('tickets'), text)).toBeUndefined();
    expect(policyHooks(lookup(snapshotOf([], 'allow'))).instructions?.(ide, upstream('billing'), text)).toBe(text);
  });
});

describe('policyHooks.alsoReadable', () => {
  const hooks = policyHooks(
    lookup(
      snapshotOf([
        { id: 'files', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/**' }], effect: 'allow' },
        {
          id: 'secrets-from-the-office-only',
          subjects: [{ type: 'authenticated' }],
          targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/secret/**' }],
          effect: 'deny',
          condition: '!inCidr(request.ip, "10.1.0.0/16")',
        },
        { id: 'payroll-needs-a-human', subjects: [{ type: 'authenticated' }], targets: [{ kind: 'resource', upstream: 'files', uri: 'file:///srv/payroll/**' }], effect: 'require_approval' },
      ]),
    ),
  );
  const readOf = (ip: string): RequestInfo => ({ ...call(ci, 'resource', 'files', 'file:///srv'), clientIp: ip });

  it('passes an item of another URI only where this request could read that URI outright', () => {
    expect(hooks.alsoReadable?.(readOf('10.1.2.3'), 'file:///srv/docs/readme.md')).toBe(true);
    // A conditional deny decides with the reading request's address, as a read of the file itself would.
    expect(hooks.alsoReadable?.(readOf('10.1.2.3'), 'file:///srv/secret/key.pem')).toBe(true);
    expect(hooks.alsoReadable?.(readOf('192.0.2.7'), 'file:///srv/secret/key.pem')).toBe(false);
    // What a person would have to approve is not handed over through its parent.
    expect(hooks.alsoReadable?.(readOf('10.1.2.3'), 'file:///srv/payroll/2026.csv')).toBe(false);
    // Outside every rule: the default deny.
    expect(hooks.alsoReadable?.(readOf('10.1.2.3'), 'file:///etc/passwd')).toBe(false);
  });

  it('passes none for a tenant without a snapshot', () => {
    expect(policyHooks(lookup(undefined)).alsoReadable?.(readOf('10.1.2.3'), 'file:///srv/docs/readme.md')).toBe(false);
  });
});

describe('policyHooks.upstreamMessage', () => {
  const hooks = policyHooks(lookup(snapshotOf(RULES)));
  const refused = (check: () => void): unknown => {
    try {
      check();
      return undefined;
    } catch (error) {
      return error;
    }
  };

  it('lets an upstream talk to the agent outside a call only where the principal may use something on it', () => {
    expect(refused(() => hooks.upstreamMessage?.(ci, upstream('tickets'), 'roots/list'))).toBeUndefined();
    expect(refused(() => hooks.upstreamMessage?.(carol, upstream('kb'), 'notifications/message'))).toBeUndefined();
    for (const [who, where] of [[ci, 'kb'], [carol, 'billing']] as const) {
      const error = refused(() => hooks.upstreamMessage?.(who, upstream(where), 'sampling/createMessage'));
      expect(error).toBeInstanceOf(GatewayRequestError);
      expect(error).toMatchObject({ rpcCode: GATEWAY_RPC.POLICY_DENIED });
    }
  });

  it('keeps every upstream from the agent for a tenant without a snapshot', () => {
    expect(refused(() => policyHooks(lookup(undefined)).upstreamMessage?.(ci, upstream('tickets'), 'elicitation/create'))).toBeInstanceOf(GatewayRequestError);
  });
});

describe('policyHooks.admit', () => {
  const hooks = policyHooks(lookup(snapshotOf(RULES)));

  it('admits an allowed call synchronously with the decision, rules, snapshot version and rate limits', () => {
    const admission = admit(hooks, call(ci, 'tool', 'tickets', 'create_ticket')) as Admission;
    expect(admission).not.toBeInstanceOf(Promise);
    expect(admission).toMatchObject({ decision: 'allow', ruleIds: ['ci-tickets'], snapshotVersion: 3 });
    expect(admission.reason).toContain('ci-tickets');
    expect(admission.rateLimits).toEqual([{ ruleId: 'ci-tickets', rateLimit: { scope: ['agent_client'], requests: 10, windowSeconds: 60, maxConcurrent: null } }]);
    // The same question again: the engine's remembered decision, and one shared, frozen admission for it.
    const again = admit(hooks, call(ci, 'tool', 'tickets', 'create_ticket')) as Admission;
    expect(again).toBe(admission);
    expect(Object.isFrozen(admission)).toBe(true);
  });

  it('refuses a denied call with POLICY_DENIED, the agent message and the snapshot version, never the rule', () => {
    const error = refusal(() => admit(hooks, call(ci, 'tool', 'tickets', 'delete_ticket')));
    expect(error.rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(error.outcome).toBe('denied');
    expect(error.data).toEqual({ snapshotVersion: 3 });
    expect(error.message).toBe('Tool "delete_ticket" on "ticketsp" was denied. This request is not permitted by the tenant\'s policy.');
    expect(error.message).not.toContain('nobody-deletes');
    // Default deny: no rule for ac-ide on create_ticket.
    expect(refusal(() => admit(hooks, call(ide, 'tool', 'tickets', 'create_ticket'))).rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
    // Resources are decided on the URI, prompts on the name.
    expect(refusal(() => admit(hooks, call(carol, 'resource', 'kb', 'kb://private/b'))).message).toContain('Resource "kb://private/b"');
    expect(admit(hooks, call(carol, 'resource', 'kb', 'kb://public/deep/doc'))).toMatchObject({ decision: 'allow' });
    expect(admit(hooks, call(carol, 'prompt', 'kb', 'summarise'))).toMatchObject({ decision: 'allow' });
  });

  it('passes requests without a target (lists, ping) synchronously without a decision', () => {
    const info: RequestInfo = { record: ci, method: 'tools/list', requestId: 2, traceId: 't', startedAt: 0 };
    expect(admit(hooks, info)).toBeUndefined();
    expect(admit(policyHooks(lookup(undefined)), info)).toBeUndefined();
  });

  it('denies everything, with a clear message, for a tenant without a snapshot', () => {
    const error = refusal(() => admit(policyHooks(lookup(undefined)), call(ci, 'tool', 'tickets', 'create_ticket')));
    expect(error.rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
    expect(error.data).toEqual({ snapshotVersion: null });
    expect(error.message).toMatch(/No access policy is in force for this tenant/);
    // Another tenant's session never sees this tenant's snapshot.
    expect(refusal(() => admit(hooks, call(record('agent_client', 'ac-ci', 'tenant-b'), 'tool', 'tickets', 'create_ticket'))).message).toMatch(/No access policy/);
  });

  it('evaluates conditions on the arguments: a small refund is allowed by the tickets rule, a big one needs approval', async () => {
    expect(admit(hooks, call(ci, 'tool', 'tickets', 'refund', { amount: 20 }))).toMatchObject({ decision: 'allow' });
    const error = refusal(() => admit(hooks, call(ci, 'tool', 'tickets', 'refund', { amount: 500 })));
    expect(error.rpcCode).toBe(GATEWAY_RPC.APPROVAL_UNAVAILABLE);
    expect(error.message).toMatch(/needs approval by a person.*approvals are not available/);

    const held: unknown[] = [];
    const gate: ApprovalGate = {
      hold: async (info, decision) => {
        held.push({ method: info.method, ...decision });
        return { approvalId: 'ap-1', arguments: { amount: 400 } };
      },
    };
    const gated = policyHooks(lookup(snapshotOf(RULES)), gate);
    const pending = admit(gated, call(ci, 'tool', 'tickets', 'refund', { amount: 500 }));
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).resolves.toMatchObject({
      decision: 'require_approval',
      ruleIds: ['big-refunds-need-a-human'],
      snapshotVersion: 3,
      approvalId: 'ap-1',
      arguments: { amount: 400 },
    });
    expect(held).toEqual([{ method: 'tools/call', reason: expect.stringContaining('big-refunds-need-a-human'), ruleIds: ['big-refunds-need-a-human'], snapshotVersion: 3 }]);
  });

  it('decides without holding; the hold comes from its own hook, and a composition without it refuses the call', async () => {
    const held: string[] = [];
    let released = 0;
    const gate: ApprovalGate = {
      hold: async () => {
        held.push('held');
        return { approvalId: 'ap-9' };
      },
    };
    const hooks = policyHooks(lookup(snapshotOf(RULES)), gate);
    const info = call(ci, 'tool', 'tickets', 'refund', { amount: 500 });
    expect(hooks.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).toMatchObject({ decision: 'require_approval', ruleIds: ['big-refunds-need-a-human'] });
    expect(held).toEqual([]);
    // A guard between the decision and the hold (a rate limit, say) refuses: nothing is held.
    const limited = composeHooks([
      hooks,
      {
        admit: () => {
          throw new GatewayRequestError(GATEWAY_RPC.RATE_LIMITED, 'slow down', undefined, 'rate_limited');
        },
      },
      hooks.hold,
    ]);
    expect(refusal(() => limited.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).rpcCode).toBe(GATEWAY_RPC.RATE_LIMITED);
    expect(held).toEqual([]);
    // Without the hold the call is refused, not run unapproved, and what was admitted is released.
    const unheld = composeHooks([hooks, { admit: () => ({ release: () => void (released += 1) }) }]);
    expect(() => unheld.admit?.(info, NO_STREAM, new AbortController().signal, undefined)).toThrow(/needing approval was admitted without one/);
    expect(released).toBe(1);
    // Allowed calls pass the hold untouched.
    expect(admit(hooks, call(ci, 'tool', 'tickets', 'refund', { amount: 20 }))).toMatchObject({ decision: 'allow' });
    await expect(admit(hooks, info)).resolves.toMatchObject({ decision: 'require_approval', approvalId: 'ap-9' });
    expect(held).toEqual(['held']);
  });

  it('checks arguments an approver edited against the policy: edits the policy denies are refused', async () => {
    const rules: PolicyRuleSource[] = [
      ...RULES,
      {
        id: 'no-huge-refunds',
        subjects: [{ type: 'authenticated' }],
        targets: [{ kind: 'tool', upstream: 'tickets', name: 'refund' }],
        effect: 'deny',
        condition: 'args.amount > 1000.0',
      },
    ];
    const approveWith = (edited: Record<string, unknown> | undefined): ApprovalGate => ({
      hold: async () => ({ approvalId: 'ap-2', ...(edited ? { arguments: edited } : {}) }),
    });
    const hooksWith = (gate: ApprovalGate) => policyHooks(lookup(snapshotOf(rules)), gate);
    // Approved as asked, or with edits the policy still allows: the call goes on with them.
    await expect(admit(hooksWith(approveWith(undefined)), call(ci, 'tool', 'tickets', 'refund', { amount: 500 }))).resolves.toMatchObject({ approvalId: 'ap-2' });
    await expect(admit(hooksWith(approveWith({ amount: 300 })), call(ci, 'tool', 'tickets', 'refund', { amount: 500 }))).resolves.toMatchObject({
      arguments: { amount: 300 },
    });
    // Edited into something the policy denies: refused, saying why.
    const refused = admit(hooksWith(approveWith({ amount: 5_000 })), call(ci, 'tool', 'tickets', 'refund', { amount: 500 }));
    await expect(refused).rejects.toMatchObject({ rpcCode: GATEWAY_RPC.POLICY_DENIED, outcome: 'denied', data: { approvalId: 'ap-2' } });
    await expect(refused).rejects.toThrow(/edited arguments, which the policy denies/);
  });

  it('runs an approved call only if the policy in force when it resumes still lets it', async () => {
    let current: PolicySnapshot | undefined = snapshotOf(RULES);
    const lookupNow: SnapshotLookup = { get: (tenantId) => (tenantId === TENANT ? current : undefined) };
    const denyRefunds: PolicyRuleSource = {
      id: 'refunds-frozen',
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'tool', upstream: 'tickets', name: 'refund' }],
      effect: 'deny',
    };
    // While the call waits for its approver, an admin publishes a deny; then the approval comes.
    const gate = (change: () => void): ApprovalGate => ({
      hold: async () => {
        change();
        return { approvalId: 'ap-3' };
      },
    });
    const refused = admit(policyHooks(lookupNow, gate(() => (current = snapshotOf([...RULES, denyRefunds], 'deny', 4)))), call(ci, 'tool', 'tickets', 'refund', { amount: 500 }));
    await expect(refused).rejects.toMatchObject({ rpcCode: GATEWAY_RPC.POLICY_DENIED, outcome: 'denied', data: { snapshotVersion: 4, approvalId: 'ap-3' } });
    await expect(refused).rejects.toThrow(/approved, but the policy in force now denies it/);
    // The tenant lost its policy meanwhile: refused too.
    current = snapshotOf(RULES);
    await expect(admit(policyHooks(lookupNow, gate(() => (current = undefined))), call(ci, 'tool', 'tickets', 'refund', { amount: 500 }))).rejects.toMatchObject({
      rpcCode: GATEWAY_RPC.POLICY_DENIED,
    });
    // Unchanged policy (still "needs approval"): the approval lets it run.
    current = snapshotOf(RULES);
    await expect(admit(policyHooks(lookupNow, gate(() => undefined)), call(ci, 'tool', 'tickets', 'refund', { amount: 500 }))).resolves.toMatchObject({ approvalId: 'ap-3' });
  });

  it('follows a tenant default of allow', () => {
    const open = policyHooks(lookup(snapshotOf([], 'allow', 9)));
    expect(admit(open, call(ide, 'tool', 'anything', 'at_all'))).toMatchObject({ decision: 'allow', ruleIds: [], snapshotVersion: 9 });
    expect(open.filter?.(ide, 'tool', upstream('anything'), [{ name: 'x' }])).toEqual([{ name: 'x' }]);
  });
});

describe('policyHooks.admit on a task request', () => {
  /** A tasks/* request of `session` about a task that a call of `name` on `upstreamName` started. */
  const aboutTask = (session: SessionRecord, method: string, upstreamName: string, name: string): RequestInfo => ({
    record: session,
    method,
    requestId: 1,
    traceId: 'trace',
    startedAt: Date.parse('2026-12-01T10:00:00Z'),
    taskOf: { upstream: upstream(upstreamName), kind: 'tool', name },
  });

  it('reads a task while its tool is the principal\'s to use under some arguments, and counts or holds nothing for it', () => {
    const hooks = policyHooks(lookup(snapshotOf(RULES)));
    for (const method of ['tasks/get', 'tasks/result', 'tasks/cancel']) {
      expect(admit(hooks, aboutTask(ci, method, 'tickets', 'create_ticket'))).toBeUndefined();
      // Callable only with some arguments (needs approval above 100): reading its task is not held for approval.
      expect(admit(hooks, aboutTask(ide, method, 'tickets', 'refund'))).toBeUndefined();
    }
  });

  it('refuses to read the task of a tool the principal may no longer use, but never refuses cancelling it', () => {
    // The policy in force now: the ci client lost its rule (default deny), and deleting is denied to everyone.
    const hooks = policyHooks(lookup(snapshotOf(RULES.filter((rule) => rule.id !== 'ci-tickets'), 'deny', 4)));
    for (const method of ['tasks/get', 'tasks/result']) {
      const revoked = refusal(() => admit(hooks, aboutTask(ci, method, 'tickets', 'create_ticket')));
      expect(revoked.rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
      expect(revoked.message).toBe('Tool "create_ticket" on "ticketsp" is no longer allowed for you, so the task its call started cannot be read.');
      expect(revoked.data).toEqual({ snapshotVersion: 4 });
      expect(revoked.outcome).toBe('denied');
      expect(refusal(() => admit(hooks, aboutTask(carol, method, 'tickets', 'delete_ticket'))).rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
    }
    expect(admit(hooks, aboutTask(ci, 'tasks/cancel', 'tickets', 'create_ticket'))).toBeUndefined();
    // Without a policy in force nothing is read either (as no call would run).
    const none = policyHooks(lookup(undefined));
    expect(refusal(() => admit(none, aboutTask(ci, 'tasks/result', 'tickets', 'create_ticket'))).data).toEqual({ snapshotVersion: null });
    expect(admit(none, aboutTask(ci, 'tasks/cancel', 'tickets', 'create_ticket'))).toBeUndefined();
  });

  it('decides again when a waited-for result is handed over: the policy in force then, not when the wait began', () => {
    let current = snapshotOf(RULES);
    const hooks = policyHooks({ get: () => current });
    const info = aboutTask(ci, 'tasks/result', 'tickets', 'create_ticket');
    expect(hooks.recheck?.(info)).toBeUndefined();
    current = snapshotOf(RULES.filter((rule) => rule.id !== 'ci-tickets'), 'deny', 5);
    expect(refusal(() => hooks.recheck?.(info)).data).toEqual({ snapshotVersion: 5 });
    // Calls are not asked again here (the approval hold decides again for those), nor is cancelling.
    expect(hooks.recheck?.(call(ci, 'tool', 'tickets', 'create_ticket'))).toBeUndefined();
    expect(hooks.recheck?.(aboutTask(ci, 'tasks/cancel', 'tickets', 'create_ticket'))).toBeUndefined();
  });

  it('decides a rule by address or time alone with the reading request (the call\'s arguments are not kept)', () => {
    const tickets = [{ kind: 'tool' as const, upstream: 'tickets', name: 'create_ticket' }];
    const hooks = policyHooks(
      lookup(
        snapshotOf([
          { id: 'ci-tickets', subjects: [{ type: 'agent_client', agentClientId: 'ac-ci' }], targets: tickets, effect: 'allow' },
          { id: 'office-only', subjects: [{ type: 'authenticated' }], targets: tickets, effect: 'deny', condition: '!inCidr(request.ip, "10.1.0.0/16")' },
          { id: 'small', subjects: [{ type: 'authenticated' }], targets: tickets, effect: 'deny', condition: 'args.count > 10' },
        ]),
      ),
    );
    const reading = (ip: string): RequestInfo => ({ ...aboutTask(ci, 'tasks/result', 'tickets', 'create_ticket'), clientIp: ip });
    expect(admit(hooks, reading('10.1.4.4'))).toBeUndefined();
    expect(refusal(() => admit(hooks, reading('198.51.100.7'))).rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
    // The answer waited: decided again from the address it is handed to.
    expect(refusal(() => hooks.recheck?.(reading('198.51.100.7'))).rpcCode).toBe(GATEWAY_RPC.POLICY_DENIED);
    // A message from the upstream comes from no known address: the address rule could go either way.
    expect(hooks.taskMessage?.(ci, { upstream: upstream('tickets'), kind: 'tool', name: 'create_ticket' }, 'notifications/tasks/status')).toBeUndefined();
  });

  it("refuses passing on an upstream's messages about the task of a tool the principal may no longer use", () => {
    let current: PolicySnapshot | undefined = snapshotOf(RULES);
    const hooks = policyHooks({ get: () => current });
    const taskOf = { upstream: upstream('tickets'), kind: 'tool', name: 'create_ticket' } as const;
    expect(hooks.taskMessage?.(ci, taskOf, 'notifications/tasks/status')).toBeUndefined();
    expect(hooks.taskMessage?.(ci, taskOf, 'elicitation/create')).toBeUndefined();
    current = snapshotOf(RULES.filter((rule) => rule.id !== 'ci-tickets'), 'deny', 6);
    const revoked = refusal(() => hooks.taskMessage?.(ci, taskOf, 'elicitation/create'));
    expect(revoked).toMatchObject({ rpcCode: GATEWAY_RPC.POLICY_DENIED, data: { snapshotVersion: 6 }, outcome: 'denied' });
    current = undefined;
    expect(refusal(() => hooks.taskMessage?.(ci, taskOf, 'notifications/tasks/status')).data).toEqual({ snapshotVersion: null });
  });
});

describe('principalOf', () => {
  it('maps agent-client sessions to the agent client and user sessions to the user', () => {
    expect(principalOf(ci)).toEqual({ agentClientId: 'ac-ci' });
    expect(principalOf(carol)).toEqual({ userId: 'u-carol' });
  });
});
