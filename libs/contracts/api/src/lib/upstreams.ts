import { credentialArgIndex, namesQuerySecret } from '@portcullis/shared/util-redact';
import { z } from 'zod';

export const upstreamTransport = z.enum(['streamable_http', 'sse', 'stdio']);
export type UpstreamTransport = z.infer<typeof upstreamTransport>;

/**
 * Prepended to the upstream's tool names as `<prefix>__<tool>`. No double underscore and no trailing underscore, so
 * the gateway can always split an exposed name at its first `__`.
 */
export const toolPrefix = z
  .string()
  .min(1)
  .max(32)
  .regex(/^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/, 'lowercase letters and digits, single inner underscores, starting with a letter');

const upstreamName = z.string().trim().min(1).max(100);

/**
 * The URL, or undefined for one that does not parse: zod runs a field's refinements even after its `z.url()` check
 * failed, and a `new URL` throwing there escaped the validation as a 500 (`"mcp.example.com/mcp"`); the URL check's
 * own 400 is the answer.
 */
const parsedUrl = (value: string): URL | undefined => (URL.canParse(value) ? new URL(value) : undefined);

const httpEndpoint = z
  .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
  .max(2_000)
  .refine((value) => {
    const url = parsedUrl(value);
    return url === undefined || (url.username === '' && url.password === '');
  }, 'must not contain credentials; put them in headers (stored encrypted)')
  // A URL is shown to every member and in audit records: a query parameter named like a credential (`?api_key=`,
  // `?access_token=`, `?subscription-key=`, `?sig=`) would be a secret in plain text. Headers are sealed and never returned.
  .refine(
    (value) => ![...(parsedUrl(value)?.searchParams.keys() ?? [])].some(namesQuerySecret),
    'must not carry credentials in its query string; put them in headers (stored encrypted)',
  );

/** Header and environment maps: values are secrets, written only, never returned. */
const secretMap = (keyPattern: RegExp, what: string, value: { readonly pattern: RegExp; readonly rule: string }) =>
  z
    .record(
      z.string().regex(keyPattern, `each ${what} name must match ${keyPattern.source}`).max(200),
      // The message names the rule, never the value (these are secrets).
      z.string().max(8_000).regex(value.pattern, `each ${what} value ${value.rule}`),
    )
    .refine((map) => Object.keys(map).length <= 50, `at most 50 ${what}s`);
/**
 * Header names the gateway's upstream clients own: the transport's own (framing, content codings, `Host`, the MCP
 * session headers) and every `Proxy-*`. A configured one would at best be ignored; sent by a client that honours it, `Host` picks the
 * virtual host (and TLS server name) behind an address that passed the network check.
 */
const RESERVED_UPSTREAM_HEADERS: ReadonlySet<string> = new Set([
  'accept',
  'content-type',
  'content-length',
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  // The clients read answers as they come, in no content coding: an upstream asked for gzip sends what they cannot read.
  'accept-encoding',
  'content-encoding',
]);

/** Whether a configured upstream header would override one the transport owns (see `RESERVED_UPSTREAM_HEADERS`). */
export function isReservedUpstreamHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return RESERVED_UPSTREAM_HEADERS.has(lower) || lower.startsWith('proxy-');
}

// What an HTTP field value may hold (RFC 9110: visible characters, spaces and tabs, obs-text), and all Node sends.
export const secretHeaders = secretMap(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'header', {
  pattern: /^[\t\x20-\x7e\x80-\xff]*$/,
  rule: 'may hold only visible characters, spaces and tabs (no line breaks or other control characters)',
}).refine(
  (map) => !Object.keys(map).some(isReservedUpstreamHeader),
  'must not set a header the connection owns (Host, Content-Type, Accept, Mcp-Session-Id, Proxy-*, ...)',
);
export const secretEnv = secretMap(/^[A-Za-z_][A-Za-z0-9_]*$/, 'variable', { pattern: /^[^\0]*$/, rule: 'must not contain a NUL character' });

/** `${NAME}` in a stdio upstream's argument: the value of its env variable NAME (see `argsWithEnv`). */
const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * A stdio upstream's arguments as its process gets them: each `${NAME}` naming one of its configured env variables is
 * replaced by that variable's value; any other text, an unknown name's reference included, is passed as written. No
 * shell runs, so this is the only expansion there is: it lets a server that takes its credential as an argument get it
 * from the sealed env, while the stored arguments, which every member sees, say only `${NAME}`.
 */
