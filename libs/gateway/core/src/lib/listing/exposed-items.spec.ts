import { describe, expect, it } from 'vitest';
import { ExposedItems } from './exposed-items';
import { deepFreeze, isDeepFrozen } from './immutable';

const upstreamTool = () =>
  deepFreeze({ name: 'search', description: 'Finds things.', inputSchema: { type: 'object', properties: { q: { type: 'string' } } } });

describe('ExposedItems', () => {
  it('renames a tool under its prefix once, then answers the same frozen object for the same upstream item', () => {
    const items = new ExposedItems('__');
    const tool = upstreamTool();
    const first = items.named('docs', tool);
    expect(first).toEqual({ ...upstreamTool(), name: 'docs__search' });
    expect(items.named('docs', tool)).toBe(first);
    // The upstream's own item keeps its name; the exposed one cannot be changed, nor can what it holds.
    expect(tool.name).toBe('search');
    expect(isDeepFrozen(first)).toBe(true);
    expect(Object.isFrozen((first as { inputSchema: { properties: object } }).inputSchema.properties)).toBe(true);
    expect(() => {
      (first as { name: string }).name = 'other';
    }).toThrow(TypeError);
  });

  it('builds again when the prefix changed, and for a new page holding an equal item', () => {
    const items = new ExposedItems('__');
    const tool = upstreamTool();
    const before = items.named('docs', tool);
    const renamed = items.named('wiki', tool);
    expect(renamed).not.toBe(before);
    expect(renamed?.['name']).toBe('wiki__search');
    const fromNewPage = items.named('wiki', upstreamTool());
    expect(fromNewPage).not.toBe(renamed);
    expect(fromNewPage).toEqual(renamed);
  });

  it('answers null for a name that breaks the naming rules once prefixed, and remembers that too', () => {
    const items = new ExposedItems('__');
    let reads = 0;
    const bad = deepFreeze({
      get name() {
        reads += 1;
        return 'has space';
      },
    });
    expect(items.named('docs', bad)).toBeNull();
    const readsToJudge = reads;
    expect(items.named('docs', bad)).toBeNull();
    expect(reads).toBe(readsToJudge);
    expect(items.named('docs', { description: 'no name' })).toBeNull();
    expect(items.named('docs', { name: 'x'.repeat(200) })).toBeNull();
  });

  it('builds anew, each time, for an upstream item that can still change', () => {
    const items = new ExposedItems('__');
    const loose: Record<string, unknown> = { name: 'search', description: 'before' };
    const before = items.named('docs', loose);
    loose['description'] = 'after';
    const after = items.named('docs', loose);
    expect(after).not.toBe(before);
    expect(after?.['description']).toBe('after');
  });

  it('lists resources as given, frozen in place', () => {
    const items = new ExposedItems('__');
    const resource = { uri: 'file:///a', name: 'a', annotations: { audience: ['user'] } };
    expect(items.asIs(resource)).toBe(resource);
    expect(Object.isFrozen(resource.annotations.audience)).toBe(true);
  });

  it('keeps the first item of each name (URI, template) of a list and the objects only, sorted out once per frozen list', () => {
    const items = new ExposedItems('__');
    const list = deepFreeze([{ name: 'a', n: 1 }, 7, { name: 'b' }, { name: 'a', n: 2 }, null, { name: 'a', n: 3 }, { description: 'no name' }, { description: 'none either' }]);
    const distinct = items.distinct(list, 'name');
    expect(distinct).toEqual({ items: [{ name: 'a', n: 1 }, { name: 'b' }, { description: 'no name' }, { description: 'none either' }], repeated: ['a'], notObjects: 2 });
    expect(items.distinct(list, 'name')).toBe(distinct);
    // A list with nothing to leave out is answered as it is.
    const clean = deepFreeze([{ uri: 'mem://a' }, { uri: 'mem://b' }]);
    expect(items.distinct(clean, 'uri').items).toBe(clean);
    expect(items.distinct([{ uriTemplate: 'x/{k}' }, { uriTemplate: 'x/{k}' }], 'uriTemplate')).toEqual({ items: [{ uriTemplate: 'x/{k}' }], repeated: ['x/{k}'], notObjects: 0 });
  });

  // Found by re-review: the first item of a name kept though the schema check leaves it out, the name was not listed.
  it('keeps, of several items of one name, the first one `usable` takes, in the place of the first', () => {
    const items = new ExposedItems('__');
    const usable = (item: Record<string, unknown>) => item['ok'] === true;
    const list = deepFreeze([{ name: 'a', ok: false }, { name: 'b', ok: true }, { name: 'a', ok: true, n: 2 }, { name: 'a', ok: true, n: 3 }]);
    expect(items.distinct(list, 'name', usable)).toEqual({ items: [{ name: 'a', ok: true, n: 2 }, { name: 'b', ok: true }], repeated: ['a'], notObjects: 0 });
    // None usable: the first is kept (and left out later).
    expect(items.distinct([{ name: 'a', ok: false }, { name: 'a', ok: false, n: 2 }], 'name', usable).items).toEqual([{ name: 'a', ok: false }]);
  });
});
