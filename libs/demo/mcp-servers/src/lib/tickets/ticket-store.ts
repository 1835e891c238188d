export const TICKET_PRIORITIES = ['low', 'medium', 'high', 'urgent'] as const;
export const TICKET_STATUSES = ['open', 'closed'] as const;

export type TicketPriority = (typeof TICKET_PRIORITIES)[number];
export type TicketStatus = (typeof TICKET_STATUSES)[number];

export interface Ticket {
  readonly id: string;
  readonly title: string;
  readonly body: string;
  readonly priority: TicketPriority;
  readonly status: TicketStatus;
  readonly resolution: string | null;
  readonly createdAt: string;
  readonly closedAt: string | null;
}

export interface NewTicket {
  readonly title: string;
  readonly body: string;
  readonly priority: TicketPriority;
}

export interface TicketSearch {
  readonly query: string;
  readonly status: TicketStatus | 'any';
  readonly limit: number;
}

export interface TicketSearchResult {
  readonly tickets: readonly Ticket[];
  /** Matches before `limit` was applied. */
  readonly total: number;
}

export type CloseTicketOutcome =
  | { readonly ok: true; readonly ticket: Ticket }
  | { readonly ok: false; readonly reason: 'not_found' | 'already_closed' };

export interface TicketSummary {
  readonly total: number;
  readonly open: number;
  readonly closed: number;
  readonly openByPriority: Readonly<Record<TicketPriority, number>>;
}

export interface TicketStoreOptions {
  /** Tickets to start with; they get the first ids. Defaults to {@link DEFAULT_TICKETS}. */
  readonly seed?: readonly NewTicket[];
  /** Clock, for deterministic timestamps in tests. */
  readonly now?: () => Date;
}

export const DEFAULT_TICKETS: readonly NewTicket[] = [
  {
    title: 'Login page returns 502 after deploy',
    body: 'Since the 14:00 deploy, about 3% of logins fail with a 502 from the edge proxy.',
    priority: 'urgent',
  },
  {
    title: 'Export to CSV drops the last row',
    body: 'Exporting the invoices table loses the final row when there are more than 1000 rows.',
    priority: 'high',
  },
  {
    title: 'Typo in the password reset email',
    body: 'The reset email says "pasword". Spotted by a customer.',
    priority: 'low',
  },
];

const FIRST_ID = 1001;
const PRIORITY_RANK: Readonly<Record<TicketPriority, number>> = { urgent: 0, high: 1, medium: 2, low: 3 };

/** In-memory tickets. Ids are sequential (`TCK-1001`, `TCK-1002`...) so tests can predict them. */
export class TicketStore {
  private readonly tickets = new Map<string, Ticket>();
  private nextNumber = FIRST_ID;
  private readonly now: () => Date;

  constructor(options: TicketStoreOptions = {}) {
    this.now = options.now ?? (() => new Date());
    for (const ticket of options.seed ?? DEFAULT_TICKETS) this.create(ticket);
  }

  create(input: NewTicket): Ticket {
    const ticket: Ticket = {
      id: `TCK-${this.nextNumber++}`,
      title: input.title,
      body: input.body,
      priority: input.priority,
      status: 'open',
      resolution: null,
      createdAt: this.now().toISOString(),
      closedAt: null,
    };
    this.tickets.set(ticket.id, ticket);
    return ticket;
  }

  get(id: string): Ticket | undefined {
    return this.tickets.get(id);
  }

  list(): readonly Ticket[] {
    return [...this.tickets.values()];
  }

  /** Case-insensitive match on title and body; an empty query matches everything. Most urgent first. */
  search({ query, status, limit }: TicketSearch): TicketSearchResult {
    const needle = query.trim().toLowerCase();
    const matches = this.list()
      .filter((ticket) => status === 'any' || ticket.status === status)
      .filter(
        (ticket) =>
          needle === '' ||
          ticket.title.toLowerCase().includes(needle) ||
          ticket.body.toLowerCase().includes(needle),
      )
      .sort((a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || a.id.localeCompare(b.id));
    return { tickets: matches.slice(0, limit), total: matches.length };
  }

  close(id: string, resolution: string): CloseTicketOutcome {
    const ticket = this.tickets.get(id);
    if (!ticket) return { ok: false, reason: 'not_found' };
    if (ticket.status === 'closed') return { ok: false, reason: 'already_closed' };
    const closed: Ticket = { ...ticket, status: 'closed', resolution, closedAt: this.now().toISOString() };
    this.tickets.set(id, closed);
    return { ok: true, ticket: closed };
  }

  summary(): TicketSummary {
    const openByPriority: Record<TicketPriority, number> = { low: 0, medium: 0, high: 0, urgent: 0 };
    let open = 0;
    for (const ticket of this.tickets.values()) {
      if (ticket.status === 'open') {
        open += 1;
        openByPriority[ticket.priority] += 1;
      }
    }
    return { total: this.tickets.size, open, closed: this.tickets.size - open, openByPriority };
  }
}
