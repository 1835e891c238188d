/**
 * What the pg driver and its pool throw, as plain errors with no code, when a connection is lost or cannot be had: the
 * server closed it (a restart, a failover, a proxy with no backend), it broke under a query, no connection came in
 * time, or a query got no answer in time. Prisma's driver adapter passes them on as they are, or, under a raw query,
 * as a P2010 whose `meta.message` is Prisma's own wording ("Server has closed the connection.").
 */
const LOST_CONNECTION =
  /^(?:Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|Query read timeout|timeout exceeded when trying to connect|Server has closed the connection)/;

/** The kinds Prisma's driver adapter gives such an error, under any code (a raw query's is P2010). */
const LOST_CONNECTION_KINDS = new Set(['ConnectionClosed', 'SocketTimeout', 'DatabaseNotReachable', 'TooManyConnections']);

/** Whether `error` is the database connection lost or out of reach (`LOST_CONNECTION`): a dependency away, not a bug. */
export function isLostDatabaseConnection(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (LOST_CONNECTION.test(error.message)) return true;
  const meta = (error as { meta?: { message?: unknown; driverAdapterError?: { cause?: { kind?: unknown } } } }).meta;
  if (typeof meta?.message === 'string' && LOST_CONNECTION.test(meta.message)) return true;
  const kind = meta?.driverAdapterError?.cause?.kind;
  if (typeof kind === 'string' && LOST_CONNECTION_KINDS.has(kind)) return true;
  // The adapter's own error, when it comes through unwrapped (name DriverAdapterError, its kind as the cause).
  const causeKind = typeof error.cause === 'object' && error.cause !== null ? (error.cause as { kind?: unknown }).kind : undefined;
  if (typeof causeKind === 'string' && LOST_CONNECTION_KINDS.has(causeKind)) return true;
  return error.cause !== undefined && error.cause !== error && isLostDatabaseConnection(error.cause);
}
