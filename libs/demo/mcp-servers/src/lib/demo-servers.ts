import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { createConformanceSchemaServer, createConformanceServer } from './conformance/conformance.server';
import { createFilesServer } from './files/files.server';
import { createKitchenSinkServer } from './kitchen-sink/kitchen-sink.server';
import { createMathServer } from './math/math.server';
import { createShapeshifterServer } from './shapeshifter/shapeshifter.server';
import { createTicketsServer } from './tickets/tickets.server';

export const DEMO_SERVER_NAMES = [
  'tickets',
  'files',
  'math',
  'kitchen-sink',
  'shapeshifter',
  'conformance',
  'conformance-schema',
] as const;
export type DemoServerName = (typeof DEMO_SERVER_NAMES)[number];

const factories: Readonly<Record<DemoServerName, () => McpServer>> = {
  tickets: () => createTicketsServer(),
  files: () => createFilesServer(),
  math: () => createMathServer(),
  'kitchen-sink': () => createKitchenSinkServer(),
  shapeshifter: () => createShapeshifterServer(),
  conformance: () => createConformanceServer(),
  'conformance-schema': () => createConformanceSchemaServer(),
};

export function isDemoServerName(value: string): value is DemoServerName {
  return (DEMO_SERVER_NAMES as readonly string[]).includes(value);
}

/** A fresh server instance with default data. One instance serves one client connection. */
export function createDemoServer(name: DemoServerName): McpServer {
  return factories[name]();
}
