import { compileRedactionPaths } from '@portcullis/shared/util-redact';
import { z } from 'zod';

/** When Redis (rate-limit counters, the audit queue) cannot be asked: let calls through, or refuse them. */
export const failMode = z.enum(['open', 'closed']);
export type FailMode = z.infer<typeof failMode>;

/** How much of an upstream's result goes into the audit trail: all of it (redacted), its shape only, or nothing. */
export const auditResultMode = z.enum(['full', 'metadata', 'none']);
export type AuditResultMode = z.infer<typeof auditResultMode>;

const redactionPath = z
  .string()
  .trim()
  .min(1)
  .max(300)
  .superRefine((path, ctx) => {
    try {
      compileRedactionPaths([path]);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'is not a JSON path like $.arguments.card.number or $.result.items[*].email' });
    }
  });

/** A limit on all of a tenant's MCP requests together, on top of the limits its policy rules carry. */
export const tenantRateLimit = z
  .strictObject({
    requests: z.number().int().min(1).max(10_000_000).optional(),
    windowSeconds: z.number().int().min(1).max(86_400).optional(),
    maxConcurrent: z.number().int().min(1).max(100_000).optional(),
  })
  .superRefine((spec, ctx) => {
    if ((spec.requests === undefined) !== (spec.windowSeconds === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'requests and windowSeconds go together', path: ['requests'] });
    }
    if (spec.requests === undefined && spec.maxConcurrent === undefined) {
      ctx.addIssue({ code: 'custom', message: 'set requests/windowSeconds, maxConcurrent, or both', path: [] });
    }
  });
export type TenantRateLimit = z.infer<typeof tenantRateLimit>;

/**
 * `tenants.settings` (JSON). Every field is optional with a safe default, so `{}` is a valid tenant. Read by the
 * gateway (rate limits, audit redaction and fail mode) and the audit worker (retention).
 */
export const tenantSettings = z.object({
  audit: z
    .object({
      /** Stored events older than this are deleted by retention; absent keeps them forever. */
      retentionDays: z.number().int().min(1).max(36_500).optional(),
      /** `closed`: a call that cannot be audited (queue down and spool full) is refused. */
      failMode: failMode.default('open'),
      /** What of a tool/prompt/resource result is stored. */
      results: auditResultMode.default('metadata'),
      /**
       * Values replaced before the event leaves the gateway, as JSON paths into `{ arguments, result }`
       * (credential-like keys and values are always replaced).
       */
      redactPaths: z.array(redactionPath).max(100).default([]),
    })
    .prefault({}),
  rateLimits: z
    .object({
      /** `closed`: while the rate-limit counters (Redis) cannot be asked, calls with limits are refused. */
      failMode: failMode.default('open'),
      tenant: tenantRateLimit.optional(),
    })
    .prefault({}),
});
export type TenantSettings = z.output<typeof tenantSettings>;
export type TenantSettingsInput = z.input<typeof tenantSettings>;
