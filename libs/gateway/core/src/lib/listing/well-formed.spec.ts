import { describe, expect, it } from 'vitest';
import { deepFreeze, isDeepFrozen } from './immutable';
import { checkedItem, heldByCompiler } from './well-formed';

describe('checkedItem', () => {
  it('takes an item MCP\'s schema takes, as it is', () => {
    const tool = deepFreeze({ name: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } } }, annotations: { readOnlyHint: true } });
    expect(checkedItem('tools', tool)).toEqual({ item: tool, leftOut: [] });
    expect(checkedItem('tools', tool).item).toBe(tool);
  });

  it('leaves out an item whose essential field breaks it, naming the field and never the value', () => {
    expect(checkedItem('tools', { name: 'x' }).why).toMatch(/at inputSchema\)/);
    expect(checkedItem('tools', { name: 'x', inputSchema: { type: 'string' } }).why).toMatch(/at inputSchema\.type\)/);
    expect(checkedItem('tools', { name: 'x', inputSchema: { type: 'object' }, outputSchema: { type: 'array' } }).why).toMatch(/at outputSchema/);
    expect(checkedItem('resources', { uri: 'file:///a' }).why).toMatch(/at name\)/);
    expect(checkedItem('resourceTemplates', { name: 't' }).why).toMatch(/at uriTemplate\)/);
    const secret = 'sk_live_do_not_echo_me';
    const prompt = checkedItem('prompts', { name: 'p', arguments: [{ name: 1, description: secret }] });
    expect(prompt.why).toMatch(/at arguments\.0\.name\)/);
    expect(prompt.why).not.toContain(secret);
  });

  it('leaves out only a part that is not essential, frozen as the page is, and remembers the verdict', () => {
    const resource = deepFreeze({ uri: 'file:///r.csv', name: 'r', description: 7, annotations: { lastModified: '2025-01-12T15:00:58.123456', priority: 0.5 } });
    const checked = checkedItem('resources', resource);
    expect(checked).toEqual({ item: { uri: 'file:///r.csv', name: 'r', annotations: { priority: 0.5 } }, leftOut: expect.arrayContaining(['description', 'annotations.lastModified']) });
    expect(isDeepFrozen(checked.item)).toBe(true);
    expect(checkedItem('resources', resource)).toBe(checked);
    // Through an array, the whole field goes.
    expect(checkedItem('tools', { name: 'i', inputSchema: { type: 'object' }, icons: [{ src: 'a.png' }, { mimeType: 'image/png' }] }).item).toEqual({ name: 'i', inputSchema: { type: 'object' } });
  });
  // Found by re-review: the SDK's client compiles every listed outputSchema with Ajv, and one it cannot compile made
  // listTools() throw.
  it('leaves out a tool whose outputSchema cannot be compiled, and takes one that can', () => {
    const tool = (outputSchema: Record<string, unknown>) => ({ name: 't', inputSchema: { type: 'object' }, outputSchema });
    expect(checkedItem('tools', tool({ type: 'object', properties: { when: { $ref: '#/$defs/Timestamp' } } })).why).toMatch(/outputSchema cannot be compiled/);
    expect(checkedItem('tools', tool({ type: 'object', properties: { a: { type: 'notatype' } } })).why).toMatch(/outputSchema cannot be compiled/);
    // An $id Ajv cannot read throws on removal too: a verdict, not an exception out of the listing.
    expect(checkedItem('tools', tool({ $id: 42, type: 'object' })).why).toMatch(/outputSchema cannot be compiled/);
    const fine = tool({ $id: 'https://example.test/t.json', type: 'object', properties: { when: { type: 'string', format: 'date-time' } }, $defs: { x: { type: 'string' } } });
    expect(checkedItem('tools', fine).why).toBeUndefined();
    // Compiled and removed: another schema of the same $id compiles too (Ajv refuses an id it already holds).
    expect(checkedItem('tools', tool({ ...fine.outputSchema, description: 'again' })).why).toBeUndefined();
  });

  it('leaves the compiler holding nothing of the schemas it checked, $ids nested in them included', () => {
    const tool = (outputSchema: Record<string, unknown>) => ({ name: 't', inputSchema: { type: 'object' }, outputSchema });
    const before = heldByCompiler();
    for (let i = 0; i < 50; i++) {
      const nested = tool({ type: 'object', properties: { home: { $id: `https://example.test/address-${i}.json`, type: 'string' } }, $defs: { d: { $id: `https://example.test/d-${i}.json` } } });
      expect(checkedItem('tools', nested).why).toBeUndefined();
      expect(checkedItem('tools', tool({ $id: `https://example.test/broken-${i}.json`, type: 'object', properties: { x: { $id: `https://example.test/x-${i}.json`, $ref: '#/nowhere' } } })).why).toMatch(/outputSchema cannot be compiled/);
    }
    expect(heldByCompiler()).toBe(before);
  });

  // Found by re-review: the check removed the schema's own $id after the compile refused it, the meta-schema included.
  it.each(['http://json-schema.org/draft-07/schema', 'http://json-schema.org/draft-07/schema#'])('refuses an outputSchema whose $id is the meta-schema\'s (%s), and keeps the meta-schema for the others', (id) => {
    const tool = (outputSchema: Record<string, unknown>) => ({ name: 't', inputSchema: { type: 'object' }, outputSchema });
    const before = heldByCompiler();
    expect(checkedItem('tools', tool({ $id: id, type: 'object' })).why).toMatch(/outputSchema cannot be compiled/);
    expect(heldByCompiler()).toBe(before);
    expect(checkedItem('tools', tool({ type: 'object', properties: { schema: { $ref: 'http://json-schema.org/draft-07/schema#' } } })).why).toBeUndefined();
  });
});
