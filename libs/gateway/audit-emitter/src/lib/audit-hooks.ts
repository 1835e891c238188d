import type { AuditResultMode, TenantSettings } from '@portcullis/contracts/api';
import type { AuditEventV1 } from '@portcullis/contracts/jobs';
import {
  GATEWAY_RPC,
  GatewayRequestError,
  type Admission,
  type RequestHooks,
  type RequestInfo,
  type RequestOutcome,
} from '@portcullis/gateway/core';
import { isStackExhausted } from '@portcullis/shared/util-errors';
import { newId } from '@portcullis/shared/util-ids';
import type { Logger } from '@portcullis/shared/util-logger';
import { compileRedactionPaths, needsNoRedaction, redactSecrets, removedTexts, storableText, withoutTexts, withoutTextsIn } from '@portcullis/shared/util-redact';
import type { AuditEmitter } from './audit-emitter';
import { isoTime } from './iso-time';

export interface AuditHooksOptions {
  readonly emitter: AuditEmitter;
  /** The tenant's settings (audit fail mode, result mode, redaction paths); undefined = defaults. */
  readonly settings: (tenantId: string) => TenantSettings | undefined;
  /** Between an upstream's tool prefix and the tool's name (events name tools as the agent sees them). */
  readonly separator: string;
  /**
   * Whether the emitter's spool survives a crash (a spool directory is configured). Without one, a tenant that
   * fails closed is refused while the audit queue is down, since a spooled event would live only in memory.
   */
  readonly spoolDurable: boolean;
  readonly logger: Logger;
  /** Arguments/results larger than this (JSON, after redaction) are stored as a size note instead. Default 16 KiB. */
  readonly maxPayloadBytes?: number;
  readonly now?: () => number;
}

/** What another hook knows about a request that the audit trail should carry. */
export interface AuditNote {
  /** The admission of the hooks before a refusal (e.g. the policy decision of a rate-limited call). */
  readonly prior?: Admission;
  /** Something that weakened the call's checks (rate limits unchecked because Redis was away). */
  readonly degraded?: string;
}

export interface AuditHooks extends RequestHooks {
  /** Attaches a note to a request before it completes (rate-limit hook: prior admission, degraded checks). */
  note(info: RequestInfo, note: AuditNote): void;
  /**
   * Builds and emits the events of requests completed so far. `completed` only queues: events are built (redaction,
   * serialisation) in a `setImmediate` after the response has gone out; call this before closing the emitter.
   */
  drain(): void;
}

const DEFAULT_AUDIT: TenantSettings['audit'] = { failMode: 'open', results: 'metadata', redactPaths: [] };

const OUTCOME: Readonly<Record<RequestOutcome['outcome'], AuditEventV1['outcome']>> = {
  ok: 'ok',
  error: 'error',
  denied: 'denied',
  rate_limited: 'rate_limited',
  upstream_error: 'error',
  cancelled: 'cancelled',
};

/** No arguments or result to record. */
const NO_PAYLOAD = { payload: null, bytes: 4 } as const;

/**
 * Upper bound on an event's JSON apart from its free-text strings and payload: the keys and punctuation, six UUIDs
 * (event, actor, agent client, API key, upstream, approval; the tenant's is counted with the strings), the timestamp,
 * numbers, enums and nulls (at most about 650 bytes with every one of them set, about 540 in practice).
 */
const EVENT_FIXED_BYTES = 768;

/** Bounds of the memory of redacted admission reasons (`safeReason`): the policy engine remembers 10,000 decisions. */
const MAX_REMEMBERED_REASONS = 10_000;
const MAX_REMEMBERED_REASON_LENGTH = 1_024;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const uuidOrNull = (value: string | undefined | null): string | null => (value && UUID.test(value) ? value.toLowerCase() : null);
/**
 * A free-text column: storable (no lone surrogate, no NUL: see `storableText`) and at most `max` UTF-16 units, never
 * cut between the two halves of a pair (the pair is left out whole rather than leave half of it behind).
 */
