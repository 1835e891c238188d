import { describe, expect, it } from 'vitest';
import { discoveryIssuerProblem, normalizeIssuer } from './issuer';

describe('discoveryIssuerProblem', () => {
  it('accepts a discovery document naming the configured issuer, with or without a trailing slash', () => {
    expect(discoveryIssuerProblem({ issuer: 'https://sso.example.test' }, 'https://sso.example.test')).toBeUndefined();
    expect(discoveryIssuerProblem({ issuer: 'https://sso.example.test/' }, 'https://sso.example.test')).toBeUndefined();
    expect(discoveryIssuerProblem({ issuer: 'https://sso.example.test/realms/acme' }, 'https://sso.example.test/realms/acme/')).toBeUndefined();
  });

  it('reports another issuer (no sign-in can succeed) without naming either URL', () => {
    for (const named of ['http://sso.example.test', 'https://idp.elsewhere.example', 'https://sso.example.test/realms/other']) {
      const problem = discoveryIssuerProblem({ issuer: named }, 'https://sso.example.test');
      expect(problem).toMatch(/another issuer than PORTAL_OIDC_ISSUER/);
      expect(problem).not.toContain('example');
    }
  });

  it('reports a document without an issuer', () => {
    for (const discovery of [{}, { issuer: 7 }, null, 'issuer', []]) {
      expect(discoveryIssuerProblem(discovery, 'https://sso.example.test')).toMatch(/names no issuer/);
    }
  });
});

describe('normalizeIssuer', () => {
  it('takes off trailing slashes, in time linear in the text (a provider chooses what it names)', () => {
    expect(['https://a.test', 'https://a.test/', 'https://a.test///', '/', ''].map(normalizeIssuer)).toEqual(['https://a.test', 'https://a.test', 'https://a.test', '', '']);
    const named = `${'/'.repeat(80_000)}x`;
    const started = performance.now();
    expect(normalizeIssuer(named)).toBe(named);
    // Milliseconds; about 10 s before on a slow machine. Generous for a loaded one.
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
