/**
 * A tool's result is often a JSON text the server wrote itself. JSON writers other than `JSON.stringify` write more
 * characters as `\uXXXX`: .NET's System.Text.Json `+ & < > '` and non-ASCII (upper-case hex), Go's encoding/json
 * `< > &`, Python's json.dumps and PHP's json_encode every non-ASCII character. A credential holding one (a base64 key's
 * `+`, a password's `&`) must be masked in those spellings too: the agent parses the text and would have it (found by
 * review).
 */
import { describe, expect, it } from 'vitest';
import { maskResult, maskUpstreamError } from './secret-mask';
import { UpstreamRpcError, type UpstreamConfig } from './upstream';

const AZURE_KEY = 'Zm9vYmFy+K3y/w1th+Pluses0123456789abcdEF==';
const DB_PASSWORD = 'Tr0ub4dor&3<horse>';
const NON_ASCII_TOKEN = 'kéy-ünïcode-0123456789';
const QUOTED_PASSWORD = 'Tr0ub4dor"3+horse`x';

const config = {
  id: 'u1',
  tenantId: 't1',
  name: 'azure',
  toolPrefix: 'azure',
  transport: 'streamable_http',
  url: 'https://mcp.example.com/mcp',
  command: null,
  args: [],
  headers: { 'Api-Key': AZURE_KEY },
  env: { DB_PASSWORD, SERVICE_TOKEN: NON_ASCII_TOKEN, SMTP_PASSWORD: QUOTED_PASSWORD },
  version: 1,
} as unknown as UpstreamConfig;

const escapedAs = (pattern: RegExp, upper: boolean) => (value: Record<string, string>): string =>
  JSON.stringify(value).replace(pattern, (c) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    return `\\u${upper ? hex.toUpperCase() : hex}`;
  });
const dotnetJson = (value: Record<string, string>): string =>
  escapedAs(/[+&<>'`\u0080-\uffff]/g, true)(value).replace(/\\"/g, '\\u0022');
const goJson = escapedAs(/[&<>]/g, false);
const pythonJson = escapedAs(/[\u0080-\uffff]/g, false);

const textOf = (result: Record<string, unknown>) => ((result as { content: { text: string }[] }).content[0]?.text ?? '{}');

describe('a credential inside JSON text another JSON writer wrote', () => {
  it('is masked in a tool result as .NET writes it (+ as \\u002B)', () => {
    const text = dotnetJson({ request: 'GET /subscriptions', apiKey: AZURE_KEY });
    expect(text).toContain('\\u002B');
    const shown = maskResult(config, { content: [{ type: 'text', text }] });
    expect(JSON.parse(textOf(shown)).apiKey).toBe('[redacted]');
  });

  it('is masked as .NET writes a quote and a backtick (\\u0022, \\u0060; found by re-review)', () => {
    const text = dotnetJson({ password: QUOTED_PASSWORD });
    expect(text).toContain('\\u0022');
    expect(JSON.parse(textOf(maskResult(config, { content: [{ type: 'text', text }] }))).password).toBe('[redacted]');
  });

  it('is masked in an error result as Go writes it (& < > as \\u0026 \\u003c \\u003e), alone and inside a DSN', () => {
    const text = goJson({ error: 'connect failed', dsn: `postgres://app:${DB_PASSWORD}@db:5432/app`, password: DB_PASSWORD });
    const shown = maskResult(config, { content: [{ type: 'text', text }], isError: true });
    const read = JSON.parse(textOf(shown)) as { dsn: string; password: string };
    expect(read.password).toBe('[redacted]');
    expect(read.dsn).not.toContain(DB_PASSWORD);
  });

  it('is masked as Python writes non-ASCII characters (\\u00e9)', () => {
    const text = pythonJson({ token: NON_ASCII_TOKEN });
    expect(text).toContain('\\u00e9');
    expect(JSON.parse(textOf(maskResult(config, { content: [{ type: 'text', text }] }))).token).toBe('[redacted]');
  });

  it('is masked in a JSON-RPC error whose message embeds such JSON', () => {
    const message = `upstream API refused: ${dotnetJson({ apiKey: AZURE_KEY })}`;
    const masked = maskUpstreamError(config, new UpstreamRpcError(-32001, message, undefined));
    expect(JSON.parse(masked.message.slice(masked.message.indexOf('{'))).apiKey).toBe('[redacted]');
  });
});
