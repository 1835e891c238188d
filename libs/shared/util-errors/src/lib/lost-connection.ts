/**
 * What the pg driver and its pool throw, as plain errors with no code, when a connection is lost or cannot be had: the
 * server closed it (a restart, a failover, a proxy with no backend), it broke under a query, no connection came in
 * time, or a query got no answer in time. Prisma's driver adapter passes them on as they are.
 */
const LOST_CONNECTION =
  /^(?:Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|Query read timeout|timeout exceeded when trying to connect)/;

/** Whether `error` is the database connection lost or out of reach (`LOST_CONNECTION`): a dependency away, not a bug. */
export function isLostDatabaseConnection(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return LOST_CONNECTION.test(error.message) || (error.cause !== undefined && error.cause !== error && isLostDatabaseConnection(error.cause));
}
