import type { StdioUserIds } from '@portcullis/shared/util-process-user';
import { isReservedUpstreamHeader } from '@portcullis/contracts/api';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike, Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { definitionHash, definitionKey, INSTRUCTIONS_NAME, MAX_INSTRUCTIONS_CHARS, pinnedDefinition, relayedInstructions, type PinnedDefinition, type PinnedKind } from '@portcullis/contracts/tool-pins';
import type { LookupFunction } from 'node:net';
import { ADDRESS_REFUSED, checkUpstreamUrl, createGuardedLookup, LOOKUP_QUEUED, type NetworkPolicy } from '@portcullis/shared/util-net-guard';
import { maskListedItem, secretMaskOf } from '@portcullis/shared/util-redact';
import { Agent, fetch as undiciFetch } from 'undici';
import { z } from 'zod';
import { ProbeLineTooLong, ProbeStdinFull, ProbeStdioTransport } from './probe-stdio-transport';

/** Requests a test may have sent to its upstream that are not answered yet. */
const MAX_PROBE_REQUESTS_UNANSWERED = 32;
/**
 * Pages of one listing a test reads: an upstream handing out empty pages, each with a new cursor, was read until the
 * deadline (and each page's stream may stay open).
 */
const MAX_PROBE_PAGES = 100;

/** Why a test connection failed. Each reason has one fixed, caller-safe sentence (see `upstreamErrors`). */
export type ProbeFailureReason = 'blocked' | 'unreachable' | 'tls' | 'timeout' | 'not_mcp' | 'rejected' | 'too_large' | 'unstorable';

export class ProbeFailure extends Error {
  constructor(
    readonly reason: ProbeFailureReason,
    /** For the operator's log only: an error code or HTTP status, never a message, address or header. */
    readonly detail?: string,
  ) {
    super(`test connection failed: ${reason}`);
    this.name = 'ProbeFailure';
  }
}

