export const dynamic = 'force-dynamic';

/** Liveness: the Node process serves requests. */
export function GET(): Response {
  return Response.json({ status: 'ok' }, { headers: { 'cache-control': 'no-store' } });
}
