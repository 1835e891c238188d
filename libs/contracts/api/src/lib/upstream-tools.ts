import { z } from 'zod';
import { page, pageQuery } from './common';

/** `instructions`: the upstream's initialize instructions, one item named `instructions` per upstream. */
export const upstreamToolKind = z.enum(['tool', 'prompt', 'resource', 'resource_template', 'instructions']);
export type UpstreamToolKindName = z.infer<typeof upstreamToolKind>;

/**
 * Where a definition stands:
 * - `approved`: what the upstream advertises is what an admin (or trust on first use) approved; the gateway shows it.
 * - `changed`: the upstream now advertises something else than the approved definition; hidden and blocked.
 * - `pending`: never approved (new under `require_approval`); hidden and blocked.
 * - `removed`: the upstream no longer advertises it.
 */
export const upstreamToolState = z.enum(['approved', 'changed', 'pending', 'removed']);
export type UpstreamToolState = z.infer<typeof upstreamToolState>;

const definitionChange = z.object({
  path: z.string(),
  change: z.enum(['added', 'removed', 'changed']),
  before: z.unknown().optional(),
  after: z.unknown().optional(),
});

export const upstreamToolResponse = z.object({
  id: z.uuid(),
  kind: upstreamToolKind,
  /** The upstream's own name (URI or URI template for resources), without the gateway's tool prefix. */
  name: z.string(),
  state: upstreamToolState,
  /** The definition the upstream advertised at the last test connection. */
  definition: z.record(z.string(), z.unknown()),
  contentHash: z.string(),
  approvedDefinition: z.record(z.string(), z.unknown()).nullable(),
  approvedHash: z.string().nullable(),
  /** What changed from the approved to the current definition (empty when they agree or nothing is approved). */
  changes: z.array(definitionChange),
  approvedAt: z.iso.datetime({ offset: true }).nullable(),
  approvedById: z.uuid().nullable(),
  firstSeenAt: z.iso.datetime({ offset: true }),
  lastSeenAt: z.iso.datetime({ offset: true }),
});
export type UpstreamToolResponse = z.infer<typeof upstreamToolResponse>;

/** Filters and a cursor page (in id order, at most 200 items; a definition can be large). */
export const upstreamToolsQuery = z.strictObject({
  state: upstreamToolState.optional(),
  kind: upstreamToolKind.optional(),
  ...pageQuery.shape,
});
export type UpstreamToolsQuery = z.infer<typeof upstreamToolsQuery>;

export const upstreamToolsResponse = page(upstreamToolResponse);
export type UpstreamToolsResponse = z.infer<typeof upstreamToolsResponse>;

/**
 * Forgets stored definitions: all of them, or with `state=removed` only those the upstream no longer advertised at
 * the last test connection. The next test connection stores what it finds as new (approved on first use or held, as
 * the upstream's `toolApproval` says).
 */
export const forgetUpstreamToolsQuery = z.strictObject({ state: z.literal('removed').optional() });
export type ForgetUpstreamToolsQuery = z.infer<typeof forgetUpstreamToolsQuery>;

export const forgetUpstreamToolsResponse = z.object({ forgotten: z.number().int() });
export type ForgetUpstreamToolsResponse = z.infer<typeof forgetUpstreamToolsResponse>;

/**
 * Approves the definition currently stored for the tool. `contentHash` must name that definition, so an admin
 * approves exactly what they reviewed: if a newer test connection stored another definition in between, 409.
 */
export const approveUpstreamToolRequest = z.strictObject({ contentHash: z.string().regex(/^[0-9a-f]{64}$/) });
export type ApproveUpstreamToolRequest = z.infer<typeof approveUpstreamToolRequest>;

export const testConnectionResponse = z.object({
  ok: z.literal(true),
  serverInfo: z.object({ name: z.string(), version: z.string() }),
  protocolVersion: z.string(),
  durationMs: z.number().int(),
  /** Counts by what happened to each definition at this test. */
  discovered: z.object({
    total: z.number().int(),
    new: z.number().int(),
    approvedOnFirstUse: z.number().int(),
    changed: z.number().int(),
    removed: z.number().int(),
  }),
  /**
   * What the upstream advertises now, those that need a decision (changed, pending) first, at most
   * TEST_CONNECTION_MAX_ITEMS; the rest are counted in `omitted` and paged by `GET …/tools`.
   */
  items: z.array(upstreamToolResponse),
  omitted: z.number().int(),
});
/** Most definitions a test connection's answer carries (each may be large). */
export const TEST_CONNECTION_MAX_ITEMS = 200;
export type TestConnectionResponse = z.infer<typeof testConnectionResponse>;
