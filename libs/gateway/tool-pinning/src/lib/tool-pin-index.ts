import { foldCaseWide } from '@portcullis/policy/engine';

/** The pinned kinds the gateway enforces on listings and calls: what an agent's model reads (tools and prompts). */
export type EnforcedKind = 'tool' | 'prompt';

/** Every pinned kind the gateway holds: those, and an upstream's instructions (decided when a session opens). */
export type HeldKind = EnforcedKind | 'instructions';

/** What the control plane stored for one tool or prompt of an upstream. */
export interface PinRow {
  readonly upstreamId: string;
  readonly kind: string;
  readonly name: string;
  /** Hash of the definition the last test connection saw. */
  readonly contentHash: string;
  /** Hash of the approved definition; null when none was ever approved. */
  readonly approvedHash: string | null;
  /** An admin blocked it outright. */
  readonly blocked: boolean;
}

export interface PinEntry {
  readonly contentHash: string;
  readonly approvedHash: string | null;
  readonly blocked: boolean;
}

export interface UpstreamPins {
  /** `require_approval`: an item with no stored definition is held too (else it passes until a test connection pins it). */
  readonly requireApproval: boolean;
  readonly entries: ReadonlyMap<string, PinEntry>;
  /**
   * `foldedKey` of every entry: a name that is not pinned as spelled but folds onto a pinned one is another spelling of
   * it, which an upstream matching names case-insensitively would run (see `toolPinningHooks`).
   */
  readonly spellings: ReadonlySet<string>;
}

export const pinKey = (kind: HeldKind, name: string): string => `${kind}\u0000${name}`;

/**
 * A name as an upstream matching names case-insensitively may take it (`foldCaseWide`: upper and lower case one, `ſ` as
 * `s`, composed and decomposed accents one, and past ASCII `ß` as `ss`, `ﬁ` as `fi`). Tool names are ASCII, where lower
 * case is all there is to it, but prompt names may be any text: `toLowerCase` alone let `ſtrasse` and `straße` past a
 * blocked `strasse`.
 */
const spelling = foldCaseWide;

/** `pinKey` with the name folded (`spelling`): one key for every spelling an upstream may take as the same name. */
export const foldedKey = (kind: EnforcedKind, name: string): string => `${kind}\u0000${spelling(name)}`;

/**
 * Every upstream's pins on this replica, replaced whole on refresh (an immutable map swapped atomically). An upstream
 * the load knew of (`known`) with nothing pinned trusts on first use: the filter and admit hooks skip it without hashing
 * anything. An upstream the load did not know of (the registry, loaded on its own, has it already: just created or
 * enabled) is held until a load that knows it: its pins, or its `require_approval`, are not known yet.
 */
export class ToolPinIndex {
  private byUpstream: ReadonlyMap<string, UpstreamPins> = new Map();
  /** Upstreams the last load saw (pinned or not); undefined: every upstream (a caller that does not say). */
  private known: ReadonlySet<string> | undefined;
  private loaded = false;

  /** False until the first `replace`: the pins are unknown, and the hooks refuse tools and prompts (fail safe). */
  get ready(): boolean {
    return this.loaded;
  }

  /**
   * Swaps in a load's pins; returns the upstreams whose pins differ from the ones held (an entry added, removed,
   * approved, blocked or redefined; `require_approval` turned on or off; the upstream known now or no longer), so that
   * their agents can be told their lists changed. The first load returns none: nothing was told before it.
   */
  replace(rows: readonly PinRow[], requireApprovalUpstreamIds: readonly string[], knownUpstreamIds?: readonly string[]): ReadonlySet<string> {
    const building = new Map<string, { requireApproval: boolean; entries: Map<string, PinEntry>; spellings: Set<string> }>();
    const of = (upstreamId: string) => {
      let pins = building.get(upstreamId);
      if (!pins) building.set(upstreamId, (pins = { requireApproval: false, entries: new Map(), spellings: new Set() }));
      return pins;
    };
    for (const id of requireApprovalUpstreamIds) of(id).requireApproval = true;
    for (const row of rows) {
      if (row.kind !== 'tool' && row.kind !== 'prompt' && row.kind !== 'instructions') continue;
      const pins = of(row.upstreamId);
      pins.entries.set(pinKey(row.kind, row.name), {
        contentHash: row.contentHash,
        approvedHash: row.approvedHash,
        blocked: row.blocked,
      });
      // Instructions are not called by name: no other spelling of theirs reaches an upstream.
      if (row.kind !== 'instructions') pins.spellings.add(foldedKey(row.kind, row.name));
    }
    const known = knownUpstreamIds === undefined ? undefined : new Set([...knownUpstreamIds, ...building.keys()]);
    const changed = new Set<string>();
    if (this.loaded) {
      for (const upstreamId of new Set([...this.byUpstream.keys(), ...building.keys()])) {
        if (!samePins(this.byUpstream.get(upstreamId), building.get(upstreamId))) changed.add(upstreamId);
      }
      for (const upstreamId of new Set([...(this.known ?? []), ...(known ?? [])])) {
        if ((this.known === undefined || this.known.has(upstreamId)) !== (known === undefined || known.has(upstreamId))) changed.add(upstreamId);
      }
    }
    this.byUpstream = building;
    this.known = known;
    this.loaded = true;
    return changed;
  }

  /** Whether the last load saw this upstream: its pins (or that it has none) are known. */
  knows(upstreamId: string): boolean {
    return this.known === undefined || this.known.has(upstreamId);
  }

  get(upstreamId: string): UpstreamPins | undefined {
    return this.byUpstream.get(upstreamId);
  }

  has(upstreamId: string): boolean {
    return this.byUpstream.has(upstreamId);
  }

  get size(): number {
    return this.byUpstream.size;
  }
}

/** Whether two loads' pins of one upstream hold the same (no pins and an empty entry alike). */
function samePins(a: UpstreamPins | undefined, b: UpstreamPins | undefined): boolean {
  if ((a?.requireApproval ?? false) !== (b?.requireApproval ?? false)) return false;
  const before = a?.entries ?? new Map<string, PinEntry>();
  const after = b?.entries ?? new Map<string, PinEntry>();
  if (before.size !== after.size) return false;
  for (const [key, entry] of before) {
    const other = after.get(key);
    if (other === undefined || other.contentHash !== entry.contentHash || other.approvedHash !== entry.approvedHash || other.blocked !== entry.blocked) return false;
  }
  return true;
}
