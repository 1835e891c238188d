import { describe, expect, it } from 'vitest';
import { VirtualFileTree, normaliseVirtualPath } from './virtual-file-tree';

describe('normaliseVirtualPath', () => {
  it.each([
    ['/', '/'],
    ['/docs//a.md', '/docs/a.md'],
    ['/docs/./a.md', '/docs/a.md'],
    ['/docs/', '/docs'],
  ])('normalises %s to %s', (raw, expected) => {
    expect(normaliseVirtualPath(raw)).toEqual({ ok: true, value: expected });
  });

  it.each(['', 'docs/a.md', '/docs/../secret', '/..', '..\\x', '/a\\b', '/a\u0000b', `/${'a'.repeat(1024)}`])(
    'refuses %j',
    (raw) => {
      expect(normaliseVirtualPath(raw)).toMatchObject({ ok: false, problem: 'invalid_path' });
    },
  );
});

describe('VirtualFileTree', () => {
  const file = (path: string, content = 'x') => ({ path, content, mimeType: 'text/plain' });

  it('refuses invalid, duplicate and conflicting paths', () => {
    expect(() => new VirtualFileTree([file('relative.txt')])).toThrow(/Invalid virtual file path/);
    expect(() => new VirtualFileTree([file('/')])).toThrow(/Invalid virtual file path/);
    expect(() => new VirtualFileTree([file('/a'), file('//a')])).toThrow(/Duplicate/);
    expect(() => new VirtualFileTree([file('/a'), file('/a/b')])).toThrow(/used as a directory/);
    expect(() => new VirtualFileTree([file('/a/b'), file('/a')])).toThrow(/Duplicate/);
  });

  it('lists directories with implicit parents, sorted, optionally recursive', () => {
    const tree = new VirtualFileTree([file('/b/two.txt', 'hello'), file('/a.txt'), file('/b/c/three.txt')]);
    const top = tree.list('/', false);
    expect(top).toEqual({
      ok: true,
      value: [
        { name: 'a.txt', path: '/a.txt', type: 'file', size: 1 },
        { name: 'b', path: '/b', type: 'directory', size: 2 },
      ],
    });
    const all = tree.list('/', true);
    expect(all.ok && all.value.map((entry) => entry.path)).toEqual([
      '/a.txt',
      '/b',
      '/b/c',
      '/b/c/three.txt',
      '/b/two.txt',
    ]);
  });

  it('measures file size in UTF-8 bytes', () => {
    const tree = new VirtualFileTree([file('/u.txt', 'é')]);
    expect(tree.list('/', false)).toMatchObject({ ok: true, value: [{ size: 2 }] });
  });
});
