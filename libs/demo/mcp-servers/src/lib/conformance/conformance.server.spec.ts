import { afterEach, describe, expect, it } from 'vitest';
import { connectInMemory, type InMemoryConnection } from '../testing/connect-in-memory';
import { toolResultText } from '../testing/result-text';
import { createConformanceSchemaServer, createConformanceServer } from './conformance.server';

describe('conformance servers', () => {
  let connection: InMemoryConnection | undefined;
  afterEach(() => connection?.close());

  it('serve the suite\'s tool and prompt names less their first word, which a gateway prefix puts back', async () => {
    connection = await connectInMemory(createConformanceServer());
    const { tools } = await connection.client.listTools();
    for (const name of ['simple_text', 'tool_with_progress', 'elicitation_sep1330_enums', 'reconnection']) {
      expect(tools.map((tool) => tool.name)).toContain(name);
    }
    expect(tools.every((tool) => tool.description !== undefined && !tool.name.startsWith('test_'))).toBe(true);
    const { prompts } = await connection.client.listPrompts();
    expect(prompts.map((prompt) => prompt.name)).toEqual(['simple_prompt', 'prompt_with_arguments', 'prompt_with_embedded_resource', 'prompt_with_image']);
  });

  it('answers as the suite expects: text, audio as WAV, a template resource, prompt arguments, completion', async () => {
    connection = await connectInMemory(createConformanceServer());
    const { client } = connection;
    expect(toolResultText(await client.callTool({ name: 'simple_text', arguments: {} }))).toBe('This is a simple text response for testing.');
    const audio = (await client.callTool({ name: 'audio_content', arguments: {} })).content as { data: string; mimeType: string }[];
    expect(audio[0]?.mimeType).toBe('audio/wav');
    expect(Buffer.from(audio[0]?.data ?? '', 'base64').subarray(0, 4).toString('ascii')).toBe('RIFF');
    expect((await client.callTool({ name: 'error_handling', arguments: {} })).isError).toBe(true);
    const [data] = (await client.readResource({ uri: 'test://template/123/data' })).contents;
    expect(JSON.parse(data && 'text' in data ? data.text : '{}')).toEqual({ id: '123', templateTest: true, data: 'Data for ID: 123' });
    const prompt = await client.getPrompt({ name: 'prompt_with_arguments', arguments: { arg1: 'hello', arg2: 'world' } });
    expect(prompt.messages[0]?.content).toEqual({ type: 'text', text: "Prompt with arguments: arg1='hello', arg2='world'" });
    const completion = await client.complete({ ref: { type: 'ref/prompt', name: 'prompt_with_arguments' }, argument: { name: 'arg1', value: 'par' } });
    expect(completion.completion.values).toEqual(['paris', 'park', 'party']);
    // Without an event store (in memory) there is no stream to close: the tool says so and answers.
    expect((await client.callTool({ name: 'reconnection', arguments: {} })).structuredContent).toEqual({ streamClosed: false });
    await expect(client.readResource({ uri: 'test://missing' })).rejects.toThrow(/not found/);
  });

  it('keeps the JSON Schema 2020-12 keywords of its one tool as written', async () => {
    connection = await connectInMemory(createConformanceSchemaServer());
    const { tools } = await connection.client.listTools();
    expect(tools).toHaveLength(1);
    expect(tools[0]?.inputSchema).toMatchObject({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $defs: { address: { type: 'object' } },
      additionalProperties: false,
    });
  });
});
