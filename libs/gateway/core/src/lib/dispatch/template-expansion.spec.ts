import { describe, expect, it } from 'vitest';
import { expandKnown } from './template-expansion';

describe('expandKnown', () => {
  it('fills in each operator with the values known, as they are, and leaves out expressions with none', () => {
    expect(expandKnown('repo://{org}/{name}', { org: 'acme', name: 'api' })).toBe('repo://acme/api');
    expect(expandKnown('repo://{org}/{name}', { org: 'acme' })).toBe('repo://acme/');
    expect(expandKnown('file:///{+path}', { path: 'srv/secret/keys' })).toBe('file:///srv/secret/keys');
    expect(expandKnown('file://{/segments*}', { segments: 'srv' })).toBe('file:///srv');
    expect(expandKnown('api://x{/a,b}{.ext}', { a: 'one', b: 'two', ext: 'json' })).toBe('api://x/one/two.json');
    expect(expandKnown('search://q{?term,page}{&lang}', { term: 'x', lang: 'fr' })).toBe('search://q?term=x&lang=fr');
    expect(expandKnown('m://a{;v}{#frag}', { v: '2', frag: 'top' })).toBe('m://a;v=2#top');
    expect(expandKnown('p://{name:3}', { name: 'abcdef' })).toBe('p://abcdef');
    expect(expandKnown('plain://no/variables', { x: 'y' })).toBe('plain://no/variables');
  });

  it('names only its own variables: inherited properties are not values', () => {
    expect(expandKnown('x://{constructor}/{toString}', {})).toBe('x:///');
  });
});