export interface ProbeTarget {
  readonly transport: 'streamable_http' | 'sse' | 'stdio';
  readonly url: string | null;
  /** Opened header values (only for this connection; never stored or logged). */
  readonly headers: Readonly<Record<string, string>>;
  readonly command: string | null;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

export interface ProbeOptions {
  /** The same network policy the gateway applies to URL-based upstreams. */
  readonly network: NetworkPolicy;
  /** Bound on the whole test: connect, handshake and every listing. */
  readonly timeoutMs: number;
  /** Most definitions accepted per kind (an upstream advertising more is refused as `too_large`). */
  readonly maxItemsPerKind: number;
  /** The user and group stdio servers run as (CONTROL_PLANE_STDIO_RUN_AS); unset: the control plane's own. */
  readonly stdioRunAs?: { readonly uid: number; readonly gid: number } | undefined;
  /** Instead: an id of CONTROL_PLANE_STDIO_UID_RANGE for each server (`ProbeStdioOptions.userIds`). */
  readonly stdioUserIds?: StdioUserIds | undefined;
  /** Ends the test early (the control plane shutting down): it fails as `timeout`, which the caller answers as 503. */
  readonly signal?: AbortSignal;
  /** Told when a server's id could not be cleared after it and is retired. */
  readonly onStdioUserRetired?: ((code: string | undefined) => void) | undefined;
  /**
   * The guarded lookup to resolve host names with: the tenant's share of the process's lookups (`createGuardedLookups`),
   * so one tenant's tests of names that never resolve cannot take the thread pool. Unset: one of its own.
   */
  readonly lookup?: LookupFunction;
}

export interface DiscoveredItem {
  readonly kind: PinnedKind;
  readonly name: string;
  /**
   * The pinned fields as stored and shown to members: the upstream's configured secrets masked (`maskListedItem`, as
   * the gateway masks them for agents), so that an upstream quoting the credential it was sent does not put it there.
   */
  readonly definition: PinnedDefinition;
  /** `definitionHash` of the item as the upstream wrote it, unmasked: what the gateway computes from its listings. */
  readonly hash: string;
}

export interface ProbeResult {
  readonly serverInfo: { readonly name: string; readonly version: string };
  readonly protocolVersion: string;
  readonly items: readonly DiscoveredItem[];
}

const LISTINGS = [
  { kind: 'tool', capability: 'tools', method: 'tools/list', field: 'tools' },
  { kind: 'prompt', capability: 'prompts', method: 'prompts/list', field: 'prompts' },
  { kind: 'resource', capability: 'resources', method: 'resources/list', field: 'resources' },
  { kind: 'resource_template', capability: 'resources', method: 'resources/templates/list', field: 'resourceTemplates' },
] as const;

/** Any object: listing items are checked one by one, so one odd item does not fail the whole test. */
const anyResult = z.looseObject({});

/** Bounds on what one test connection stores: a name fits the unique index, a definition and the sum stay modest. */
const MAX_NAME_BYTES = 1_024;
const MAX_DEFINITION_BYTES = 256 * 1024;
const MAX_TOTAL_BYTES = 32 * 1024 * 1024;
/**
 * The most one answer of the upstream may be, unpacked (fetch unpacks gzip and brotli as it reads), as the gateway
 * bounds a message: the SDK reads a JSON answer or an SSE event whole, so without it a compressed bomb or an endless
 * answer would fill the control plane's memory, every tenant's, until the test's deadline.
 */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/**
 * The bytes an SSE stream has sent since its last event ended (a blank line: two line feeds, a carriage return before
 * each or not), after `chunk`; `afterNewline`: the last byte before was a line feed (CRs are passed over).
 */
function sinceEventEnd(chunk: Uint8Array, received: number, afterNewline: boolean): { received: number; afterNewline: boolean } {
  for (const byte of chunk) {
    if (byte === 0x0a) {
      if (afterNewline) received = 0;
      else received += 1;
      afterNewline = true;
    } else if (byte !== 0x0d) {
      received += 1;
      afterNewline = false;
    }
  }
  return { received, afterNewline };
}

/** Statuses whose response has no body (a Response cannot be made with one). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/** The UTF-8 size of a definition's JSON, and whether a key or string holds a NUL (Postgres text and jsonb refuse it). */
/** Postgres jsonb holds neither NUL nor a lone UTF-16 surrogate. */
const unstorableText = (text: string): boolean => text.includes('\u0000') || !(text as string & { isWellFormed(): boolean }).isWellFormed();

function measure(definition: PinnedDefinition): { bytes: number; nul: boolean } {
  let nul = false;
  const json = JSON.stringify(definition, (key, value: unknown) => {
    if (unstorableText(key) || (typeof value === 'string' && unstorableText(value))) nul = true;
    return value;
  });
  return { bytes: Buffer.byteLength(json ?? '', 'utf8'), nul };
}

const TLS_CODES = /^(CERT_|ERR_TLS_|ERR_SSL_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|EPROTO$)/;

/** The first error code along an error's `cause` chain. */
function errorCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

function classifyNetworkError(error: unknown): ProbeFailure {
  const code = errorCode(error);
  if (code === ADDRESS_REFUSED) return new ProbeFailure('blocked', code);
  if (code !== undefined && TLS_CODES.test(code)) return new ProbeFailure('tls', code);
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'ETIMEDOUT' || code === 'ETIMEOUT' || code === LOOKUP_QUEUED) {
    return new ProbeFailure('timeout', code);
  }
  return new ProbeFailure('unreachable', code);
}

/**
 * Connects to an upstream with the official MCP SDK client — Streamable HTTP, legacy SSE or stdio, as the gateway
 * would — and lists its tools, prompts, resources and resource templates (every page), and takes its instructions.
 * URL-based upstreams go through the gateway's SSRF guard: the URL is checked, and names are resolved once with
 * private addresses dropped (so a rebinding DNS answer cannot slip one in). Everything is bounded by `timeoutMs`.
 */
