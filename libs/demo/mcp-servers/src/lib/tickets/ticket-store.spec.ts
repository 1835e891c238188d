import { describe, expect, it } from 'vitest';
import { DEFAULT_TICKETS, TicketStore } from './ticket-store';

describe('TicketStore', () => {
  it('seeds the default tickets with sequential ids', () => {
    const store = new TicketStore();
    expect(store.list().map((ticket) => ticket.id)).toEqual(['TCK-1001', 'TCK-1002', 'TCK-1003']);
    expect(store.list().map((ticket) => ticket.title)).toEqual(DEFAULT_TICKETS.map((ticket) => ticket.title));
  });

  it('can start empty, and instances do not share state', () => {
    const empty = new TicketStore({ seed: [] });
    const other = new TicketStore({ seed: [] });
    empty.create({ title: 'a', body: '', priority: 'low' });
    expect(empty.list()).toHaveLength(1);
    expect(other.list()).toHaveLength(0);
    expect(other.create({ title: 'b', body: '', priority: 'low' }).id).toBe('TCK-1001');
  });

  it('orders search results by priority, then id', () => {
    const store = new TicketStore({ seed: [] });
    store.create({ title: 'low one', body: '', priority: 'low' });
    store.create({ title: 'urgent one', body: '', priority: 'urgent' });
    store.create({ title: 'medium one', body: '', priority: 'medium' });
    store.create({ title: 'urgent two', body: '', priority: 'urgent' });
    const { tickets } = store.search({ query: 'one', status: 'any', limit: 10 });
    expect(tickets.map((ticket) => ticket.title)).toEqual(['urgent one', 'medium one', 'low one']);
    expect(store.search({ query: 'urgent', status: 'open', limit: 10 }).tickets.map((t) => t.id)).toEqual([
      'TCK-1002',
      'TCK-1004',
    ]);
  });

  it('does not let a returned ticket change the store', () => {
    const store = new TicketStore({ seed: [] });
    const created = store.create({ title: 'a', body: '', priority: 'low' });
    store.close(created.id, 'done');
    expect(created.status).toBe('open');
    expect(store.get(created.id)?.status).toBe('closed');
  });
});
