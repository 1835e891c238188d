import { describe, expect, it } from 'vitest';
import { fakeConfig } from '../testing/fake-upstreams';
import { UpstreamRegistry } from './upstream-registry';

describe('UpstreamRegistry', () => {
  it('says which tenants\' upstreams a reload added, removed or edited, and no others', () => {
    const registry = new UpstreamRegistry('__');
    const none = () => undefined;
    expect(registry.replace([fakeConfig('a1', 'one', 'ta'), fakeConfig('b1', 'one', 'tb')], none)).toEqual(new Set(['ta', 'tb']));
    expect(registry.replace([fakeConfig('a1', 'one', 'ta'), fakeConfig('b1', 'one', 'tb')], none)).toEqual(new Set());
    // tb gains an upstream; tc appears.
    expect(registry.replace([fakeConfig('a1', 'one', 'ta'), fakeConfig('b1', 'one', 'tb'), fakeConfig('b2', 'two', 'tb'), fakeConfig('c1', 'one', 'tc')], none)).toEqual(new Set(['tb', 'tc']));
    // ta's upstream edited (a new version); tc's removed.
    expect(registry.replace([{ ...fakeConfig('a1', 'one', 'ta'), version: 2 }, fakeConfig('b1', 'one', 'tb'), fakeConfig('b2', 'two', 'tb')], none)).toEqual(new Set(['ta', 'tc']));
    expect(registry.forTenant('tc').list).toEqual([]);
  });
});