export async function probeUpstream(target: ProbeTarget, options: ProbeOptions): Promise<ProbeResult> {
  const abort = new AbortController();
  const deadline = setTimeout(() => abort.abort(), options.timeoutMs);
  const stop = (): void => abort.abort();
  options.signal?.addEventListener('abort', stop, { once: true });
  // What the network layer saw last: the SDK wraps transport errors in its own, so the cause is recorded here.
  const seen: { failure?: ProbeFailure } = {};
  let agent: Agent | undefined;
  let transport: Transport | undefined;
  const client = new Client({ name: 'portcullis-test-connection', version: '0.1.0' }, { capabilities: {} });
  try {
    // Ended before it began (a shutdown): nothing is started.
    if (options.signal?.aborted === true) throw new ProbeFailure('timeout', 'ended');
    if (target.transport === 'stdio') {
      if (target.command === null) throw new ProbeFailure('unreachable', 'no command');
      const stdio = new ProbeStdioTransport(
        { command: target.command, args: target.args, env: target.env },
        { runAs: options.stdioRunAs, userIds: options.stdioUserIds, onRetired: options.onStdioUserRetired, maxLineBytes: MAX_RESPONSE_BYTES },
      );
      stdio.onerror = (error) =>
        (seen.failure ??=
          error instanceof ProbeLineTooLong
            ? new ProbeFailure('too_large', 'line')
            : error instanceof ProbeStdinFull
              ? new ProbeFailure('not_mcp', 'stdin_full')
              : new ProbeFailure('unreachable', errorCode(error)));
      transport = stdio;
    } else {
      const decision = checkUpstreamUrl(target.url, options.network);
      if (!decision.ok) throw new ProbeFailure('blocked', 'url');
      // No cap on sockets: a server may leave the event stream of a POST it answered open (MCP: it SHOULD close it), and
      // the SDK reads each until it ends, so a cap of 8 failed the test of such a server at its eighth listing page (found
      // by re-review). What bounds them: the requests not answered yet, and the listing pages.
      const guardedAgent = new Agent({ connect: { lookup: options.lookup ?? createGuardedLookup(options.network), timeout: options.timeoutMs } });
      agent = guardedAgent;
      // Requests sent and not answered yet (no response head). A server that sends pings and never answers the POSTs
      // of their answers had each held open on a socket of its own: 13,000 sockets and 400 MiB within one test (found
      // by re-review). Past the bound the test ends, as a stdio server's does. (A POST of answers alone is answered
      // 202; the SDK drops the body of any other answer to it.)
      let unanswered = 0;
      const guardedFetch: FetchLike = async (url, init) => {
        if (unanswered >= MAX_PROBE_REQUESTS_UNANSWERED) {
          seen.failure ??= new ProbeFailure('not_mcp', 'requests_unanswered');
          abort.abort();
          throw seen.failure;
        }
        unanswered += 1;
        try {
          // The SDK's own signal (it aborts streams on close) and the test's deadline both end the request.
          const signal = init?.signal ? AbortSignal.any([init.signal, abort.signal]) : abort.signal;
          const response = await undiciFetch(url, { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher: guardedAgent, signal, redirect: 'manual' }).finally(() => (unanswered -= 1));
          if (response.status === 401 || response.status === 403) seen.failure ??= new ProbeFailure('rejected', String(response.status));
          else if (response.status >= 300 && response.status !== 405 && init?.method !== 'DELETE') {
            // 405 on GET/DELETE is a normal answer (no standalone stream, no session deletion).
            seen.failure ??= new ProbeFailure(response.status >= 500 ? 'unreachable' : 'not_mcp', String(response.status));
          }
          if (response.body === null || NULL_BODY_STATUSES.has(response.status)) return response as unknown as Response;
          // One answer is one JSON response, or one event of an SSE stream: a legacy SSE upstream answers everything
          // on its one GET stream, whose running total passed the bound on a few large listing pages (found by review).
          // Only on a success, which the SDK reads event by event: any other it reads whole (`text()`) for its message,
          // and an endless run of short events there was held in memory whole (found by re-review).
          const events = response.ok && (response.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
          let received = 0;
          let afterNewline = false;
          const bounded = (response.body as unknown as ReadableStream<Uint8Array>).pipeThrough(
            new TransformStream<Uint8Array, Uint8Array>({
              transform(chunk, controller) {
                if (events) ({ received, afterNewline } = sinceEventEnd(chunk, received, afterNewline));
                else received += chunk.byteLength;
                if (received <= MAX_RESPONSE_BYTES) {
                  controller.enqueue(chunk);
                  return;
                }
                seen.failure ??= new ProbeFailure('too_large', 'response');
                controller.error(seen.failure);
                abort.abort();
              },
            }),
          );
          return new Response(bounded as unknown as ReadableStream<Uint8Array<ArrayBuffer>>, { status: response.status, statusText: response.statusText, headers: response.headers as unknown as Headers });
        } catch (error) {
          if (!abort.signal.aborted) seen.failure ??= classifyNetworkError(error);
          throw error;
        }
      };
      // As the gateway sends them: a configured Host (say) would pick another virtual host behind the checked address.
      const headers = Object.fromEntries(Object.entries(target.headers).filter(([name]) => !isReservedUpstreamHeader(name)));
      // Uncompressed answers asked for (a compressed one is still bounded as it is unpacked).
      const requestInit = { headers: { ...headers, 'accept-encoding': 'identity' } };
      transport =
        target.transport === 'streamable_http'
          ? new StreamableHTTPClientTransport(decision.url, { fetch: guardedFetch, requestInit })
          : new SSEClientTransport(decision.url, { fetch: guardedFetch, requestInit });
    }
    const requestOptions = { signal: abort.signal, timeout: options.timeoutMs, maxTotalTimeout: options.timeoutMs };
    let protocolVersion = 'unknown';
    const setProtocolVersion = transport.setProtocolVersion?.bind(transport);
    transport.setProtocolVersion = (version: string) => {
      protocolVersion = version;
      setProtocolVersion?.(version);
    };
    // Raced with the deadline: a legacy SSE stream that never names its endpoint left connect pending for good (the
    // deadline's abort ends its GET, which the SDK's event source takes for its own close and reports nothing), and
    // each such test kept one of the tenant's few test slots (found by re-review).
    const deadlinePassed = new Promise<never>((_resolve, reject) => abort.signal.addEventListener('abort', () => reject(new Error('deadline')), { once: true }));
    deadlinePassed.catch(() => undefined);
    await Promise.race([client.connect(transport, requestOptions), deadlinePassed]);
    const serverInfo = client.getServerVersion();
    const capabilities = client.getServerCapabilities() ?? {};
    const items: DiscoveredItem[] = [];
    let totalBytes = 0;
    const mask = secretMaskOf(target);
    const instructions = client.getInstructions();
    if (typeof instructions === 'string' && instructions.length > 0) {
      // As the gateway relays them (cut to the same length), so that the pin is of what agents are told.
      const relayed = { instructions: relayedInstructions(instructions) };
      // Masked as the gateway masks them: a value the cut split by its beginning too (found by review).
      const definition = { instructions: mask.maskRelayed(relayed.instructions, MAX_INSTRUCTIONS_CHARS) };
      const size = measure(definition);
      if (size.nul) throw new ProbeFailure('unstorable', 'instructions with NUL or a lone surrogate');
      totalBytes += size.bytes;
      items.push({ kind: 'instructions', name: INSTRUCTIONS_NAME, definition, hash: definitionHash('instructions', relayed) });
    }
    for (const listing of LISTINGS) {
      if (!capabilities[listing.capability]) continue;
      const seenNames = new Set<string>();
      let cursor: string | undefined;
      let pages = 0;
      do {
        if (++pages > MAX_PROBE_PAGES) throw new ProbeFailure('too_large', `${listing.kind} pages`);
        const page = (await client.request(
          { method: listing.method, params: cursor === undefined ? {} : { cursor } },
          anyResult,
          requestOptions,
        )) as Record<string, unknown>;
        const list = page[listing.field];
        if (!Array.isArray(list)) throw new ProbeFailure('not_mcp', `${listing.method} without ${listing.field}`);
        for (const raw of list) {
          if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) continue;
          const item = raw as Record<string, unknown>;
          const name = definitionKey(listing.kind, item);
          if (name === undefined || seenNames.has(name)) continue;
          seenNames.add(name);
          if (seenNames.size > options.maxItemsPerKind) throw new ProbeFailure('too_large', listing.kind);
          const definition = maskListedItem(mask, pinnedDefinition(listing.kind, item));
          const size = measure(definition);
          if (size.nul) throw new ProbeFailure('unstorable', `${listing.kind} with NUL or a lone surrogate`);
          totalBytes += size.bytes;
          if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES || size.bytes > MAX_DEFINITION_BYTES || totalBytes > MAX_TOTAL_BYTES) {
            throw new ProbeFailure('too_large', `${listing.kind} size`);
          }
          items.push({ kind: listing.kind, name, definition, hash: definitionHash(listing.kind, item) });
        }
        const next = page['nextCursor'];
        cursor = typeof next === 'string' && next.length > 0 ? next : undefined;
      } while (cursor !== undefined);
    }
    return {
      // What it calls itself is the upstream's text too, shown to whoever tests it: masked as its definitions are.
      serverInfo: { name: mask.mask(serverInfo?.name ?? 'unknown'), version: mask.mask(serverInfo?.version ?? 'unknown') },
      protocolVersion,
      items,
    };
  } catch (error) {
    if (error instanceof ProbeFailure) throw error;
    if (seen.failure) throw seen.failure;
    if (abort.signal.aborted) throw new ProbeFailure('timeout');
    // The handshake or a listing failed without a network error: whatever answered does not speak MCP.
    throw new ProbeFailure('not_mcp', errorCode(error) ?? (error instanceof Error ? error.name : undefined));
  } finally {
    clearTimeout(deadline);
    options.signal?.removeEventListener('abort', stop);
    await client.close().catch(() => undefined);
    // The SDK's close may not reach the transport again (a failed connect closed it already, and forgot it): a stdio
    // server has exited, its id being cleared, once its own close has settled.
    if (transport instanceof ProbeStdioTransport) await transport.close();
    await agent?.destroy().catch(() => undefined);
  }
}

