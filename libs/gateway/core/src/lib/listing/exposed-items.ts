import { exposeName } from '../naming/tool-names';
import { deepFreeze, isDeepFrozen } from './immutable';

type Item = Record<string, unknown>;

/**
 * Listed items as the agent sees them, built once per upstream item and reused for as long as the page holding that
 * item is (a session's cached listing page is answered many times). Each exposed item is deep-frozen: it is shared by
 * every answer built from the page, and `encodeJson` keeps the JSON text of frozen items, so a repeated listing
 * costs no renaming and no serialising per tool.
 */
export class ExposedItems {
  // Keyed by the upstream's item object: a new page brings new objects, so nothing here outlives the page it came from.
  private readonly renamed = new WeakMap<object, { readonly prefix: string; readonly exposed: Item | null }>();

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

  /** A resource or resource template, listed as the upstream gave it (frozen in place). */
  asIs(item: Item): Item {
    return deepFreeze(item);
  }
}
