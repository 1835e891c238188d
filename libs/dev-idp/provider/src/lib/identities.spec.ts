import { describe, expect, it } from 'vitest';
import { demoIdentities, parseIdentities, UserDirectory } from './identities';

describe('UserDirectory', () => {
  const identities = demoIdentities();
  const directory = new UserDirectory(identities);

  it('loads the demo people', () => {
    expect(identities.users.map((user) => user.sub)).toContain('u-olivia');
  });

  it('authenticates by case-insensitive email and the shared password', () => {
    expect(directory.authenticate(' Olivia.Owner@acme.example ', identities.password)?.sub).toBe('u-olivia');
  });

  it('rejects a wrong password or an unknown email', () => {
    expect(directory.authenticate('olivia.owner@acme.example', `${identities.password}x`)).toBeUndefined();
    expect(directory.authenticate('nobody@acme.example', identities.password)).toBeUndefined();
  });

  it('refuses duplicate emails', () => {
    const user = { sub: 'a', email: 'a@x.example', name: 'A', groups: [] };
    expect(() => parseIdentities({ password: 'p', users: [user, { ...user, sub: 'b' }] })).toThrow(/Duplicate/);
  });
});
