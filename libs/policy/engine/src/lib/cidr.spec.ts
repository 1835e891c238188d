import { describe, expect, it } from 'vitest';
import { cidrContains, parseCidr, parseIp } from './cidr';

const contains = (cidr: string, ip: string): boolean => {
  const c = parseCidr(cidr);
  const a = parseIp(ip);
  if (c === null || a === null) throw new Error('bad test data');
  return cidrContains(c, a);
};

describe('cidr', () => {
  it.each([
    ['10.0.0.0/8', '10.255.1.2', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['192.168.1.0/24', '::ffff:192.168.1.77', true],
    ['203.0.113.9', '203.0.113.9', true],
    ['203.0.113.9', '203.0.113.10', false],
    ['0.0.0.0/0', '8.8.8.8', true],
    ['2001:db8::/32', '2001:db8:1::5', true],
    ['2001:db8::/32', '2001:db9::5', false],
    ['::1/128', '::1', true],
    ['fe80::/10', 'febf::1', true],
    ['fe80::/10', 'fec0::1', false],
  ])('%s contains %s -> %s', (cidr, ip, expected) => {
    expect(contains(cidr, ip)).toBe(expected);
  });

  it.each(['10.0.0.0/33', '10.0.0/8', '256.0.0.1', '01.2.3.4', '1:2:3:4:5:6:7:8:9', '::1/129', 'x', '1::2::3'])('rejects %s', (text) => {
    expect(parseCidr(text)).toBeNull();
  });
});
