import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { DEMO_SERVERS_VERSION } from '../server-info';
import { RESOURCE_NOT_FOUND, ResourceSubscriptions } from '../protocol/resource-subscriptions';
import { textResult, toolError } from '../protocol/tool-results';
import { TICKET_PRIORITIES, TICKET_STATUSES, TicketStore, type Ticket } from './ticket-store';

export const TICKETS_SUMMARY_URI = 'tickets://summary';
export const TICKET_URI_TEMPLATE = 'tickets://ticket/{id}';
export const ticketUri = (id: string): string => `tickets://ticket/${id}`;

export interface TicketsServerOptions {
  /** Share a store between server instances (e.g. across sessions); by default each instance has its own. */
  readonly store?: TicketStore;
}

const ticketIdSchema = z
  .string()
  .trim()
  .regex(/^TCK-\d{1,9}$/, 'must look like TCK-1001')
  .describe('Ticket id, e.g. TCK-1001');

const ticketSchema = z.object({
  id: z.string(),
  title: z.string(),
  body: z.string(),
  priority: z.enum(TICKET_PRIORITIES),
  status: z.enum(TICKET_STATUSES),
  resolution: z.string().nullable(),
  createdAt: z.string(),
  closedAt: z.string().nullable(),
});

const oneLine = (ticket: Ticket): string =>
  `${ticket.id} [${ticket.status}/${ticket.priority}] ${ticket.title}`;

/**
 * A help-desk tickets upstream: three tools over an in-memory store, a summary resource (subscribable),
 * one resource per ticket through a template, and a triage prompt whose ticket id argument completes.
 */
export function createTicketsServer(options: TicketsServerOptions = {}): McpServer {
  const store = options.store ?? new TicketStore();
  const server = new McpServer(
    { name: 'portcullis-demo-tickets', title: 'Demo tickets', version: DEMO_SERVERS_VERSION },
    {
      capabilities: { resources: { subscribe: true } },
      instructions: 'Help-desk tickets. Search before creating to avoid duplicates.',
    },
  );
  const subscriptions = new ResourceSubscriptions(
    server,
    (uri) => uri === TICKETS_SUMMARY_URI || store.get(uri.replace('tickets://ticket/', '')) !== undefined,
  );
  const completeTicketId = (value: string): string[] =>
    store
      .list()
      .map((ticket) => ticket.id)
      .filter((id) => id.toLowerCase().startsWith(value.trim().toLowerCase()))
      .slice(0, 100);

  server.registerTool(
    'create_ticket',
    {
      title: 'Create ticket',
      description: 'Open a new help-desk ticket.',
      inputSchema: {
        title: z.string().trim().min(1).max(200).describe('One-line summary'),
        body: z.string().max(10_000).describe('Details: what happened, who is affected'),
        priority: z.enum(TICKET_PRIORITIES).default('medium'),
      },
      outputSchema: { ticket: ticketSchema },
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    async (input, extra) => {
      const ticket = store.create(input);
      await subscriptions.notifyUpdated(TICKETS_SUMMARY_URI, extra);
      return textResult(`Created ${oneLine(ticket)}`, { ticket });
    },
  );

  server.registerTool(
    'search_tickets',
    {
      title: 'Search tickets',
      description:
        'Find tickets whose title or body contains the query (case-insensitive), most urgent first.',
      inputSchema: {
        query: z.string().max(200).describe('Text to look for; empty matches every ticket'),
        status: z.enum([...TICKET_STATUSES, 'any']).default('open'),
        limit: z.number().int().min(1).max(50).default(10),
      },
      outputSchema: { tickets: z.array(ticketSchema), total: z.number().int() },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (input) => {
      const { tickets, total } = store.search(input);
      const lines = tickets.map(oneLine);
      const text =
        total === 0
          ? 'No tickets match.'
          : [`${total} ticket(s) match; showing ${tickets.length}:`, ...lines].join('\n');
      return textResult(text, { tickets, total });
    },
  );

  server.registerTool(
    'close_ticket',
    {
      title: 'Close ticket',
      description: 'Close an open ticket with a resolution note.',
      inputSchema: {
        id: ticketIdSchema,
        resolution: z.string().trim().min(1).max(2_000).describe('What fixed it, or why it is closed'),
      },
      outputSchema: { ticket: ticketSchema },
      annotations: {
        readOnlyHint: false,
        destructiveHint: true,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    async ({ id, resolution }, extra) => {
      const outcome = store.close(id, resolution);
      if (!outcome.ok) {
        return toolError(
          outcome.reason === 'not_found' ? `Ticket ${id} does not exist.` : `Ticket ${id} is already closed.`,
        );
      }
      await subscriptions.notifyUpdated(TICKETS_SUMMARY_URI, extra);
      await subscriptions.notifyUpdated(ticketUri(id), extra);
      return textResult(`Closed ${oneLine(outcome.ticket)}`, { ticket: outcome.ticket });
    },
  );

  server.registerResource(
    'tickets-summary',
    TICKETS_SUMMARY_URI,
    {
      title: 'Tickets summary',
      description: 'Counts of open and closed tickets',
      mimeType: 'application/json',
    },
    (uri) => ({
      contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(store.summary()) }],
    }),
  );

  server.registerResource(
    'ticket',
    new ResourceTemplate(TICKET_URI_TEMPLATE, {
      list: () => ({
        resources: store.list().map((ticket) => ({
          uri: ticketUri(ticket.id),
          name: ticket.id,
          title: ticket.title,
          mimeType: 'application/json',
        })),
      }),
      complete: { id: completeTicketId },
    }),
    { title: 'Ticket', description: 'One ticket as JSON', mimeType: 'application/json' },
    (uri, variables) => {
      const id = String(variables['id'] ?? '');
      const ticket = store.get(id);
      if (!ticket) throw new McpError(RESOURCE_NOT_FOUND, `Ticket ${id} not found`, { uri: uri.href });
      return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(ticket) }] };
    },
  );

  server.registerPrompt(
    'triage_ticket',
    {
      title: 'Triage a ticket',
      description: 'Ask the model to assess severity and propose next steps for one ticket.',
      argsSchema: {
        ticket_id: completable(z.string().describe('Ticket id, e.g. TCK-1001'), completeTicketId),
      },
    },
    ({ ticket_id }) => {
      const ticket = store.get(ticket_id.trim());
      if (!ticket) throw new McpError(ErrorCode.InvalidParams, `Ticket ${ticket_id} not found`);
      return {
        description: `Triage ${ticket.id}`,
        messages: [
          {
            role: 'user',
            content: {
              type: 'text',
              text:
                `Triage this help-desk ticket. Say whether the priority (${ticket.priority}) is right, ` +
                `who should own it, and the first two steps to take.`,
            },
          },
          {
            role: 'user',
            content: {
              type: 'resource',
              resource: {
                uri: ticketUri(ticket.id),
                mimeType: 'application/json',
                text: JSON.stringify(ticket),
              },
            },
          },
        ],
      };
    },
  );

  return server;
}
