/**
 * Prisma's own sentence for an error its client threw ("Can't reach database server at 127.0.0.1:1"), for an operator
 * script's one-line message: the last line of the message, without the invocation and the query frame before it (file
 * paths, model and argument names). It names the server's host and port at most, never the URL or its password.
 * Undefined for an error that is not the Prisma client's (told by name: the runtime's classes may be loaded twice).
 */
export function databaseErrorSummary(error: unknown): string | undefined {
  if (!(error instanceof Error) || !error.name.startsWith('PrismaClient')) return undefined;
  const lines = error.message.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  return lines.at(-1) ?? error.name;
}
