import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectInMemory, type InMemoryConnection } from '../testing/connect-in-memory';
import { resourceText, toolResultText } from '../testing/result-text';
import { createFilesServer, virtualFileUri } from './files.server';
import { DEFAULT_VIRTUAL_FILES } from './virtual-file-tree';

describe('files server', () => {
  let connection: InMemoryConnection;

  beforeEach(async () => {
    connection = await connectInMemory(createFilesServer());
  });
  afterEach(() => connection.close());

  const call = (name: string, args: Record<string, unknown>) =>
    connection.client.callTool({ name, arguments: args });

  it('lists read-only tools', async () => {
    const { tools } = await connection.client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(['list_files', 'read_file']);
    expect(tools.every((tool) => tool.annotations?.readOnlyHint === true)).toBe(true);
  });

  describe('read_file', () => {
    it('returns the content as text and structured content', async () => {
      const result = await call('read_file', { path: '/docs/architecture.md' });
      expect(result.isError).toBeFalsy();
      expect(toolResultText(result)).toMatch(/^# Architecture/);
      expect(result.structuredContent).toMatchObject({
        path: '/docs/architecture.md',
        mimeType: 'text/markdown',
      });
    });

    it('normalises the path', async () => {
      const result = await call('read_file', { path: '//docs/./architecture.md' });
      expect(result.structuredContent).toMatchObject({ path: '/docs/architecture.md' });
    });

    it.each([
      ['/nope.txt', 'No such file: /nope.txt'],
      ['/docs', '/docs is a directory; use list_files.'],
      ['/docs/../../etc/passwd', 'Path must not contain "..": /docs/../../etc/passwd'],
      ['etc/passwd', 'Path must be absolute (start with "/"): etc/passwd'],
      ['/docs\\..\\README.md', 'Path must not contain backslashes or control characters.'],
    ])('reports %s as a tool error', async (path, message) => {
      const result = await call('read_file', { path });
      expect(result.isError).toBe(true);
      expect(toolResultText(result)).toBe(message);
    });

    it('rejects a missing path argument', async () => {
      expect((await call('read_file', {})).isError).toBe(true);
    });
  });

  describe('list_files', () => {
    it('lists the root by default', async () => {
      const result = await call('list_files', {});
      expect(toolResultText(result).split('\n')).toEqual([
        expect.stringMatching(/^\/README\.md \(\d+ bytes\)$/),
        '/config/',
        '/data/',
        '/docs/',
      ]);
    });

    it('lists recursively', async () => {
      const result = await call('list_files', { path: '/docs', recursive: true });
      const entries = (result.structuredContent as { entries: { path: string; type: string }[] }).entries;
      expect(entries.map((entry) => `${entry.type}:${entry.path}`)).toEqual([
        'file:/docs/architecture.md',
        'directory:/docs/runbooks',
        'file:/docs/runbooks/on-call.md',
      ]);
    });

    it.each([
      ['/README.md', '/README.md is a file; use read_file.'],
      ['/missing', 'No such directory: /missing'],
      ['/../', 'Path must not contain "..": /../'],
    ])('reports %s as a tool error', async (path, message) => {
      const result = await call('list_files', { path });
      expect(result.isError).toBe(true);
      expect(toolResultText(result)).toBe(message);
    });
  });

  describe('resources', () => {
    it('exposes one file:/// resource per file', async () => {
      const { resources } = await connection.client.listResources();
      expect(resources.map((resource) => resource.uri).sort()).toEqual(
        DEFAULT_VIRTUAL_FILES.map((file) => virtualFileUri(file.path)).sort(),
      );
      expect(resources.find((resource) => resource.uri === 'file:///data/customers.csv')?.mimeType).toBe(
        'text/csv',
      );
    });

    it('reads a file resource', async () => {
      const read = await connection.client.readResource({ uri: 'file:///config/service.json' });
      expect(JSON.parse(resourceText(read))).toMatchObject({ name: 'billing' });
    });

    it('does not resolve anything outside the tree', async () => {
      await expect(connection.client.readResource({ uri: 'file:///etc/passwd' })).rejects.toThrow(
        /not found/i,
      );
      // URIs are parsed as URLs, so dot segments collapse, and never above the root of the tree.
      await expect(connection.client.readResource({ uri: 'file:///../../etc/passwd' })).rejects.toThrow(
        /not found/i,
      );
      const { contents } = await connection.client.readResource({ uri: 'file:///docs/../README.md' });
      expect(contents[0]?.uri).toBe('file:///README.md');
    });
  });

  it('serves a custom tree', async () => {
    const custom = await connectInMemory(
      createFilesServer({ files: [{ path: '/only.txt', content: 'just me', mimeType: 'text/plain' }] }),
    );
    try {
      expect(
        toolResultText(await custom.client.callTool({ name: 'read_file', arguments: { path: '/only.txt' } })),
      ).toBe('just me');
      expect((await custom.client.listResources()).resources).toHaveLength(1);
    } finally {
      await custom.close();
    }
  });
});