const cut = (value: string, max: number): string => {
  let text = value;
  if (text.length > max) {
    const last = text.charCodeAt(max - 1);
    text = text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
  }
  return storableText(text);
};
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A result's shape without its content: top-level flags, and per list its length and item types. */
function resultMetadata(result: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const meta: Record<string, unknown> = {};
  for (const key of Object.keys(result)) {
    if (key === '_meta') continue;
    const value = result[key];
    let shape: unknown;
    if (typeof value === 'boolean') shape = value;
    else if (Array.isArray(value)) {
      // Distinct item types in first-seen order (a result list is short; an array beats a Set here).
      const types: string[] = [];
      for (const item of value) {
        if (isObject(item) && typeof item['type'] === 'string' && !types.includes(item['type'])) types.push(item['type']);
      }
      shape = types.length > 0 ? { count: value.length, types: types.slice(0, 20) } : { count: value.length };
    } else if (value !== undefined) shape = { present: true };
    else continue;
    // An upstream's `__proto__` key stays an own key of the metadata (assigned, it would set the prototype and vanish).
    if (key === '__proto__') Object.defineProperty(meta, key, { value: shape, enumerable: true, writable: true, configurable: true });
    else meta[key] = shape;
  }
  return meta;
}

/** A session's actor and id columns, the same for each of its events: worked out once per session record. */
interface SessionColumns {
  readonly actorUserId: string | null;
  readonly agentClientId: string | null;
  readonly mcpSessionId: string;
}

/**
 * Audit events on the request path, as `RequestHooks`: `completed` emits exactly one event per MCP request that
 * reached the engine (initialize, pings, lists, calls, reads, prompts, completions; denials, rate-limit refusals,
 * upstream errors) to the emitter's in-memory buffer, never waiting on Redis or Postgres. Redaction happens here,
 * before the event leaves the process: credential-like keys and values always (`redactSecrets`), then the tenant's
 * JSON paths (`audit.redactPaths`, into `{ arguments, result }`), and the result is kept in full, as metadata or not
 * at all (`audit.results`).
 *
 * `admit` enforces `audit.failMode: closed`: a call is refused (`UNAVAILABLE`, a JSON-RPC error) when the
 * emitter cannot promise to keep its event. Fail-open tenants pay nothing there (synchronous `undefined`).
 */
