import { describe, expect, it } from 'vitest';
import { parseIdentities, UserDirectory } from './identities';

const identities = parseIdentities({
  password: 'demo-password',
  users: [
    {
      sub: 'u-olivia',
      email: 'olivia.owner@acme.example',
      name: 'Olivia Owner',
      groups: ['engineering'],
      memberships: [],
    },
    { sub: 'u-aude', email: 'aude.auditor@acme.example', name: 'Aude Auditor' },
  ],
});
const directory = new UserDirectory(identities);

describe('UserDirectory', () => {
  it('defaults missing groups to none and ignores extra fields', () => {
    expect(directory.findBySub('u-aude')).toEqual({
      sub: 'u-aude',
      email: 'aude.auditor@acme.example',
      name: 'Aude Auditor',
      groups: [],
    });
  });

  it('authenticates by case-insensitive email and the shared password', () => {
    expect(directory.authenticate(' Olivia.Owner@acme.example ', 'demo-password')?.sub).toBe('u-olivia');
  });

  it('rejects a wrong password or an unknown email', () => {
    expect(directory.authenticate('olivia.owner@acme.example', 'demo-passwordx')).toBeUndefined();
    expect(directory.authenticate('olivia.owner@acme.example', '')).toBeUndefined();
    expect(directory.authenticate('nobody@acme.example', 'demo-password')).toBeUndefined();
  });

  it('refuses duplicate emails', () => {
    const user = { sub: 'a', email: 'a@x.example', name: 'A', groups: [] };
    expect(() => parseIdentities({ password: 'p', users: [user, { ...user, sub: 'b' }] })).toThrow(
      /Duplicate/,
    );
  });
});
