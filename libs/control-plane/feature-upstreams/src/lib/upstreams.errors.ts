import { AppError, type ErrorCode } from '@portcullis/shared/util-errors';
import type { ProbeFailureReason } from './upstream-probe';

/** Test connections one tenant may start per minute on one control-plane process. */
export const TESTS_PER_MINUTE = 20;

const invalid = (path: string, message: string) =>
  new AppError('VALIDATION_FAILED', 'The request is not valid.', { fields: [{ path, message }] });

export const upstreamErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such upstream.'),
  toolPrefixTaken: (prefix: string, holder: string) =>
    new AppError(
      'CONFLICT',
      `Tool prefix "${prefix}" is already used by upstream "${holder}" in this tenant; their tool names would collide. Choose another prefix.`,
      { fields: [{ path: 'toolPrefix', message: `already used by upstream "${holder}"` }] },
    ),
  namedByRules: (name: string, rules: readonly string[]) =>
    new AppError(
      'CONFLICT',
      `Policy rules name upstream "${name}" (${rules.slice(0, 10).join(', ')}${rules.length > 10 ? ', …' : ''}); renaming it would turn them off. Change the rules first (a pattern such as "${name}*" can cover both names), then rename.`,
      { fields: [{ path: 'name', message: 'named by policy rules' }] },
    ),
  nameTaken: (name: string) =>
    new AppError('CONFLICT', `An upstream named "${name}" already exists in this tenant.`, {
      fields: [{ path: 'name', message: 'already used' }],
    }),
  conflict: () => new AppError('CONFLICT', 'The name or tool prefix is already used in this tenant.'),
  stdioNeedsPlatformAdmin: () =>
    new AppError('FORBIDDEN', 'Only platform admins may create stdio upstreams or change their command, arguments or environment.'),
  commandNotAllowed: () => invalid('command', 'not in the stdio command allowlist of this installation'),
  fieldNotForTransport: (field: string, transport: string) => invalid(field, `does not apply to ${transport} upstreams`),
  headersForOtherOrigin: () =>
    invalid('headers', 'must be given again (or null) when the URL moves to another origin: the stored headers were set for the old one'),
  /** Another update of the upstream committed between this one's checks and its write. */
  changedMeanwhile: () =>
    new AppError('CONFLICT', 'The upstream was changed by another request while this one was being applied; read it again and repeat your change.'),
  /** The upstream was edited while a test connection ran: what it found is not stored. */
  changedDuringTest: () =>
    new AppError('CONFLICT', 'The upstream was changed while it was being tested, so nothing it found was stored; test it again.'),
  ifMatchMalformed: () => new AppError('PRECONDITION_FAILED', 'If-Match must be the upstream\'s version as an ETag, e.g. "3".'),
  stale: (current: number) =>
    new AppError('PRECONDITION_FAILED', `The upstream changed since you read it (it is now at version ${current}); read it again and repeat your change.`),
  toolNotFound: () => new AppError('NOT_FOUND', 'No such tool, prompt or resource on this upstream.'),
  toolDefinitionMoved: () =>
    new AppError(
      'CONFLICT',
      'The stored definition is no longer the one you reviewed (a newer test connection found another). Review it again.',
      { fields: [{ path: 'contentHash', message: 'does not match the stored definition' }] },
    ),
  toolRemoved: () => new AppError('CONFLICT', 'The upstream no longer advertises this item; run a test connection first.'),
  secretsUnreadable: () =>
    new AppError('CONFLICT', "The upstream's stored headers or environment cannot be opened with this installation's keys; set them again."),
  /** Test connection failures: one fixed sentence per reason, naming nothing the admin did not configure. */
  shuttingDown: () => new AppError('DEPENDENCY_UNAVAILABLE', 'The control plane is shutting down; try the test connection again shortly.', { retryAfterSeconds: 5 }),
  tooManyTests: () => new AppError('RATE_LIMITED', 'Too many test connections of this tenant are running; try again when one has finished.'),
  testsTooOften: (retryAfterSeconds: number) =>
    new AppError('RATE_LIMITED', `This tenant ran ${TESTS_PER_MINUTE} test connections in the last minute, the most allowed; try again in ${retryAfterSeconds} s.`, { retryAfterSeconds }),
  tooManyDefinitions: (max: number) =>
    new AppError(
      'CONFLICT',
      `This upstream would have more than ${max} stored definitions (those it no longer advertises included, kept while they pin or hold an item); nothing was stored. Forget the stored definitions (DELETE …/tools, or with ?state=removed only those it no longer advertises) and test again.`,
      { fields: [{ path: 'reason', message: 'too_many_definitions' }] },
    ),
  testFailed: (reason: ProbeFailureReason) => {
    const [code, message] = TEST_FAILURES[reason];
    return new AppError(code, message, { fields: [{ path: 'reason', message: reason }] });
  },
};

const TEST_FAILURES: Readonly<Record<ProbeFailureReason, readonly [ErrorCode, string]>> = {
  blocked: ['FORBIDDEN', "The upstream's address is not permitted by this installation's network policy (private, loopback, link-local or reserved)."],
  unreachable: ['UPSTREAM_UNAVAILABLE', 'The upstream could not be reached (connection refused, name not found, or the command could not be started).'],
  tls: ['UPSTREAM_UNAVAILABLE', "The TLS handshake with the upstream failed (its certificate is not trusted or does not match the host)."],
  timeout: ['UPSTREAM_TIMEOUT', 'The upstream did not complete the MCP handshake and listings in time.'],
  not_mcp: ['UPSTREAM_UNAVAILABLE', 'The upstream answered, but not as an MCP server (check the URL, path and transport).'],
  rejected: ['UPSTREAM_UNAVAILABLE', "The upstream refused the connection (HTTP 401/403): check the upstream's configured headers."],
  too_large: ['UPSTREAM_UNAVAILABLE', 'The upstream advertises more definitions, or larger ones, than this installation accepts.'],
  unstorable: ['UPSTREAM_UNAVAILABLE', 'The upstream advertises a definition that cannot be stored (it contains a NUL character).'],
};
