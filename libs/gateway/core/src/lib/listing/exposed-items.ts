import { exposeName } from '../naming/tool-names';
import { deepFreeze, isDeepFrozen } from './immutable';

type Item = Record<string, unknown>;

/** What identifies an item within one upstream's listing: a tool's or prompt's name, a resource's URI, a template. */
export type ItemKey = 'name' | 'uri' | 'uriTemplate';

/** The items of an upstream's listing page as the gateway lists them (see `ExposedItems.distinct`). */
export interface DistinctItems {
  /** The objects of the list, in its order, less those whose key an earlier one had. */
  readonly items: readonly Item[];
  /** Each key that was listed again (its later items left out), once. */
  readonly repeated: readonly string[];
  /** How many entries of the list were not objects (left out). */
  readonly notObjects: number;
}

/**
 * Listed items as the agent sees them, built once per upstream item and reused for as long as the page holding that
 * item is (a session's cached listing page is answered many times). Each exposed item is deep-frozen: it is shared by
 * every answer built from the page, and `encodeJson` keeps the JSON text of frozen items, so a repeated listing
 * costs no renaming and no serialising per tool.
 */
export class ExposedItems {
  // Keyed by the upstream's item object: a new page brings new objects, so nothing here outlives the page it came from.
  private readonly renamed = new WeakMap<object, { readonly prefix: string; readonly exposed: Item | null }>();
  // Keyed by the page's list (an array frozen with its page): a cached page is sorted out once, not on every listing.
  private readonly distinctLists = new WeakMap<object, { readonly key: ItemKey; readonly usable: ((item: Item) => boolean) | undefined; readonly distinct: DistinctItems }>();

  constructor(private readonly separator: string) {}

  /**
   * A tool or prompt under its prefixed name; null when that name would break the naming rules. Remembered only for
   * a deep-frozen upstream item (the engine freezes pages as they arrive): one that can still change is built anew.
   */
  named(prefix: string, item: Item, kind: 'tool' | 'prompt' = 'tool'): Item | null {
    const frozen = isDeepFrozen(item);
    const known = frozen ? this.renamed.get(item) : undefined;
    if (known !== undefined && known.prefix === prefix) return known.exposed;
    const name = typeof item['name'] === 'string' ? exposeName(prefix, this.separator, item['name'], kind) : undefined;
    const exposed = name === undefined ? null : deepFreeze({ ...item, name });
    if (frozen) this.renamed.set(item, { prefix, exposed });
    return exposed;
  }

  /**
   * The objects of an upstream's list, each `key` once: an item whose key an earlier item of the list had is left out,
   * the first kept. The gateway is the agent's one server, whose tool names (and prompts', resources' URIs, templates)
   * are to be unique (MCP 2025-11-25): a client refusing a listing with a name twice would lose every upstream's items.
   * Within one page only: a later page is fetched by its own cursor, perhaps on another replica, and the pages of a
   * listing are cached apart (and evicted apart), so what earlier pages held is not at hand without carrying it along.
   * Remembered for a deep-frozen list (the engine freezes pages as they arrive).
   */
  distinct(list: readonly unknown[], key: ItemKey, usable?: (item: Item) => boolean): DistinctItems {
    const frozen = isDeepFrozen(list);
    const known = frozen ? this.distinctLists.get(list) : undefined;
    if (known !== undefined && known.key === key && known.usable === usable) return known.distinct;
    // Where each key's kept item is in `items` (built once something is left out).
    const keptAt = new Map<string, number>();
    const repeated = new Set<string>();
    let notObjects = 0;
    let items: Item[] | undefined;
    for (let index = 0; index < list.length; index++) {
      const entry = list[index];
      const value = isObject(entry) ? entry[key] : undefined;
      const at = typeof value === 'string' ? keptAt.get(value) : undefined;
      if (isObject(entry) && at === undefined) {
        if (typeof value === 'string') keptAt.set(value, items?.length ?? index);
        items?.push(entry);
        continue;
      }
      if (typeof value === 'string') repeated.add(value);
      else notObjects++;
      // The first entry left out: the items before it are copied, and those after it taken one by one.
      items ??= list.slice(0, index) as Item[];
      // A later item of the key is kept instead of an earlier one `usable` refuses (one MCP's schema leaves out): else
      // the key would not be listed at all (found by re-review).
      if (at !== undefined && usable !== undefined && isObject(entry) && !usable(items[at] as Item) && usable(entry)) items[at] = entry;
    }
    const distinct: DistinctItems = { items: items ?? (list as readonly Item[]), repeated: [...repeated], notObjects };
    if (frozen) this.distinctLists.set(list, { key, usable, distinct });
    return distinct;
  }

  /** A resource or resource template, listed as the upstream gave it (frozen in place). */
  asIs(item: Item): Item {
    return deepFreeze(item);
  }
}

function isObject(value: unknown): value is Item {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
