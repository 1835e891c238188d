import { describe, expect, it } from 'vitest';
import { counterKey } from './keys';

const subject = { tenantId: 't1', userId: 'u1', agentClientId: 'a1', tool: 'tickets__create_ticket' };

describe('counterKey', () => {
  it('builds one bucket per combination of the scope parts, in rule order', () => {
    expect(counterKey(subject, 'r1', ['tenant'])).toBe('t1:r1:t');
    expect(counterKey(subject, 'r1', ['user', 'tool'])).toBe('t1:r1:u=u1:x=tickets__create_ticket');
    expect(counterKey(subject, 'r1', ['agent_client'])).toBe('t1:r1:a=a1');
  });

  it('separates tenants and rules, and groups calls missing a scope part', () => {
    expect(counterKey({ ...subject, tenantId: 't2' }, 'r1', ['user'])).not.toBe(counterKey(subject, 'r1', ['user']));
    expect(counterKey(subject, 'r2', ['user'])).not.toBe(counterKey(subject, 'r1', ['user']));
    expect(counterKey({ ...subject, userId: null }, 'r1', ['user'])).toBe('t1:r1:u=-');
  });
});
