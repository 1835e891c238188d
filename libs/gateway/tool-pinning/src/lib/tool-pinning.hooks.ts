import { definitionHash, INSTRUCTIONS_NAME } from '@portcullis/contracts/tool-pins';
import { deepFreeze, GATEWAY_RPC, GatewayRequestError, isDeepFrozen, type RequestHooks, type RequestInfo } from '@portcullis/gateway/core';
import type { Logger } from '@portcullis/shared/util-logger';
import { foldedKey, pinKey, type EnforcedKind, type PinEntry, type ToolPinIndex, type UpstreamPins } from './tool-pin-index';

/** Why an item is hidden and refused. */
export type PinVerdict = 'ok' | 'changed' | 'not_approved' | 'blocked' | 'unavailable' | 'other_spelling';

export interface ToolPinningOptions {
  readonly pins: ToolPinIndex;
  readonly logger: Logger;
  /**
   * Bound on the per-replica memory of listed hashes and of warnings already logged. Default 100,000. Listed hashes
   * that differ from the stored definition are kept past it (forgetting one could let a changed tool be called); the
   * pin index bounds those.
   */
  readonly maxRemembered?: number;
}

const enforced = (kind: string): kind is EnforcedKind => kind === 'tool' || kind === 'prompt';

/**
 * The fields a pinned item is relayed with: the pinned ones (what an administrator approved) and the specification's
 * presentation and transport fields, which the pin leaves out by design (ADR 0013). Any other top-level key is an
 * upstream's own invention that nobody reviewed — text a client might show to its model — and is dropped.
 */
const RELAYED_FIELDS: Readonly<Record<EnforcedKind, ReadonlySet<string>>> = {
  tool: new Set(['name', 'title', 'description', 'inputSchema', 'outputSchema', 'annotations', 'icons', 'execution', '_meta']),
  prompt: new Set(['name', 'title', 'description', 'arguments', 'icons', '_meta']),
};

/** The item itself when it holds only relayed fields (the usual case), else a copy without the others. */
function relayable(kind: EnforcedKind, item: Record<string, unknown>): Record<string, unknown> {
  const fields = RELAYED_FIELDS[kind];
  let extra = false;
  for (const key in item) {
    if (!fields.has(key)) {
      extra = true;
      break;
    }
  }
  if (!extra) return item;
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(item)) if (fields.has(key)) copy[key] = item[key];
  return copy;
}

const REFUSALS: Readonly<Record<Exclude<PinVerdict, 'ok'>, string>> = {
  changed: 'its definition changed since an administrator approved it; it is unavailable until the new definition is approved',
  not_approved: 'it has not been approved by an administrator yet',
  blocked: 'an administrator blocked it',
  unavailable: 'the gateway has not loaded the approved definitions yet; try again shortly',
  other_spelling:
    'the upstream advertises no item spelled so, only one that differs in upper and lower case (or in how a letter is written: ß for ss, a decomposed accent); call it by the name the listing shows',
};

/**
 * Tool pinning against "rug pulls" (docs/adr/0013-tool-pinning.md). `filter` hashes each listed tool and prompt with
 * the control plane's function (`definitionHash`) and hides every item whose definition is not the approved one,
 * logging a warning once per (upstream, item, definition). It remembers what it listed per (upstream, item) — the
 * raw JSON and its hash — so an unchanged listing is not hashed again and `admit` costs two map lookups per call. A call to a hidden item is refused with -32003 and a reason.
 * A replica that has not listed the upstream yet judges by the definition the last test connection stored.
 * `instructions` holds back an upstream's instructions, when a session opens, unless they are the approved text
 * (stored by the test connection under kind `instructions`; none stored: relayed, unless the upstream requires
 * approval of what it has never seen).
 * Until the pins have loaded once (the database was unreachable at boot), every tool and prompt is hidden and refused.
 */
