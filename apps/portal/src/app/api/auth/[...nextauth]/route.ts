import NextAuth from 'next-auth';
import { NextRequest } from 'next/server';
import { authBodyRefusal, cleanAuthRoute } from '@portcullis/portal/auth';
import { authOptions } from '../../../../auth';
import { portalConfig } from '../../../../config';

type RouteContext = { params: Promise<{ nextauth: string[] }> };

async function handler(request: NextRequest, context: RouteContext): Promise<Response> {
  // A JSON body (or any but a form) never reaches next-auth: it parses JSON unguarded and keeps its value types.
  const refusal = authBodyRefusal(request.method, request.headers.get('content-type'));
  if (refusal) {
    const { status, error, message } = refusal;
    return Response.json({ error, message }, { status, headers: { accept: 'application/x-www-form-urlencoded', 'cache-control': 'no-store' } });
  }
  // next-auth answers 500 for some visitor-chosen values of `callbackUrl` and of the error code (see cleanAuthRoute):
  // it is handed the request with those cleaned. next-auth reads the query from `nextUrl` and the path from `params`.
  const segments = (await context.params).nextauth;
  const clean = cleanAuthRoute({ url: new URL(request.url), segments }, portalConfig().publicUrl);
  const [authRequest, authContext] = clean
    ? [
        new NextRequest(clean.url, { method: request.method, headers: request.headers, body: request.body }),
        { params: Promise.resolve({ nextauth: [...clean.segments] }) },
      ]
    : [request, context];
  return NextAuth(authRequest as never, authContext as never, authOptions()) as Promise<Response>;
}

export { handler as GET, handler as POST };
