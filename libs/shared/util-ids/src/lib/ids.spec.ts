import { describe, expect, it } from 'vitest';
import { InvalidIdError, isUuid, newId, tenantId } from './ids';

describe('ids', () => {
  it('newId produces UUIDv7 values that sort by creation order', () => {
    const ids = Array.from({ length: 50 }, () => newId());
    expect(ids.every(isUuid)).toBe(true);
    expect(ids.every((id) => id[14] === '7')).toBe(true);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('newId stays unique and ordered across refills of its random pool', () => {
    const ids = Array.from({ length: 2_000 }, () => newId());
    expect(ids.every((id) => isUuid(id) && id[14] === '7' && /^[89ab]$/.test(id[19] ?? ''))).toBe(true);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids.map((id) => id.slice(-12))).size).toBe(ids.length);
  });

  it('brands only well-formed UUIDs and normalises case', () => {
    const id = newId().toUpperCase();
    expect(tenantId(id)).toBe(id.toLowerCase());
    expect(() => tenantId('acme')).toThrow(InvalidIdError);
    expect(() => tenantId("1' OR '1'='1")).toThrow('tenantId must be a UUID');
  });
});
