import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { DEMO_SERVERS_VERSION } from '../server-info';
import { textResult, toolError } from '../protocol/tool-results';

const operands = {
  a: z.number().describe('First operand'),
  b: z.number().describe('Second operand'),
};
const AUDIENCE = { child: 'a child', adult: 'an adult', expert: 'an expert' } as const;
const pure = { readOnlyHint: true, idempotentHint: true, openWorldHint: false } as const;

function numberResult(expression: string, result: number) {
  if (!Number.isFinite(result)) return toolError(`${expression} overflows a 64-bit float.`);
  return textResult(String(result), { result });
}

/** A calculator upstream: `add`, `multiply`, `divide` (÷0 is a tool error), and an explanation prompt. */
export function createMathServer(): McpServer {
  const server = new McpServer({
    name: 'portcullis-demo-math',
    title: 'Demo math',
    version: DEMO_SERVERS_VERSION,
  });

  server.registerTool(
    'add',
    {
      title: 'Add',
      description: 'a + b',
      inputSchema: operands,
      outputSchema: { result: z.number() },
      annotations: pure,
    },
    ({ a, b }) => numberResult(`${a} + ${b}`, a + b),
  );

  server.registerTool(
    'multiply',
    {
      title: 'Multiply',
      description: 'a × b',
      inputSchema: operands,
      outputSchema: { result: z.number() },
      annotations: pure,
    },
    ({ a, b }) => numberResult(`${a} × ${b}`, a * b),
  );

  server.registerTool(
    'divide',
    {
      title: 'Divide',
      description: 'a ÷ b; dividing by zero is an error',
      inputSchema: { a: z.number().describe('Dividend'), b: z.number().describe('Divisor') },
      outputSchema: { result: z.number() },
      annotations: pure,
    },
    ({ a, b }) => (b === 0 ? toolError('Cannot divide by zero.') : numberResult(`${a} ÷ ${b}`, a / b)),
  );

  server.registerPrompt(
    'explain_calculation',
    {
      title: 'Explain a calculation',
      description: 'Ask the model to work through an arithmetic expression step by step, using the tools.',
      argsSchema: {
        expression: z.string().min(1).max(500).describe('e.g. (12 + 30) / 7'),
        audience: z.enum(['child', 'adult', 'expert']).optional().describe('Who the explanation is for'),
      },
    },
    ({ expression, audience }) => ({
      description: `Explain ${expression}`,
      messages: [
        {
          role: 'user',
          content: {
            type: 'text',
            text:
              `Work out ${expression} step by step for ${AUDIENCE[audience ?? 'adult']}. ` +
              'Use the add, multiply and divide tools for each step and show the intermediate results.',
          },
        },
      ],
    }),
  );

  return server;
}