export function toolPinningHooks(options: ToolPinningOptions): RequestHooks {
  const { pins, logger } = options;
  const max = options.maxRemembered ?? 100_000;
  // Per (upstream, item): the raw JSON last listed and its hash. An unchanged listing costs a JSON.stringify and a
  // string comparison per item instead of canonical JSON and SHA-256.
  const listed = new Map<string, { readonly json: string; readonly hash: string; readonly upstreamId: string; readonly key: string }>();
  // The hash of each deep-frozen item (a listing page the engine froze and caches): a listing answered from that page
  // again costs a lookup per item, not a JSON.stringify. Gone with the page.
  const frozenHashes = new WeakMap<object, string>();
  // The relayed form of each deep-frozen item, frozen too: a cached page keeps answering with the same objects, so the
  // listing's own caches (exposed names, JSON text per run of items) keep working.
  const frozenRelayed = new WeakMap<object, Record<string, unknown>>();
  const warned = new Set<string>();

  const verdict = (upstream: UpstreamPins, entry: PinEntry | undefined, hash: string | undefined): PinVerdict => {
    if (!entry) return upstream.requireApproval ? 'not_approved' : 'ok';
    if (entry.blocked) return 'blocked';
    if (entry.approvedHash === null) return 'not_approved';
    return (hash ?? entry.contentHash) === entry.approvedHash ? 'ok' : 'changed';
  };

  /**
   * Room for one more listed entry: the oldest (among the oldest few) whose listed hash is the stored definition's
   * goes — the replica then judges that item by the stored definition, as a replica that never listed it does. Else
   * none does: entries
   * exist only for pinned items, so the pin index bounds them anyway (`maxRemembered` is then exceeded). Clearing
   * everything, as before, forgot every "this tool changed" verdict, and calls to a changed tool were let through.
   */
  const makeRoom = (): void => {
    let looked = 0;
    for (const [listedKey, seen] of listed) {
      if (looked++ >= 64) return;
      const entry = pins.get(seen.upstreamId)?.entries.get(seen.key);
      if (entry === undefined || entry.contentHash === seen.hash) {
        listed.delete(listedKey);
        return;
      }
    }
  };

  const warnOnce = (key: string, fields: Record<string, unknown>) => {
    if (warned.has(key)) return;
    if (warned.size >= max) warned.clear();
    warned.add(key);
    logger.warn(fields, fields['kind'] === 'instructions' ? 'upstream instructions held back by tool pinning' : 'upstream tool hidden by tool pinning');
  };

  /** Throws the refusal for a tool or prompt that pinning holds (changed since approved, blocked, or not known yet). */
  const refuseHeld = (target: NonNullable<RequestInfo['target']>): void => {
    if (!enforced(target.kind)) return;
    const upstreamPins = pins.get(target.upstream.id);
    if (!upstreamPins && pins.ready && pins.knows(target.upstream.id)) return;
    const key = pinKey(target.kind, target.name);
    const entry = upstreamPins?.entries.get(key);
    // Not pinned as spelled, but as another spelling: an upstream that matches names case-insensitively would run the
    // pinned item, with neither its pin nor the policy rules written for its name applying.
    const outcome = !upstreamPins
      ? 'unavailable'
      : entry === undefined && upstreamPins.spellings.has(foldedKey(target.kind, target.name))
        ? 'other_spelling'
        : verdict(upstreamPins, entry, listed.get(`${target.upstream.id}\u0000${key}`)?.hash);
    if (outcome === 'ok') return;
    const what = target.kind === 'tool' ? 'Tool' : 'Prompt';
    // The upstream as the agent knows it (its tool prefix): its internal name is the tenant's.
    throw new GatewayRequestError(
      GATEWAY_RPC.FORBIDDEN,
      `${what} "${target.name}" of upstream "${target.upstream.toolPrefix}" is unavailable: ${REFUSALS[outcome]}.`,
      { reason: `tool_pin_${outcome}` },
      'denied',
    );
  };

  /** The hash of each upstream's instructions as last relayed (one text per upstream; it seldom changes). */
  const instructionHashes = new Map<string, { readonly text: string; readonly hash: string }>();
  const instructionsHash = (upstreamId: string, text: string): string => {
    const seen = instructionHashes.get(upstreamId);
    if (seen?.text === text) return seen.hash;
    const hash = definitionHash('instructions', { instructions: text });
    if (instructionHashes.size >= max) instructionHashes.clear();
    instructionHashes.set(upstreamId, { text, hash });
    return hash;
  };

  return {
    instructions(_record, upstream, text) {
      const hold = (reason: PinVerdict, hash?: string): undefined => {
        warnOnce(`${upstream.id}\u0000instructions\u0000${hash ?? reason}`, {
          tenantId: upstream.tenantId,
          upstream: upstream.name,
          upstreamId: upstream.id,
          kind: 'instructions',
          reason,
          ...(hash ? { listedHash: hash } : {}),
        });
        return undefined;
      };
      if (!pins.ready) return hold('unavailable');
      const upstreamPins = pins.get(upstream.id);
      if (!upstreamPins) return pins.knows(upstream.id) ? text : hold('unavailable');
      const hash = instructionsHash(upstream.id, text);
      const outcome = verdict(upstreamPins, upstreamPins.entries.get(pinKey('instructions', INSTRUCTIONS_NAME)), hash);
      return outcome === 'ok' ? text : hold(outcome, hash);
    },

    filter(_record, kind, upstream, items, fromCache) {
      if (!enforced(kind)) return items;
      if (!pins.ready) {
        // Which upstreams have pins is unknown until the index loads: hide rather than show an unapproved definition.
        warnOnce(`${upstream.id}\u0000${kind}\u0000unavailable`, { tenantId: upstream.tenantId, upstream: upstream.name, upstreamId: upstream.id, kind, reason: 'unavailable' });
        return [];
      }
      const upstreamPins = pins.get(upstream.id);
      if (!upstreamPins) {
        if (pins.knows(upstream.id)) return items;
        // Newer than the pins this replica holds: hidden until they are loaded (they are, with the upstreams, at once).
        warnOnce(`${upstream.id}\u0000${kind}\u0000unavailable`, { tenantId: upstream.tenantId, upstream: upstream.name, upstreamId: upstream.id, kind, reason: 'unavailable' });
        return [];
      }
      const kept: Record<string, unknown>[] = [];
      for (const item of items) {
        const name = item['name'];
        if (typeof name !== 'string') continue;
        const key = pinKey(kind, name);
        const entry = upstreamPins.entries.get(key);
        let hash: string | undefined;
        const frozen = entry !== undefined && isDeepFrozen(item);
        if (frozen) hash = frozenHashes.get(item);
        if (entry && hash === undefined) {
          const listedKey = `${upstream.id}\u0000${key}`;
          const json = JSON.stringify(item);
          const seen = listed.get(listedKey);
          if (seen?.json === json) hash = seen.hash;
          else {
            hash = definitionHash(kind, item);
            // What calls are judged by comes from fresh listings only: a session's cached page may hold a definition
            // the upstream has since changed, and must not make a changed tool callable again.
            if (!fromCache) {
              if (seen) listed.delete(listedKey);
              else if (listed.size >= max) makeRoom();
              listed.set(listedKey, { json, hash, upstreamId: upstream.id, key });
            }
          }
          if (frozen) frozenHashes.set(item, hash);
        }
        const outcome = entry === undefined && upstreamPins.spellings.has(foldedKey(kind, name)) ? 'other_spelling' : verdict(upstreamPins, entry, hash);
        if (outcome === 'ok') {
          if (entry === undefined) kept.push(item);
          else if (!frozen) kept.push(relayable(kind, item));
          else {
            let relayed = frozenRelayed.get(item);
            if (relayed === undefined) {
              relayed = deepFreeze(relayable(kind, item));
              frozenRelayed.set(item, relayed);
            }
            kept.push(relayed);
          }
          continue;
        }
        warnOnce(`${upstream.id}\u0000${key}\u0000${hash ?? outcome}`, {
          tenantId: upstream.tenantId,
          upstream: upstream.name,
          upstreamId: upstream.id,
          kind,
          name,
          reason: outcome,
          ...(hash ? { listedHash: hash, approvedHash: entry?.approvedHash ?? null } : {}),
        });
      }
      return kept;
    },

    admit(info) {
      // A task's status and result are the tool's too: not read while the tool is held (its server changed under it);
      // cancelling one always goes through.
      const target = info.target ?? (info.method === 'tasks/cancel' ? undefined : info.taskOf);
      if (target) refuseHeld(target);
      return undefined;
    },

    recheck(info) {
      // A task's result that waited: the tool may have been held meanwhile (admit saw it before the wait).
      if (info.target === undefined && info.taskOf !== undefined && info.method !== 'tasks/cancel') refuseHeld(info.taskOf);
    },

    taskMessage(_record, taskOf) {
      refuseHeld(taskOf);
    },
  };

}