export function argsWithEnv(args: readonly string[], env: Readonly<Record<string, string>>): readonly string[] {
  if (!args.some((arg) => arg.includes('${'))) return args;
  return args.map((arg) => arg.replace(ENV_REFERENCE, (reference, name: string) => (Object.hasOwn(env, name) ? (env[name] as string) : reference)));
}

/**
 * Arguments are shown to every member like the URL: credentials go in `env` (sealed, never returned) and are referenced
 * as `${NAME}`. One that plainly holds a credential is refused (`credentialArgIndex`); the message names its position,
 * never its text.
 */
const stdioArgs = z
  .array(z.string().max(2_000))
  .max(100)
  .superRefine((args, context) => {
    const index = credentialArgIndex(args);
    if (index >= 0) {
      context.addIssue({
        code: 'custom',
        path: [index],
        message: 'looks like a credential; put it in env (stored encrypted) and write ${NAME} in the argument instead',
      });
    }
  });

const timeouts = {
  connectTimeoutMs: z.number().int().min(100).max(120_000).optional(),
  callTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
};

/**
 * How tool, prompt and resource definitions the upstream advertises for the first time are treated: trusted when a
 * test connection first sees them (`trust_on_first_use`, the default), or held until an admin approves them
 * (`require_approval`). A CHANGED definition always waits for approval (docs/adr/0013-tool-pinning.md).
 */
export const toolApprovalMode = z.enum(['trust_on_first_use', 'require_approval']);
export type ToolApprovalMode = z.infer<typeof toolApprovalMode>;

const common = {
  name: upstreamName,
  toolApproval: toolApprovalMode.optional(),
  description: z.string().trim().max(1_000).nullable().optional(),
  toolPrefix,
  enabled: z.boolean().optional(),
  ...timeouts,
};

export const createUpstreamRequest = z.discriminatedUnion('transport', [
  z.strictObject({
    ...common,
    transport: z.enum(['streamable_http', 'sse']),
    url: httpEndpoint,
    headers: secretHeaders.optional(),
  }),
  z.strictObject({
    ...common,
    transport: z.literal('stdio'),
    command: z.string().min(1).max(500),
    args: stdioArgs.optional(),
    env: secretEnv.optional(),
  }),
]);
export type CreateUpstreamRequest = z.infer<typeof createUpstreamRequest>;

/**
 * A partial update. The transport cannot change (delete and create instead). `headers` / `env` replace the whole
 * stored map; `null` removes it; leaving them out keeps what is stored — except that a `url` on another origin
 * (scheme, host, port) than the stored one needs `headers` given again or `null` (stored headers are credentials for
 * the old origin; 400 otherwise).
 */
export const updateUpstreamRequest = z
  .strictObject({
    name: upstreamName.optional(),
    description: z.string().trim().max(1_000).nullable().optional(),
    toolPrefix: toolPrefix.optional(),
    enabled: z.boolean().optional(),
    toolApproval: toolApprovalMode.optional(),
    ...timeouts,
    url: httpEndpoint.optional(),
    headers: secretHeaders.nullable().optional(),
    command: z.string().min(1).max(500).optional(),
    args: stdioArgs.optional(),
    env: secretEnv.nullable().optional(),
  })
  .refine((body) => Object.keys(body).length > 0, 'nothing to update');
export type UpdateUpstreamRequest = z.infer<typeof updateUpstreamRequest>;

/** An upstream as the API shows it: secrets are never returned, only whether some are stored. */
export const upstreamResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  toolPrefix: z.string(),
  transport: upstreamTransport,
  url: z.string().nullable(),
  command: z.string().nullable(),
  args: z.array(z.string()),
  hasHeaders: z.boolean(),
  hasEnv: z.boolean(),
  connectTimeoutMs: z.number().int(),
  callTimeoutMs: z.number().int(),
  enabled: z.boolean(),
  toolApproval: toolApprovalMode,
  version: z.number().int(),
  createdAt: z.iso.datetime({ offset: true }),
  updatedAt: z.iso.datetime({ offset: true }),
});
export type UpstreamResponse = z.infer<typeof upstreamResponse>;
