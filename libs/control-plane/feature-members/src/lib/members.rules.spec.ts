import { AppError } from '@portcullis/shared/util-errors';
import { describe, expect, it } from 'vitest';
import { assertKeepsAnOwner, assertMayManage } from './members.rules';

const code = (fn: () => void) => {
  try {
    fn();
    return 'ok';
  } catch (error) {
    return (error as AppError).code;
  }
};

describe('member rules', () => {
  it('lets only owners grant, change or remove the owner role', () => {
    expect(code(() => assertMayManage('admin', null, 'member'))).toBe('ok');
    expect(code(() => assertMayManage('admin', null, 'owner'))).toBe('FORBIDDEN');
    expect(code(() => assertMayManage('admin', 'owner', 'admin'))).toBe('FORBIDDEN');
    expect(code(() => assertMayManage('admin', 'owner', null))).toBe('FORBIDDEN');
    expect(code(() => assertMayManage('owner', 'owner', null))).toBe('ok');
  });

  it('refuses to demote or remove the last owner', () => {
    expect(code(() => assertKeepsAnOwner(1, 'owner', 'admin'))).toBe('CONFLICT');
    expect(code(() => assertKeepsAnOwner(1, 'owner', null))).toBe('CONFLICT');
    expect(code(() => assertKeepsAnOwner(2, 'owner', null))).toBe('ok');
    expect(code(() => assertKeepsAnOwner(1, 'admin', null))).toBe('ok');
    expect(code(() => assertKeepsAnOwner(1, 'owner', 'owner'))).toBe('ok');
  });
});
