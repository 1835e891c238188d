export { DEMO_SERVER_NAMES, createDemoServer, isDemoServerName } from './lib/demo-servers';
export type { DemoServerName } from './lib/demo-servers';
export { DEMO_SERVERS_VERSION } from './lib/server-info';

export {
  TICKETS_SUMMARY_URI,
  TICKET_URI_TEMPLATE,
  createTicketsServer,
  ticketUri,
} from './lib/tickets/tickets.server';
export type { TicketsServerOptions } from './lib/tickets/tickets.server';
export { DEFAULT_TICKETS, TICKET_PRIORITIES, TICKET_STATUSES, TicketStore } from './lib/tickets/ticket-store';
export type {
  NewTicket,
  Ticket,
  TicketPriority,
  TicketStatus,
  TicketStoreOptions,
} from './lib/tickets/ticket-store';

export { createFilesServer, virtualFileUri } from './lib/files/files.server';
export type { FilesServerOptions } from './lib/files/files.server';
export { DEFAULT_VIRTUAL_FILES, VirtualFileTree, normaliseVirtualPath } from './lib/files/virtual-file-tree';
export type { DirectoryEntry, VirtualFile } from './lib/files/virtual-file-tree';

export { createMathServer } from './lib/math/math.server';
export {
  COUNTER_URI,
  GREETING_LANGUAGES,
  createKitchenSinkServer,
} from './lib/kitchen-sink/kitchen-sink.server';

export { createShapeshifterServer, FORECAST_DESCRIPTION, ShapeshifterState } from './lib/shapeshifter/shapeshifter.server';

export { startDemoHttpHost } from './lib/hosting/demo-http-host';
export type { DemoHttpHost, DemoHttpHostOptions } from './lib/hosting/demo-http-host';
export { runStdioServer } from './lib/hosting/run-stdio-server';
export type { StdioServerHandle } from './lib/hosting/run-stdio-server';

export { connectInMemory } from './lib/testing/connect-in-memory';
export type { ConnectInMemoryOptions, InMemoryConnection } from './lib/testing/connect-in-memory';
export { resourceText, toolResultText } from './lib/testing/result-text';

export {
  CONFORMANCE_SCHEMA_TOOL_PREFIX,
  CONFORMANCE_TOOL_PREFIX,
  createConformanceSchemaServer,
  createConformanceServer,
} from './lib/conformance/conformance.server';
export { MemoryEventStore } from './lib/hosting/memory-event-store';
