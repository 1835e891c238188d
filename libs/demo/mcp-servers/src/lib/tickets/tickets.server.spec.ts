import { ErrorCode, McpError, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectInMemory, type InMemoryConnection } from '../testing/connect-in-memory';
import { resourceText, toolResultText } from '../testing/result-text';
import { RESOURCE_NOT_FOUND } from '../protocol/resource-subscriptions';
import { TicketStore } from './ticket-store';
import { TICKETS_SUMMARY_URI, createTicketsServer, ticketUri } from './tickets.server';

const fixedClock = () => new Date('2026-01-02T03:04:05.000Z');

describe('tickets server', () => {
  let connection: InMemoryConnection;
  let store: TicketStore;

  beforeEach(async () => {
    store = new TicketStore({ now: fixedClock });
    connection = await connectInMemory(createTicketsServer({ store }));
  });
  afterEach(() => connection.close());

  const call = (name: string, args: Record<string, unknown>) =>
    connection.client.callTool({ name, arguments: args });

  it('lists its three tools with schemas and annotations', async () => {
    const { tools } = await connection.client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual([
      'close_ticket',
      'create_ticket',
      'search_tickets',
    ]);
    const search = tools.find((tool) => tool.name === 'search_tickets');
    expect(search?.annotations?.readOnlyHint).toBe(true);
    expect(search?.inputSchema.properties).toHaveProperty('status');
    const close = tools.find((tool) => tool.name === 'close_ticket');
    expect(close?.annotations?.destructiveHint).toBe(true);
    expect(close?.inputSchema.required).toEqual(['id', 'resolution']);
  });

  it('declares resource subscriptions', () => {
    expect(connection.client.getServerCapabilities()?.resources?.subscribe).toBe(true);
  });

  describe('create_ticket', () => {
    it('creates a ticket with the next id and returns it as structured content', async () => {
      const result = await call('create_ticket', {
        title: 'Printer on fire',
        body: 'Third floor',
        priority: 'urgent',
      });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toEqual({
        ticket: {
          id: 'TCK-1004',
          title: 'Printer on fire',
          body: 'Third floor',
          priority: 'urgent',
          status: 'open',
          resolution: null,
          createdAt: '2026-01-02T03:04:05.000Z',
          closedAt: null,
        },
      });
      expect(toolResultText(result)).toBe('Created TCK-1004 [open/urgent] Printer on fire');
      expect(store.get('TCK-1004')?.title).toBe('Printer on fire');
    });

    it('defaults the priority to medium', async () => {
      const result = await call('create_ticket', { title: 'Question', body: '' });
      expect(result.structuredContent).toMatchObject({ ticket: { priority: 'medium' } });
    });

    it.each([
      ['an empty title', { title: '   ', body: 'x' }],
      ['an unknown priority', { title: 'A', body: 'x', priority: 'critical' }],
      ['a missing body', { title: 'A' }],
    ])('rejects %s as a tool error', async (_label, args) => {
      const result = await call('create_ticket', args);
      expect(result.isError).toBe(true);
      expect(toolResultText(result)).toMatch(/Input validation error/);
      expect(store.list()).toHaveLength(3);
    });
  });

  describe('search_tickets', () => {
    it('matches title or body case-insensitively, most urgent first', async () => {
      const result = await call('search_tickets', { query: 'ROW' });
      expect(result.structuredContent).toMatchObject({ total: 1, tickets: [{ id: 'TCK-1002' }] });
      const all = await call('search_tickets', { query: '' });
      const ids = (all.structuredContent as { tickets: { id: string }[] }).tickets.map((ticket) => ticket.id);
      expect(ids).toEqual(['TCK-1001', 'TCK-1002', 'TCK-1003']);
    });

    it('filters by status (open by default) and applies the limit', async () => {
      store.close('TCK-1001', 'rolled back');
      expect((await call('search_tickets', { query: '' })).structuredContent).toMatchObject({ total: 2 });
      expect((await call('search_tickets', { query: '', status: 'closed' })).structuredContent).toMatchObject(
        {
          total: 1,
          tickets: [{ id: 'TCK-1001', status: 'closed' }],
        },
      );
      const limited = await call('search_tickets', { query: '', status: 'any', limit: 2 });
      expect(limited.structuredContent).toMatchObject({ total: 3 });
      expect((limited.structuredContent as { tickets: unknown[] }).tickets).toHaveLength(2);
      expect(toolResultText(limited)).toMatch(/^3 ticket\(s\) match; showing 2:/);
    });

    it('says so when nothing matches', async () => {
      const result = await call('search_tickets', { query: 'no such thing' });
      expect(toolResultText(result)).toBe('No tickets match.');
      expect(result.structuredContent).toEqual({ tickets: [], total: 0 });
    });

    it('rejects a limit out of range', async () => {
      expect((await call('search_tickets', { query: '', limit: 0 })).isError).toBe(true);
      expect((await call('search_tickets', { query: '', limit: 51 })).isError).toBe(true);
    });
  });

  describe('close_ticket', () => {
    it('closes an open ticket with its resolution', async () => {
      const result = await call('close_ticket', { id: 'TCK-1003', resolution: 'Fixed the template' });
      expect(result.isError).toBeFalsy();
      expect(result.structuredContent).toMatchObject({
        ticket: {
          id: 'TCK-1003',
          status: 'closed',
          resolution: 'Fixed the template',
          closedAt: fixedClock().toISOString(),
        },
      });
    });

    it('reports an unknown or already closed ticket as a tool error', async () => {
      const unknown = await call('close_ticket', { id: 'TCK-9999', resolution: 'x' });
      expect(unknown).toMatchObject({ isError: true });
      expect(toolResultText(unknown)).toBe('Ticket TCK-9999 does not exist.');

      await call('close_ticket', { id: 'TCK-1001', resolution: 'done' });
      const again = await call('close_ticket', { id: 'TCK-1001', resolution: 'done' });
      expect(again.isError).toBe(true);
      expect(toolResultText(again)).toBe('Ticket TCK-1001 is already closed.');
    });

    it('rejects a malformed id', async () => {
      const result = await call('close_ticket', { id: '../../etc', resolution: 'x' });
      expect(result.isError).toBe(true);
      expect(toolResultText(result)).toMatch(/TCK-1001/);
    });
  });

  describe('resources', () => {
    it('lists the summary and one resource per ticket', async () => {
      const { resources } = await connection.client.listResources();
      expect(resources.map((resource) => resource.uri)).toEqual([
        TICKETS_SUMMARY_URI,
        ticketUri('TCK-1001'),
        ticketUri('TCK-1002'),
        ticketUri('TCK-1003'),
      ]);
      const { resourceTemplates } = await connection.client.listResourceTemplates();
      expect(resourceTemplates).toEqual([expect.objectContaining({ uriTemplate: 'tickets://ticket/{id}' })]);
    });

    it('reads the summary as JSON', async () => {
      store.close('TCK-1003', 'fixed');
      const read = await connection.client.readResource({ uri: TICKETS_SUMMARY_URI });
      expect(read.contents[0]?.mimeType).toBe('application/json');
      expect(JSON.parse(resourceText(read))).toEqual({
        total: 3,
        open: 2,
        closed: 1,
        openByPriority: { low: 0, medium: 0, high: 1, urgent: 1 },
      });
    });

    it('reads one ticket through the template, and 404s an unknown one', async () => {
      const read = await connection.client.readResource({ uri: ticketUri('TCK-1002') });
      expect(JSON.parse(resourceText(read))).toMatchObject({ id: 'TCK-1002', priority: 'high' });
      await expect(connection.client.readResource({ uri: ticketUri('TCK-4242') })).rejects.toMatchObject({
        code: RESOURCE_NOT_FOUND,
      });
    });

    it('notifies subscribers when the summary or a ticket changes, until they unsubscribe', async () => {
      const updated: string[] = [];
      connection.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
        updated.push(notification.params.uri);
      });
      await connection.client.subscribeResource({ uri: TICKETS_SUMMARY_URI });
      await connection.client.subscribeResource({ uri: ticketUri('TCK-1001') });
      await call('create_ticket', { title: 'New', body: '' });
      await call('close_ticket', { id: 'TCK-1001', resolution: 'done' });
      expect(updated).toEqual([TICKETS_SUMMARY_URI, TICKETS_SUMMARY_URI, ticketUri('TCK-1001')]);

      await connection.client.unsubscribeResource({ uri: TICKETS_SUMMARY_URI });
      await call('create_ticket', { title: 'Newer', body: '' });
      expect(updated).toHaveLength(3);
    });

    it('refuses subscriptions to unknown resources and unsubscribing what was not subscribed', async () => {
      await expect(connection.client.subscribeResource({ uri: 'tickets://nope' })).rejects.toMatchObject({
        code: RESOURCE_NOT_FOUND,
      });
      await expect(connection.client.unsubscribeResource({ uri: TICKETS_SUMMARY_URI })).rejects.toMatchObject(
        {
          code: ErrorCode.InvalidParams,
        },
      );
    });
  });

  describe('triage_ticket prompt', () => {
    it('embeds the ticket as a resource', async () => {
      const prompt = await connection.client.getPrompt({
        name: 'triage_ticket',
        arguments: { ticket_id: 'TCK-1001' },
      });
      expect(prompt.messages).toHaveLength(2);
      expect(prompt.messages[0]?.content).toMatchObject({
        type: 'text',
        text: expect.stringContaining('(urgent)'),
      });
      expect(prompt.messages[1]?.content).toMatchObject({
        type: 'resource',
        resource: { uri: ticketUri('TCK-1001'), mimeType: 'application/json' },
      });
    });

    it('fails with invalid params for an unknown ticket', async () => {
      const error = await connection.client
        .getPrompt({ name: 'triage_ticket', arguments: { ticket_id: 'TCK-0' } })
        .catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(McpError);
      expect(error).toMatchObject({ code: ErrorCode.InvalidParams });
    });

    it('completes the ticket id argument and the template variable', async () => {
      store.create({ title: 'x', body: '', priority: 'low' });
      const prompt = await connection.client.complete({
        ref: { type: 'ref/prompt', name: 'triage_ticket' },
        argument: { name: 'ticket_id', value: 'tck-100' },
      });
      expect(prompt.completion.values).toEqual(['TCK-1001', 'TCK-1002', 'TCK-1003', 'TCK-1004']);
      const template = await connection.client.complete({
        ref: { type: 'ref/resource', uri: 'tickets://ticket/{id}' },
        argument: { name: 'id', value: 'TCK-1002' },
      });
      expect(template.completion.values).toEqual(['TCK-1002']);
    });
  });
});