export function auditHooks(options: AuditHooksOptions): AuditHooks {
  const { emitter, logger, separator } = options;
  const now = options.now ?? Date.now;
  const maxPayloadBytes = options.maxPayloadBytes ?? 16 * 1024;
  const notes = new WeakMap<RequestInfo, AuditNote>();
  type Redactor = (value: Record<string, unknown>, removed?: unknown[]) => Record<string, unknown>;
  const redactors = new WeakMap<readonly string[], Redactor>();
  let lastRefusalLog = Number.NEGATIVE_INFINITY;

  const sessionColumns = new WeakMap<RequestInfo['record'], SessionColumns>();
  const columnsOf = (record: RequestInfo['record']): SessionColumns => {
    let columns = sessionColumns.get(record);
    if (columns === undefined) {
      columns = {
        actorUserId: record.principalKind === 'user' ? uuidOrNull(record.principalId) : null,
        agentClientId: record.principalKind === 'agent_client' ? uuidOrNull(record.principalId) : null,
        mcpSessionId: cut(record.id, 200),
      };
      sessionColumns.set(record, columns);
    }
    return columns;
  };
  const upstreamIds = new WeakMap<object, string | null>();
  const upstreamIdOf = (upstream: { readonly id: string } | undefined): string | null => {
    if (upstream === undefined) return null;
    let id = upstreamIds.get(upstream);
    if (id === undefined) {
      id = uuidOrNull(upstream.id);
      upstreamIds.set(upstream, id);
    }
    return id;
  };

  // The API key's column, for the credential of the last event built (consecutive events mostly share one).
  let lastCredential: string | undefined;
  let lastApiKeyId: string | null = null;
  const apiKeyIdOf = (credentialId: string | undefined): string | null => {
    if (credentialId !== lastCredential) {
      lastCredential = credentialId;
      lastApiKeyId = uuidOrNull(credentialId);
    }
    return lastApiKeyId;
  };

  const auditOf = (tenantId: string): TenantSettings['audit'] => options.settings(tenantId)?.audit ?? DEFAULT_AUDIT;

  /**
   * An admission's reason (or a request's method), redacted like free text: the policy's names the target, and a resource's name is its URI,
   * the agent's to write (`postgres://user:pw@…`, `?token=…`). Remembered per reason text: the policy engine hands
   * out the same reason, as the same string, call after call, so the common call costs a lookup, not the patterns.
   * Bounded in count and in length (a long reason is redacted each time); cleared when full, so it follows what is
   * asked now.
   */
  const safeReasons = new Map<string, string>();
  const safeReason = (reason: string): string => {
    let safe = safeReasons.get(reason);
    if (safe === undefined) {
      safe = redactSecrets(reason) as string;
      if (reason.length <= MAX_REMEMBERED_REASON_LENGTH) {
        if (safeReasons.size >= MAX_REMEMBERED_REASONS) safeReasons.clear();
        safeReasons.set(reason, safe);
      }
    }
    return safe;
  };

  const redactorFor = (paths: readonly string[]): Redactor | undefined => {
    if (paths.length === 0) return undefined;
    let redactor = redactors.get(paths);
    if (redactor === undefined) {
      try {
        redactor = compileRedactionPaths(paths);
      } catch {
        // The contract validates paths on write; a bad one here is stored data gone wrong. Keep everything safe:
        // drop arguments and results rather than store them unredacted.
        redactor = () => ({ redacted: 'invalid redaction path in tenant settings' });
      }
      redactors.set(paths, redactor);
    }
    return redactor;
  };

  /**
   * The event's `arguments` column and an upper bound on its JSON size in bytes. `removed` receives the texts of the
   * values redaction took out (by key or by the tenant's paths), so the event's free text can lose them too.
   */
  const payloadOf = (
    info: RequestInfo,
    outcome: RequestOutcome,
    admission: Admission | undefined,
    mode: AuditResultMode,
    paths: readonly string[],
    removed: string[],
  ): { readonly payload: AuditEventV1['arguments']; readonly bytes: number } => {
    const envelope: Record<string, unknown> = {};
    let empty = true;
    // What ran, or was refused: an approver's edits where the admission (or, refused, what was admitted before the
    // refusal) carries them, else the agent's.
    const args = admission?.arguments ?? info.arguments;
    if (args !== undefined) {
      envelope['arguments'] = args;
      empty = false;
    }
    if (info.method === 'initialize') {
      envelope['arguments'] = { clientInfo: info.record.clientInfo, protocolVersion: info.record.protocolVersion };
      empty = false;
    }
    if (outcome.result !== undefined && mode !== 'none') {
      envelope['result'] = mode === 'full' ? outcome.result : resultMetadata(outcome.result);
      empty = false;
    }
    if (empty) return NO_PAYLOAD;
    try {
      return boundedPayload(envelope, paths, removed);
    } catch (error) {
      // Nested deeper than the stack allows (JSON.parse takes any depth; copying and serialising recurse): the call is
      // recorded all the same, with a note in place of the part that could not be kept (the arguments survive a
      // result too deep to keep, and the reverse). Before, the whole event was lost. Each part is then bounded on its
      // own (at most twice maxPayloadBytes together); `bytes` below is the real size, so jobs are still cut right.
      if (!isStackExhausted(error)) throw error;
      // The tenant's paths do not recurse: what they remove from the whole envelope is looked for in every part kept
      // (a result echoing a redacted argument whose other arguments were too deep to keep).
      const redactor = redactorFor(paths);
      const byPaths: unknown[] = [];
      if (redactor) redactor(envelope, byPaths);
      removed.push(...removedTexts(byPaths));
      const kept: Record<string, unknown> = {};
      for (const [part, value] of Object.entries(envelope)) {
        try {
          kept[part] = (boundedPayload({ [part]: value }, paths, removed).payload as Record<string, unknown>)[part];
        } catch (inner) {
          if (!isStackExhausted(inner)) throw inner;
          kept[part] = { unserialisable: true };
        }
      }
      return { payload: kept as AuditEventV1['arguments'], bytes: 3 * JSON.stringify(kept).length };
    }
  };

  /**
   * `payloadOf` for an envelope with something in it: redacted, and within `maxPayloadBytes`. Throws if not JSON. A
   * value redaction took out is taken out wherever else it appears too (a result that echoes a redacted argument).
   */
  const boundedPayload = (
    envelope: Record<string, unknown>,
    paths: readonly string[],
    removed: string[],
  ): { readonly payload: AuditEventV1['arguments']; readonly bytes: number } => {
    const redactor = redactorFor(paths);
    if (redactor === undefined) {
      // Most calls carry nothing to redact: then the envelope is kept as it is, and its text serves as the size.
      const raw = JSON.stringify(envelope);
      if (raw.length <= maxPayloadBytes && needsNoRedaction(envelope, raw)) return { payload: envelope as AuditEventV1['arguments'], bytes: 3 * raw.length };
    }
    // The tenant's paths first, on the arguments and result as they came (what an upstream's error would quote), then
    // the credential keys. Each kind of removal has its own bounded list, so neither crowds the other out; credentials
    // inside what a path removed whole count as credentials too.
    const byPaths: unknown[] = [];
    const byKeys: unknown[] = [];
    let safe = redactor ? redactor(envelope, byPaths) : envelope;
    for (const value of byPaths) redactSecrets(value, byKeys);
    safe = redactSecrets(safe, byKeys) as Record<string, unknown>;
    removed.push(...removedTexts(byPaths), ...removedTexts(byKeys));
    const json = JSON.stringify(safe);
    // UTF-16 length × 3 bounds the UTF-8 size without encoding the string.
    if (json.length <= maxPayloadBytes) return scrubbed(safe, json, removed);
    // Over the limit: the result gives way first, so a large result (a file read in `full` mode) never takes the call's
    // arguments with it; arguments still too large become a size note of their own.
    const sizeNote = (value: unknown) => {
      const text = JSON.stringify(value) ?? '';
      return { truncated: true, bytes: Buffer.byteLength(text), ...(isObject(value) ? { keys: Object.keys(value).slice(0, 50) } : {}) };
    };
    const trimmed: Record<string, unknown> = { ...safe };
    const resultLength = trimmed['result'] === undefined ? 0 : (JSON.stringify(trimmed['result']) ?? '').length;
    // The arguments alone fit: only the result goes. Otherwise the arguments go, and the result too if still needed.
    if (json.length - resultLength <= maxPayloadBytes) trimmed['result'] = sizeNote(trimmed['result']);
    else if (trimmed['arguments'] !== undefined) trimmed['arguments'] = sizeNote(trimmed['arguments']);
    let text = JSON.stringify(trimmed);
    if (text.length > maxPayloadBytes && trimmed['result'] !== undefined) {
      trimmed['result'] = sizeNote(trimmed['result']);
      text = JSON.stringify(trimmed);
    }
    return scrubbed(trimmed, text, removed);
  };

  /**
   * The payload with the removed texts taken out wherever they appear (a result echoing a redacted argument), and its
   * size bound. Done on what is kept, after any cut to `maxPayloadBytes`: a large result that becomes a size note is
   * not searched. `json` is the payload's text; a replacement can lengthen it, so it is measured again when one is made.
   */
  const scrubbed = (
    payload: Record<string, unknown>,
    json: string,
    removed: readonly string[],
  ): { readonly payload: AuditEventV1['arguments']; readonly bytes: number } => {
    const clean = withoutTextsIn(payload, removed);
    const length = clean === payload ? json.length : JSON.stringify(clean).length;
    return { payload: clean as AuditEventV1['arguments'], bytes: 3 * length };
  };

  const toolOf = (info: RequestInfo): string | null => {
    // A request about a task is recorded as about the tool whose call started it.
    const target = info.target ?? info.taskOf;
    if (!target) return null;
    // A resource's URI is the agent's to write (`postgres://user:pw@…`, `?token=…`): redacted like free text. Tool and
    // prompt names are the listings' (1–128 characters of [A-Za-z0-9_.-]).
    // Redacted before it is cut: a cut inside a credential leaves what the patterns need (the `@` after a password).
    if (target.kind === 'resource') return cut(redactSecrets(target.name) as string, 300);
    return cut(`${target.upstream.toolPrefix}${separator}${target.name}`, 300);
  };

  /** The event and an upper bound on its JSON size (the emitter cuts jobs by it without serialising the event). */
  const eventOf = (info: RequestInfo, outcome: RequestOutcome): { readonly event: AuditEventV1; readonly sizeHint: number } => {
    const { record } = info;
    const columns = columnsOf(record);
    const audit = auditOf(record.tenantId);
    const note = notes.get(info);
    // A refused request keeps what the hooks before the refusal admitted: the policy's decision of a call rate-limited,
    // or held for approval and then cancelled, denied, expired or refused after its approval. A denial of a call that
    // was not held is the refusing check's alone (`deny`, its own reason and data).
    const prior = note?.prior ?? outcome.prior;
    const admission = outcome.admission ?? (outcome.outcome !== 'denied' || prior?.decision === 'require_approval' ? prior : undefined);
    const error = outcome.error;
    // The gateway's own refusals name their snapshot and approval in the error's data; an upstream's error data is the
    // upstream's to write, and says nothing about either.
    const errorData = isObject(error?.data) && outcome.outcome !== 'upstream_error' && outcome.fromUpstream !== true ? error.data : undefined;
    const snapshotFromError = typeof errorData?.['snapshotVersion'] === 'number' ? errorData['snapshotVersion'] : null;
    let decision: AuditEventV1['decision'] = admission?.decision ?? null;
    // A call held for approval stays `require_approval` however it ends (the outcome and error code say how: a person
    // denied it, nobody decided in time, a check after the wait refused it); any other denial is `deny`.
    if (outcome.outcome === 'denied' && decision !== 'require_approval') decision = 'deny';
    const removed: string[] = [];
    const { payload, bytes } = payloadOf(info, outcome, admission, audit.results, audit.redactPaths, removed);
    const reasons: string[] = [];
    // The policy's reason may quote an argument too: a condition that failed on a value (the CEL library names it, as in
    // "No such key: <value>"). Any value the arguments' redaction took out is taken out of it as well.
    if (admission?.reason) reasons.push(removed.length > 0 ? withoutTexts(safeReason(admission.reason), removed) : safeReason(admission.reason));
    // An error's message may quote what the agent or upstream sent: credential-looking parts are redacted as in the
    // arguments, and so is any value the arguments' redaction took out (the other reasons are the gateway's own words,
    // apart from the target's name in the admission's, redacted above).
    // Redacted before the cut to what is kept (a cut inside a credential leaves what the patterns need); the first cut
    // only bounds the work, far past what is kept.
    if (error && outcome.outcome !== 'ok') reasons.push(cut(redactSecrets(withoutTexts(cut(error.message, 64 * 1024), removed)) as string, 2_000));
    if (note?.degraded) reasons.push(note.degraded);
    let auditOutcome = OUTCOME[outcome.outcome];
    if (error?.code === GATEWAY_RPC.UPSTREAM_TIMEOUT && outcome.outcome !== 'cancelled') auditOutcome = 'timeout';
    const approvalId = admission?.approvalId ?? (typeof errorData?.['approvalId'] === 'string' ? errorData['approvalId'] : undefined);
    const event: AuditEventV1 = {
      v: 1,
      eventId: newId(),
      tenantId: record.tenantId,
      occurredAt: isoTime(info.startedAt),
      kind: 'mcp',
      // The method is the agent's to write (an unknown one is refused, and recorded, as sent): redacted as `reason` is,
      // through the same memory (the known methods cost a lookup). Before, a credential sent as a method was stored.
      method: cut(safeReason(info.method), 200),
      actorUserId: columns.actorUserId,
      agentClientId: columns.agentClientId,
      // The key the request presented (the session may be used with any of its principal's keys).
      apiKeyId: apiKeyIdOf(info.credentialId),
      mcpSessionId: columns.mcpSessionId,
      upstreamId: upstreamIdOf((info.target ?? info.taskOf)?.upstream),
      tool: toolOf(info),
      targetType: null,
      targetId: null,
      decision,
      reason: reasons.length > 0 ? cut(reasons.join('; '), 2_000) : null,
      snapshotVersion: admission?.snapshotVersion ?? snapshotFromError,
      approvalId: uuidOrNull(approvalId),
      latencyMs: Math.min(2_147_483_647, Math.max(0, Math.round(outcome.latencyMs))),
      outcome: auditOutcome,
      // `upstream:` only for the upstream's own error: a timeout, a refused connection or an open circuit (also
      // `upstream_error`) answered the agent with the gateway's code, and was recorded as the upstream's before.
      errorCode: error ? cut(outcome.fromUpstream === true ? `upstream:${error.code}` : String(error.code), 100) : null,
      arguments: payload,
      traceId: cut(info.traceId, 64),
      traceparent: null,
    };
    // Fixed-size parts (keys, ids, timestamps, numbers) fit in EVENT_FIXED_BYTES; a free-text string's UTF-16 unit is at
    // most 6 bytes of JSON (a control character escaped as \u00XX).
    let text = event.tenantId.length + event.method.length + (event.mcpSessionId?.length ?? 0) + (event.traceId?.length ?? 0);
    text += (event.tool?.length ?? 0) + (event.reason?.length ?? 0) + (event.errorCode?.length ?? 0);
    return { event, sizeHint: EVENT_FIXED_BYTES + 6 * text + bytes };
  };

  // Fail-closed calls admitted whose events are not emitted yet (each holds a reservation in the emitter).
  const awaitingEvents = new Set<RequestInfo>();
  // Completed requests waiting to become events: info, outcome, info, outcome, ... (one flat array, no pairs).
  const pending: (RequestInfo | RequestOutcome)[] = [];
  let scheduled = false;
  function drain(): void {
    scheduled = false;
    const batch = pending.splice(0);
    for (let index = 0; index < batch.length; index += 2) {
      const info = batch[index] as RequestInfo;
      // Reserved in the emitter until now (completed, then built here): from now on the emitter holds it.
      const reserved = awaitingEvents.delete(info);
      try {
        const { event, sizeHint } = eventOf(info, batch[index + 1] as RequestOutcome);
        emitter.emit(event, sizeHint, reserved);
      } catch (error) {
        if (reserved) emitter.release();
        // Never the request's problem; the emitter counts and logs its own drops.
        logger.error({ err: error instanceof Error ? error.message : String(error), method: info.method, traceId: info.traceId }, 'audit event could not be built');
      }
    }
  }

  return {
    note(info, note) {
      const existing = notes.get(info);
      notes.set(info, existing ? { ...existing, ...note } : note);
    },

    admit(info) {
      if (auditOf(info.record.tenantId).failMode !== 'closed') return undefined;
      if (emitter.canAcceptFailClosed() && (options.spoolDurable || emitter.stats().redis === 'up')) {
        // Room is kept for this call's event until it is emitted (the call may run, or wait for approval, a while).
        emitter.reserve();
        awaitingEvents.add(info);
        return undefined;
      }
      const t = now();
      if (t - lastRefusalLog > 10_000) {
        lastRefusalLog = t;
        logger.error({ tenantId: info.record.tenantId, ...emitter.stats() }, 'calls refused: the audit trail cannot take events and the tenant fails closed');
      }
      throw new GatewayRequestError(
        GATEWAY_RPC.UNAVAILABLE,
        'The audit trail cannot record calls right now and this tenant does not allow unaudited calls; try again shortly',
        { reason: 'audit_unavailable', retryAfterSeconds: 1 },
        'error',
      );
    },

    completed(info, outcome) {
      // Off the response path: the engine reports before the answer is written. The arguments and result are kept by
      // reference (copied only when something in them needs redacting) until the emitter serialises the event: nothing
      // may change them once the request completed (nothing does: the engine and hooks treat them as read-only).
      pending.push(info, outcome);
      if (!scheduled) {
        scheduled = true;
        setImmediate(drain);
      }
    },

    drain,
  };
}
