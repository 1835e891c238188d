/**
 * A listing result without its list array fails like a page that did not come: on a later page (a cursor given) that
 * is an error for the agent to ask again with the same cursor, "so no upstream's listing ends unannounced"
 * (docs/architecture.md), never a successful empty page without a nextCursor, which tells the agent the list is over.
 */
import type { JsonRpcResponse } from '@portcullis/gateway/mcp';
import { describe, expect, it } from 'vitest';
import { UpstreamRegistry } from '../registry/upstream-registry';
import { engineSpecs } from '../testing/engine-specs';
import { FakeConnector, fakeConfig } from '../testing/fake-upstreams';
import { MAX_UPSTREAM_PAGES } from '../listing/cursor';
import { NO_STREAM } from './sinks';

const { req, makeEngine, openSession } = engineSpecs();
const tool = (name: string) => ({ name, inputSchema: { type: 'object' } });

describe('a later listing page without its list array', () => {
  it('is an error for the agent (as any failed later page), not a successful end of the listing', async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files')], () => undefined);
    let secondPage = 0;
    const connector = new FakeConnector({
      u1: {
        capabilities: { tools: {} },
        handle: async (method, params) => {
          if (method !== 'tools/list') return {};
          if (params?.['cursor'] === undefined) return { tools: [tool('a')], nextCursor: 'p2' };
          // A momentary fault of the upstream: its second page comes without the list (but still with its cursor on).
          secondPage += 1;
          return secondPage === 1 ? { tools: null, nextCursor: 'p3' } : params['cursor'] === 'p2' ? { tools: [tool('b')], nextCursor: 'p3' } : { tools: [tool('c')] };
        },
      },
    });
    const engine = makeEngine({ registry, connector, options: { listTimeoutMs: 500 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const first = (await engine.request(record, req('tools/list'), NO_STREAM, 'trace')) as JsonRpcResponse & { result: { tools: unknown[]; nextCursor?: string } };
    expect(first.result.nextCursor).toEqual(expect.any(String));
    const second = await engine.request(record, req('tools/list', { cursor: first.result.nextCursor }), NO_STREAM, 'trace');
    // Told that the upstream could not give its part (ask again with the same cursor), or given the cursor on to the
    // rest: not a successful page without a nextCursor, which tells the agent the listing is over.
    const endedUnannounced = 'result' in second && (second.result as { nextCursor?: unknown }).nextCursor === undefined;
    expect(endedUnannounced, JSON.stringify(second)).toBe(false);
    expect(second, JSON.stringify(second)).toHaveProperty('error');
    // Asked again with the same cursor, the rest comes.
    const again = (await engine.request(record, req('tools/list', { cursor: first.result.nextCursor }), NO_STREAM, 'trace')) as { result?: { tools: { name: string }[] } };
    expect(again.result?.tools.map((listed) => listed.name)).toEqual(['files__b']);
  });
});

describe('an upstream answering a later page with the cursor it was asked with', () => {
  // Found by review: the repeated cursor was passed on, and an agent paging to the end was given the same page for ever.
  it("ends that upstream's listing there, the others' going on", async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'notes')], () => undefined);
    const connector = new FakeConnector({
      u1: { capabilities: { tools: {} }, handle: async (method, params) => (method !== 'tools/list' ? {} : params?.['cursor'] === undefined ? { tools: [tool('a')], nextCursor: 'loop' } : { tools: [tool('b')], nextCursor: 'loop' }) },
      u2: { capabilities: { tools: {} }, handle: async (method, params) => (method !== 'tools/list' ? {} : params?.['cursor'] === undefined ? { tools: [tool('x')], nextCursor: 'n2' } : params['cursor'] === 'n2' ? { tools: [tool('y')], nextCursor: 'n3' } : { tools: [tool('z')] }) },
    });
    const engine = makeEngine({ registry, connector, options: { listTimeoutMs: 500 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    const names: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = (await engine.request(record, req('tools/list', cursor === undefined ? {} : { cursor }), NO_STREAM, 'trace')) as JsonRpcResponse & { result: { tools: { name: string }[]; nextCursor?: string } };
      names.push(...page.result.tools.map((listed) => listed.name));
      cursor = page.result.nextCursor;
      pages += 1;
    } while (cursor !== undefined && pages < 10);
    expect(pages).toBe(3);
    expect(names.sort()).toEqual(['files__a', 'files__b', 'notes__x', 'notes__y', 'notes__z']);
  });
});

describe('an upstream whose cursors go round in a cycle of more than one page', () => {
  it(`ends that upstream's listing after ${MAX_UPSTREAM_PAGES} of its pages, the others' going on`, async () => {
    const registry = new UpstreamRegistry('__');
    registry.replace([fakeConfig('u1', 'files'), fakeConfig('u2', 'notes')], () => undefined);
    const connector = new FakeConnector({
      // Page 1 → p2 → p3 → p2 → p3 …
      u1: { capabilities: { tools: {} }, handle: async (method, params) => (method !== 'tools/list' ? {} : { tools: [tool(`t${String(params?.['cursor'] ?? 'p1')}`)], nextCursor: params?.['cursor'] === 'p2' ? 'p3' : 'p2' }) },
      u2: { capabilities: { tools: {} }, handle: async (method, params) => (method !== 'tools/list' ? {} : params?.['cursor'] === undefined ? { tools: [tool('x')], nextCursor: 'n2' } : { tools: [tool('y')] }) },
    });
    const engine = makeEngine({ registry, connector, options: { listTimeoutMs: 500 } });
    const { record } = await openSession(engine, { protocolVersion: '2025-11-25' });
    let cursor: string | undefined;
    let pages = 0;
    const notes: string[] = [];
    do {
      const page = (await engine.request(record, req('tools/list', cursor === undefined ? {} : { cursor }), NO_STREAM, 'trace')) as JsonRpcResponse & { result: { tools: { name: string }[]; nextCursor?: string } };
      notes.push(...page.result.tools.map((listed) => listed.name).filter((name) => name.startsWith('notes__')));
      cursor = page.result.nextCursor;
      pages += 1;
    } while (cursor !== undefined && pages < MAX_UPSTREAM_PAGES + 10);
    expect(pages).toBe(MAX_UPSTREAM_PAGES);
    expect(notes).toEqual(['notes__x', 'notes__y']);
  }, 30_000);
});