/**
 * Pinning split around the policy hook: `listing` (its filter) goes before the policy's filter, so every fresh listing
 * is hashed whatever the policy hides; `checks` (admit, recheck, taskMessage) go after the policy's, so a target the
 * policy denies gets the policy's refusal whatever its pin state (pinning's would tell that it exists, and how it is
 * pinned). Both go before the approval hold: a held item is refused outright, never held for a person.
 */
export function pinningAroundPolicy(pinning: RequestHooks): { readonly listing: RequestHooks; readonly checks: RequestHooks } {
  const listing: RequestHooks = {};
  const checks: RequestHooks = {};
  if (pinning.filter) listing.filter = pinning.filter.bind(pinning);
  if (pinning.admit) checks.admit = pinning.admit.bind(pinning);
  if (pinning.recheck) checks.recheck = pinning.recheck.bind(pinning);
  if (pinning.taskMessage) checks.taskMessage = pinning.taskMessage.bind(pinning);
  if (pinning.instructions) checks.instructions = pinning.instructions.bind(pinning);
  return { listing, checks };
}

/**
 * The pinning check once more for a call a person approved. Pinning runs before the approval hold, and a call the
 * policy holds for approval may wait minutes: meanwhile a fresh listing can show the tool changed, or an
 * administrator can block it. An approval covers the call, not whatever the tool has become. Placed after the
 * policy hook; calls that were not held pass without a lookup. Its refusal names the approval (`data.approvalId`), as
 * the policy's and the credential's checks after the wait do, so the call's audit event is linked to it.
 */
export function pinningAfterApproval(pinning: RequestHooks): RequestHooks {
  const admit = pinning.admit;
  if (admit === undefined) return {};
  return {
    admit: (info, sink, signal, prior) => {
      const approvalId = prior?.approvalId;
      if (approvalId === undefined) return undefined;
      try {
        // Pinning's admit is synchronous (a lookup in the pins in memory).
        return admit(info, sink, signal, prior);
      } catch (error) {
        if (!(error instanceof GatewayRequestError)) throw error;
        throw new GatewayRequestError(error.rpcCode, error.message, { ...error.data, approvalId }, error.outcome);
      }
    },
  };
}
