import { z } from 'zod';
import { pageQuery } from './common';

export const approvalStatus = z.enum(['pending', 'approved', 'denied', 'expired', 'cancelled']);

/**
 * What a held request is about: a tool (tools/call), a prompt (prompts/get, or a completion of its arguments) or a
 * resource (resources/read, resources/subscribe, or a completion of a template's arguments). Approvals recorded before
 * the kind was were given it where the upstream's listings (or a URI) tell, and read as tool calls otherwise.
 */
export const approvalTargetKind = z.enum(['tool', 'prompt', 'resource']);

/** Lowercase hex SHA-256 of the RFC 8785 canonical JSON of the held call's arguments. */
export const approvalArgumentsHash = z.string().regex(/^[0-9a-f]{64}$/, 'must be the approval’s argumentsHash (64 lowercase hex digits)');

/**
 * The largest arguments a held call may have (as JSON, in UTF-8 bytes), and an approver's edit of them: what a person
 * can review, and what every listing of the queue and every decision's audit event carries whole.
 */
export const MAX_APPROVAL_ARGUMENT_BYTES = 64 * 1024;
const MAX_ARGUMENT_BYTES = MAX_APPROVAL_ARGUMENT_BYTES;
/** Nesting bound: deeper JSON would overflow the recursive redaction and canonicalisation downstream. */
const MAX_ARGUMENT_DEPTH = 64;

/**
 * What is wrong with `value` as edited arguments, if anything: arrays/objects nested deeper than `max`, or a number
 * JSON cannot carry (Infinity, NaN; `JSON.parse` reads `1e400` as Infinity, and `JSON.stringify` writes it back as
 * null, so stored, the call would run with a value the approver never wrote). One iterative walk, so any depth is safe
 * to check; an entry names only its own key and parent, and a path is built only for the number found.
 * Over HTTP the control plane's JSON body parser (`createHttpApp`) refuses such a number in the text before this schema
 * runs, along with the ones the parse changes without a trace here (an integer past 2^53 rounded, `1e-400` read as 0).
 * The check stays as defence in depth: the walk is made for the depth bound anyway, and this schema is a contract that
 * may be given values that never were JSON text (built in code, parsed by something else).
 */
function jsonProblem(value: unknown, max: number): { tooDeep: true } | { nonFinite: (string | number)[] } | undefined {
  interface Step {
    readonly key: string | number;
    readonly parent: Step | undefined;
  }
  const pending: [unknown, number, Step | undefined][] = [[value, 0, undefined]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [current, depth, step] = next;
    if (typeof current === 'number' && !Number.isFinite(current)) {
      const path: (string | number)[] = [];
      for (let at = step; at !== undefined; at = at.parent) path.push(at.key);
      return { nonFinite: path.reverse() };
    }
    if (typeof current !== 'object' || current === null) continue;
    // The arguments object itself is level 1: as the gateway counts an agent's (`nestedDeeperThan`), 64 levels in all.
    if (depth >= max) return { tooDeep: true };
    for (const [key, inner] of Object.entries(current)) pending.push([inner, depth + 1, { key: Array.isArray(current) ? Number(key) : key, parent: step }]);
  }
  return undefined;
}

/** Tool arguments as an approver edits them: a JSON object of bounded size and depth, every number one JSON can carry. */
const editedArguments = z.record(z.string(), z.unknown()).superRefine((value, ctx) => {
  const problem = jsonProblem(value, MAX_ARGUMENT_DEPTH);
  if (problem !== undefined && 'tooDeep' in problem) {
    ctx.addIssue({ code: 'custom', message: `must nest at most ${MAX_ARGUMENT_DEPTH} levels deep` });
    return;
  }
  if (problem !== undefined) {
    ctx.addIssue({ code: 'custom', path: problem.nonFinite, message: 'must be a finite number within JSON’s range (1e400 is not)' });
    return;
  }
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) ctx.addIssue({ code: 'custom', message: 'must be plain JSON' });
  else if (new TextEncoder().encode(text).length > MAX_ARGUMENT_BYTES) ctx.addIssue({ code: 'custom', message: `must be at most ${MAX_ARGUMENT_BYTES} bytes of JSON` });
});

