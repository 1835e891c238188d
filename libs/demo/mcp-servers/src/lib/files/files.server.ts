import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { DEMO_SERVERS_VERSION } from '../server-info';
import { textResult, toolError } from '../protocol/tool-results';
import { DEFAULT_VIRTUAL_FILES, VirtualFileTree, type VirtualFile } from './virtual-file-tree';

export interface FilesServerOptions {
  /** Files of the virtual tree; defaults to a small made-up project. Never the real filesystem. */
  readonly files?: readonly VirtualFile[];
}

/** `file://` URI of a virtual path (`/docs/a.md` → `file:///docs/a.md`). */
export const virtualFileUri = (path: string): string => `file://${path}`;

const entrySchema = z.object({
  name: z.string(),
  path: z.string(),
  type: z.enum(['file', 'directory']),
  size: z.number().int(),
});

/**
 * A read-only files upstream over an in-memory tree: `read_file`, `list_files`, and one `file:///...`
 * resource per file.
 */
export function createFilesServer(options: FilesServerOptions = {}): McpServer {
  const tree = new VirtualFileTree(options.files ?? DEFAULT_VIRTUAL_FILES);
  const server = new McpServer(
    { name: 'portcullis-demo-files', title: 'Demo files', version: DEMO_SERVERS_VERSION },
    { instructions: 'A read-only virtual project tree. Paths are absolute, e.g. /docs/architecture.md.' },
  );
  const readOnly = { readOnlyHint: true, idempotentHint: true, openWorldHint: false } as const;

  server.registerTool(
    'read_file',
    {
      title: 'Read file',
      description: 'Return the text of one file of the virtual tree.',
      inputSchema: { path: z.string().describe('Absolute path, e.g. /docs/architecture.md') },
      outputSchema: { path: z.string(), mimeType: z.string(), content: z.string() },
      annotations: readOnly,
    },
    ({ path }) => {
      const result = tree.read(path);
      if (!result.ok) return toolError(result.message);
      const { path: filePath, mimeType, content } = result.value;
      return textResult(content, { path: filePath, mimeType, content });
    },
  );

  server.registerTool(
    'list_files',
    {
      title: 'List files',
      description: 'List a directory of the virtual tree.',
      inputSchema: {
        path: z.string().default('/').describe('Absolute directory path'),
        recursive: z.boolean().default(false),
      },
      outputSchema: { entries: z.array(entrySchema) },
      annotations: readOnly,
    },
    ({ path, recursive }) => {
      const result = tree.list(path, recursive);
      if (!result.ok) return toolError(result.message);
      const lines = result.value.map((entry) =>
        entry.type === 'directory' ? `${entry.path}/` : `${entry.path} (${entry.size} bytes)`,
      );
      return textResult(lines.length > 0 ? lines.join('\n') : '(empty)', { entries: [...result.value] });
    },
  );

  for (const file of tree.files()) {
    server.registerResource(
      file.path,
      virtualFileUri(file.path),
      { title: file.path.slice(file.path.lastIndexOf('/') + 1), mimeType: file.mimeType },
      (uri) => ({ contents: [{ uri: uri.href, mimeType: file.mimeType, text: file.content }] }),
    );
  }

  return server;
}
