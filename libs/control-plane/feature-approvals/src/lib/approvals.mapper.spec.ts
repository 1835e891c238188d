import { REDACTED } from '@portcullis/shared/util-redact';
import { describe, expect, it } from 'vitest';
import { toApprovalResponse, type ApprovalRow } from './approvals.mapper';

const uri = 'postgres://app:hunter2secret@db.internal/prod?access_token=tok_abcdef123456';
const now = new Date('2026-12-01T10:00:00Z');
const FULL = { full: true } as const;
/** What a reader who may not decide is shown, for a tenant without audit paths of its own. */
const REDACTED_VIEW = { full: false, paths: [] } as const;

/** A held resource read as a gateway stored it before it redacted the reason: the policy's words, with the raw URI. */
const row: ApprovalRow = {
  id: '019a0000-0000-7000-8000-0000000000dd',
  status: 'pending',
  upstreamId: '019a0000-0000-7000-8000-0000000000cc',
  kind: 'resource',
  method: 'resources/read',
  tool: uri,
  arguments: {},
  argumentsHash: 'h',
  reason: `require_approval: rule r1 matched resource ${JSON.stringify(uri)} on upstream "db"`,
  snapshotVersion: 4,
  requesterUserId: null,
  agentClientId: '019a0000-0000-7000-8000-0000000000bb',
  decidedById: null,
  decidedAt: null,
  decisionNote: null,
  editedArguments: null,
  expiresAt: new Date('2026-12-01T10:15:00Z'),
  heldUntil: new Date('2026-12-01T10:01:00Z'),
  consumedAt: null,
  traceId: 'trace-1',
  createdAt: new Date('2026-12-01T09:59:00Z'),
};

describe('toApprovalResponse', () => {
  it('redacts credentials in the reason of a stored approval, for auditors and deciders alike', () => {
    for (const full of [false, true]) {
      const response = toApprovalResponse(row, now, full ? FULL : REDACTED_VIEW);
      expect(response.reason).not.toContain('hunter2');
      expect(response.reason).not.toContain('tok_abcdef123456');
      expect(response.reason).toContain(
        `require_approval: rule r1 matched resource "postgres://app:${REDACTED}@db.internal/prod?access_token=${REDACTED}`,
      );
    }
    // The URI itself: whole for those who may decide (they decide on exactly what would be read), redacted for others.
    expect(toApprovalResponse(row, now, REDACTED_VIEW).tool).toBe(
      `postgres://app:${REDACTED}@db.internal/prod?access_token=${REDACTED}`,
    );
    expect(toApprovalResponse(row, now, FULL).tool).toBe(uri);
    expect(toApprovalResponse({ ...row, reason: null }, now, REDACTED_VIEW).reason).toBeNull();
  });

  it('says what was held: the target kind and the JSON-RPC method (null on rows recorded before it was)', () => {
    expect(toApprovalResponse(row, now, REDACTED_VIEW)).toMatchObject({ kind: 'resource', method: 'resources/read' });
    const prompt = { ...row, kind: 'prompt' as const, method: 'prompts/get', tool: 'delete_all' };
    expect(toApprovalResponse(prompt, now, FULL)).toMatchObject({ kind: 'prompt', method: 'prompts/get', tool: 'delete_all' });
    const completion = { ...prompt, method: 'completion/complete' };
    expect(toApprovalResponse(completion, now, REDACTED_VIEW)).toMatchObject({ kind: 'prompt', method: 'completion/complete' });
    // A row from before the columns: its kind the migration's default (or what it could infer), its method unknown.
    expect(toApprovalResponse({ ...row, kind: 'tool', method: null, tool: 'delete_file' }, now, FULL)).toMatchObject({ kind: 'tool', method: null });
  });

  it('gives the hash of the arguments in full only with the arguments in full, or where redaction hid nothing', () => {
    const secret = { ...row, kind: 'tool' as const, method: 'tools/call', tool: 'unlock', arguments: { account: 'ops', password: '4821' }, argumentsHash: 'f'.repeat(64) };
    // Before, an auditor got it next to `password: [redacted]`: unsalted, it gave the PIN away in 9,000 guesses.
    expect(toApprovalResponse(secret, now, REDACTED_VIEW)).toMatchObject({ arguments: { account: 'ops', password: REDACTED }, argumentsHash: null });
    expect(toApprovalResponse(secret, now, FULL)).toMatchObject({ arguments: { account: 'ops', password: '4821' }, argumentsHash: 'f'.repeat(64) });
    // A secret hidden in free text counts as well as one under a credential-like key.
    const inText = { ...secret, arguments: { sql: 'SELECT 1; -- -----BEGIN PRIVATE KEY-----\nDROP TABLE users;' } };
    expect(toApprovalResponse(inText, now, REDACTED_VIEW).argumentsHash).toBeNull();
    // Nothing hidden: the hash tells nothing the arguments shown do not.
    const plain = { ...secret, arguments: { account: 'ops', path: '/tmp/x' } };
    expect(toApprovalResponse(plain, now, REDACTED_VIEW).argumentsHash).toBe('f'.repeat(64));
  });

  // Before, only credentials were taken out here: a value the tenant's audit paths name (a card number) was shown to
  // auditors, with the hash of the arguments in full, and kept in the approval.* audit events.
  it('takes out what the tenant\'s audit paths name, wherever the arguments, the edits or the texts repeat it', () => {
    const card = '4111111111111111';
    const charge = {
      ...row,
      kind: 'tool' as const,
      method: 'tools/call',
      tool: 'charge',
      reason: `require_approval: rule r1 matched tool "charge"; card ${card}`,
      arguments: { card: { number: card }, amount: 10, note: `charge card ${card}` },
      editedArguments: { card: { number: card }, amount: 5 },
      argumentsHash: 'f'.repeat(64),
    };
    const shown = toApprovalResponse(charge, now, { full: false, paths: ['$.arguments.card.number'] });
    expect(JSON.stringify(shown)).not.toContain(card);
    expect(shown).toMatchObject({
      arguments: { card: { number: REDACTED }, amount: 10, note: `charge card ${REDACTED}` },
      editedArguments: { card: { number: REDACTED }, amount: 5 },
      argumentsHash: null,
    });
    // Those who decide see what would run; without paths, nothing of it is a credential.
    expect(toApprovalResponse(charge, now, FULL).arguments).toEqual(charge.arguments);
    expect(toApprovalResponse(charge, now, REDACTED_VIEW)).toMatchObject({ arguments: charge.arguments, argumentsHash: 'f'.repeat(64) });
    // Settings that do not parse, or a path that does not compile: nothing of the arguments is shown.
    for (const paths of [null, ['$.arguments.[']]) {
      const hidden = toApprovalResponse(charge, now, { full: false, paths });
      expect(JSON.stringify(hidden.arguments)).not.toContain(card);
      expect(JSON.stringify(hidden.editedArguments)).not.toContain(card);
      expect(hidden.argumentsHash).toBeNull();
    }
  });
});