export const listApprovalsQuery = pageQuery.extend({ status: approvalStatus.optional(), kind: approvalTargetKind.optional() });
export type ListApprovalsQuery = z.infer<typeof listApprovalsQuery>;

const note = z.string().trim().min(1).max(500);

/**
 * Approve a held call, optionally with edited arguments (they replace the agent's entirely). `argumentsHash` must be
 * the one the approver reviewed: the decision applies to exactly those arguments.
 */
export const approveRequest = z.strictObject({
  argumentsHash: approvalArgumentsHash,
  arguments: editedArguments.optional(),
  note: note.optional(),
});
export type ApproveRequest = z.infer<typeof approveRequest>;

/**
 * The held requests that run with arguments an approver edited (a tool's, a prompt's); any other (a resource read or
 * subscribe, a completion) runs as it was held, and the gateway refuses an approval that carries edits for it.
 */
export const APPROVAL_EDITABLE_METHODS: ReadonlySet<string> = new Set(['tools/call', 'prompts/get']);

/**
 * Why an approver's edited arguments cannot run as the held request `method` (null: a row from before methods were
 * recorded, judged by the gateway alone), if they cannot: the request has no arguments to edit, or it is a prompt and
 * a value is not text (MCP: a prompt's arguments map names to strings; the gateway refuses anything else from an
 * agent, and an upstream would refuse it or, over stdio, drop the request). Shared by the control plane, which refuses
 * such a decision while it is still pending, and the gateway, which refuses to run one.
 */
export function editedArgumentsProblem(method: string | null, edited: Readonly<Record<string, unknown>>): string | undefined {
  if (method === null) return undefined;
  if (!APPROVAL_EDITABLE_METHODS.has(method)) return `a held ${method} runs as it was held: it has no arguments to edit`;
  if (method === 'prompts/get') {
    for (const key of Object.keys(edited)) {
      if (typeof edited[key] !== 'string') return `a prompt's arguments are text: ${JSON.stringify(key.slice(0, 64))} is not a string`;
    }
  }
  return undefined;
}

/** Deny a held call; the note (if any) is shown to the agent in the error. */
export const denyRequest = z.strictObject({ note: note.optional() }).default({});
export type DenyRequest = z.infer<typeof denyRequest>;

export const approvalResponse = z.object({
  id: z.uuid(),
  status: approvalStatus,
  upstreamId: z.uuid(),
  /** What the held request is about: a prompt and a tool may share a name. */
  kind: approvalTargetKind,
  /**
   * The JSON-RPC method held: `tools/call`, `prompts/get`, `resources/read`, `resources/subscribe`,
   * `completion/complete` (a completion of the target's arguments, not the call itself)... Null on approvals recorded
   * before the method was.
   */
  method: z.string().nullable(),
  /** The target's name as its upstream knows it (without the gateway prefix): a tool's or prompt's name, or a resource's URI. */
  tool: z.string(),
  /** The agent's arguments: in full to those who may decide, with credentials redacted to anyone else. */
  arguments: z.record(z.string(), z.unknown()),
  /**
   * What an approver sends back to approve (the hash of the arguments in full). Null where the arguments are shown
   * redacted and redaction hid something: unsalted, it would let the reader test guesses of what was hidden.
   */
  argumentsHash: approvalArgumentsHash.nullable(),
  /** Why the policy asked for approval. */
  reason: z.string().nullable(),
  snapshotVersion: z.number().int().nullable(),
  requesterUserId: z.uuid().nullable(),
  agentClientId: z.uuid().nullable(),
  decidedById: z.uuid().nullable(),
  decidedAt: z.iso.datetime({ offset: true }).nullable(),
  decisionNote: z.string().nullable(),
  editedArguments: z.record(z.string(), z.unknown()).nullable(),
  expiresAt: z.iso.datetime({ offset: true }),
  /** When the approved call was executed (an approval is single use). */
  consumedAt: z.iso.datetime({ offset: true }).nullable(),
  traceId: z.string().nullable(),
  createdAt: z.iso.datetime({ offset: true }),
});
export type ApprovalResponse = z.infer<typeof approvalResponse>;
