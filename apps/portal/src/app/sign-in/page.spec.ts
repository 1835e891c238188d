import * as React from 'react';
import { isValidElement, type ReactElement, type ReactNode } from 'react';
import { describe, expect, it, vi } from 'vitest';

// The page's only I/O is the session look-up: nobody is signed in here.
vi.mock('../../auth', () => ({ currentUser: async () => undefined }));
vi.mock('./sign-in-button', () => ({ SignInButton: () => null }));

// The test transform compiles JSX to React.createElement (the classic runtime).
(globalThis as { React?: typeof React }).React = React;
const { default: SignInPage } = await import('./page');

/** The children of the page's `role="alert"` paragraph, or undefined when it shows no error. */
function alertChildren(node: ReactNode): unknown {
  if (Array.isArray(node)) {
    for (const child of node) {
      const found = alertChildren(child);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (!isValidElement(node)) return undefined;
  const props = (node as ReactElement<{ role?: string; children?: ReactNode }>).props;
  if (props.role === 'alert') return props.children;
  return alertChildren(props.children);
}

describe('sign-in page: the error code of the URL', () => {
  it('shows a known code\'s message', async () => {
    const page = await SignInPage({ searchParams: Promise.resolve({ error: 'AccessDenied' }) });
    expect(alertChildren(page)).toBe('Access was denied.');
  });

  it('shows the generic message for an unknown code, and none without a code', async () => {
    expect(alertChildren(await SignInPage({ searchParams: Promise.resolve({ error: 'Nonsense' }) }))).toBe('Sign-in failed. Try again.');
    expect(alertChildren(await SignInPage({ searchParams: Promise.resolve({}) }))).toBeUndefined();
  });

  // next-auth's /api/auth/error sends any plain word on (authErrorCode), and anyone can link to /sign-in?error=...
  // Before, the codes were looked up on a plain object: these names found Object.prototype's members, a function or an
  // object React cannot render (the built portal answered 500: "Functions cannot be passed directly to Client Components").
  it.each(['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__'])('shows the generic message for %s', async (code) => {
    const page = await SignInPage({ searchParams: Promise.resolve({ error: code }) });
    expect(alertChildren(page)).toBe('Sign-in failed. Try again.');
  });
});
