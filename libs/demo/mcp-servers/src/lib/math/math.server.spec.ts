import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectInMemory, type InMemoryConnection } from '../testing/connect-in-memory';
import { toolResultText } from '../testing/result-text';
import { createMathServer } from './math.server';

describe('math server', () => {
  let connection: InMemoryConnection;

  beforeEach(async () => {
    connection = await connectInMemory(createMathServer());
  });
  afterEach(() => connection.close());

  const call = (name: string, args: Record<string, unknown>) =>
    connection.client.callTool({ name, arguments: args });

  it('lists add, multiply and divide as pure tools', async () => {
    const { tools } = await connection.client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(['add', 'divide', 'multiply']);
    for (const tool of tools) {
      expect(tool.annotations).toMatchObject({ readOnlyHint: true, idempotentHint: true });
      expect(tool.outputSchema?.properties).toHaveProperty('result');
    }
  });

  it.each([
    ['add', 2, 3, 5],
    ['add', -1.5, 0.25, -1.25],
    ['multiply', 6, 7, 42],
    ['multiply', -2, 0, -0],
    ['divide', 1, 4, 0.25],
    ['divide', -9, 3, -3],
  ])('%s(%d, %d) = %d', async (name, a, b, expected) => {
    const result = await call(name, { a, b });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toEqual({ result: expected });
    expect(toolResultText(result)).toBe(String(expected));
  });

  it('returns a tool error, not a protocol error, when dividing by zero', async () => {
    const result = await call('divide', { a: 1, b: 0 });
    expect(result).toMatchObject({ isError: true });
    expect(toolResultText(result)).toBe('Cannot divide by zero.');
    expect(result.structuredContent).toBeUndefined();
    // The server is still fine afterwards.
    expect((await call('add', { a: 1, b: 1 })).structuredContent).toEqual({ result: 2 });
  });

  it('returns a tool error when the result overflows', async () => {
    const result = await call('multiply', { a: Number.MAX_VALUE, b: 10 });
    expect(result.isError).toBe(true);
    expect(toolResultText(result)).toMatch(/overflows/);
  });

  it.each([{ a: '1', b: 2 }, { a: 1 }, {}])('rejects invalid arguments %j', async (args) => {
    const result = await call('add', args);
    expect(result.isError).toBe(true);
    expect(toolResultText(result)).toMatch(/Input validation error/);
  });

  it('reports an unknown tool as a tool error', async () => {
    const result = await call('subtract', { a: 1, b: 1 });
    expect(result.isError).toBe(true);
    expect(toolResultText(result)).toMatch(/subtract not found/);
  });

  it('builds the explain_calculation prompt', async () => {
    const { prompts } = await connection.client.listPrompts();
    expect(prompts).toEqual([
      expect.objectContaining({
        name: 'explain_calculation',
        arguments: [
          expect.objectContaining({ name: 'expression', required: true }),
          expect.objectContaining({ name: 'audience', required: false }),
        ],
      }),
    ]);
    const forChild = await connection.client.getPrompt({
      name: 'explain_calculation',
      arguments: { expression: '(1 + 2) * 3', audience: 'child' },
    });
    expect(forChild.messages[0]?.content).toMatchObject({
      text: expect.stringContaining('(1 + 2) * 3 step by step for a child'),
    });
    const byDefault = await connection.client.getPrompt({
      name: 'explain_calculation',
      arguments: { expression: '1/3' },
    });
    expect(byDefault.messages[0]?.content).toMatchObject({ text: expect.stringContaining('for an adult') });
    await expect(
      connection.client.getPrompt({
        name: 'explain_calculation',
        arguments: { expression: '1', audience: 'cat' },
      }),
    ).rejects.toThrow(/Invalid arguments/);
  });
});
