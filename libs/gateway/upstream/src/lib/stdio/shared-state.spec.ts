import { describe, expect, it } from 'vitest';
import { SharedUpstreamState } from './shared-state';

const updated = (uri: string) => ({ jsonrpc: '2.0' as const, method: 'notifications/resources/updated', params: { uri } });
const log = (level: string) => ({ jsonrpc: '2.0' as const, method: 'notifications/message', params: { level, data: 'x' } });

describe('SharedUpstreamState', () => {
  it('subscribes upstream for the first owner only and unsubscribes for the last, routing updates to subscribers', () => {
    const state = new SharedUpstreamState<string>();
    const first = state.step('a', 'resources/subscribe', { uri: 'mem://x' });
    expect(first).toMatchObject({ forward: { uri: 'mem://x' } });
    // Until the upstream answered, the owner of the subscribe under way alone gets the URI's updates: a server may report
    // the state as it takes the subscription, before its answer (found by review: it reached nobody).
    expect(state.recipients(updated('mem://x'), ['a', 'b'])).toEqual(['a']);
    expect(state.recipients(updated('mem://x/part'), ['a', 'b'])).toEqual(['a']);
    expect(state.recipients(updated('mem://y'), ['a', 'b'])).toEqual([]);
    if (first && 'then' in first) first.then?.();
    expect(state.step('b', 'resources/subscribe', { uri: 'mem://x' })).toEqual({ answer: {} });
    expect(state.recipients(updated('mem://x'), ['a', 'b', 'c'])).toEqual(['a', 'b']);
    // A sub-resource of a subscribed URI goes to its subscribers; a sibling that only shares a prefix does not.
    expect(state.recipients(updated('mem://x/part'), ['a', 'b', 'c'])).toEqual(['a', 'b']);
    expect(state.recipients(updated('mem://xy'), ['a', 'b', 'c'])).toEqual([]);
    // One session alone on the process gets every update, as it would without sharing.
    expect(state.recipients(updated('mem://other'), ['c'])).toEqual(['c']);
    expect(state.step('a', 'resources/unsubscribe', { uri: 'mem://x' })).toEqual({ answer: {} });
    expect(state.step('b', 'resources/unsubscribe', { uri: 'mem://x' })).toEqual({ forward: { uri: 'mem://x' } });
    expect(state.recipients(updated('mem://x'), ['a', 'b'])).toEqual([]);
    // Malformed or unknown: passed through for the upstream to answer.
    expect(state.step('a', 'resources/subscribe', { uri: 42 })).toEqual({ forward: { uri: 42 } });
    expect(state.step('a', 'resources/unsubscribe', { uri: 'mem://never' })).toEqual({ forward: { uri: 'mem://never' } });
    expect(state.step('a', 'tools/call', { name: 'x' })).toBeUndefined();
  });

  it('asks the upstream for the most verbose level wanted and filters messages per owner', () => {
    const state = new SharedUpstreamState<string>();
    const asked = (owner: string, level: string) => {
      const step = state.step(owner, 'logging/setLevel', { level });
      if (step && 'then' in step) step.then?.();
      return step;
    };
    expect(asked('a', 'warning')).toMatchObject({ forward: { level: 'warning' } });
    expect(asked('b', 'error')).toEqual({ answer: {} });
    expect(asked('c', 'debug')).toMatchObject({ forward: { level: 'debug' } });
    expect(state.recipients(log('info'), ['a', 'b', 'c', 'd'])).toEqual(['c', 'd']);
    expect(state.recipients(log('error'), ['a', 'b', 'c', 'd'])).toEqual(['a', 'b', 'c', 'd']);
    // A level nobody knows reaches everyone (it is not ours to drop).
    expect(state.recipients(log('verbose'), ['a', 'b'])).toEqual(['a', 'b']);
    expect(state.step('a', 'logging/setLevel', { level: 'loud' })).toEqual({ forward: { level: 'loud' } });
    // The most verbose owner leaves: the level goes back to the next most verbose.
    expect(state.leave('c')).toEqual({ unsubscribe: [], level: 'warning' });
    state.levelSet('warning');
    expect(state.leave('b')).toEqual({ unsubscribe: [], level: undefined });
  });

  it('tells what a leaving owner was the last to want', () => {
    const state = new SharedUpstreamState<string>();
    for (const [owner, uri] of [['a', 'mem://1'], ['a', 'mem://2'], ['b', 'mem://2']] as const) {
      const step = state.step(owner, 'resources/subscribe', { uri });
      if (step && 'then' in step) step.then?.();
    }
    expect(state.leave('a')).toEqual({ unsubscribe: ['mem://1'], level: undefined });
  });

  it('unsubscribes for an owner leaving with a subscribe of its own still under way, not for one with another owner\'s', () => {
    const state = new SharedUpstreamState<string>();
    const subscribe = (owner: string) => state.step(owner, 'resources/subscribe', { uri: 'mem://x' });
    // `a` subscribes twice before the first answer (both go upstream), and leaves once only the first was answered:
    // nobody else wants the URI.
    const first = subscribe('a');
    subscribe('a');
    if (first && 'then' in first) first.then?.();
    expect(state.leave('a').unsubscribe).toEqual(['mem://x']);
    expect(state.watched).toBe(false);
    // With `b`'s subscribe under way instead, the process stays subscribed for it.
    const again = subscribe('a');
    if (again && 'then' in again) again.then?.();
    subscribe('b');
    expect(state.leave('a').unsubscribe).toEqual([]);
    expect(state.watched).toBe(true);
  });

  it('has the process unsubscribe from a URI whose subscribe it took after its owner left or unsubscribed, nobody holding it', () => {
    const state = new SharedUpstreamState<string>();
    const subscribe = (owner: string) => state.step(owner, 'resources/subscribe', { uri: 'mem://x' });
    const answered = (step: ReturnType<typeof subscribe>) => (step && 'then' in step ? step.then?.() : 'not forwarded');
    // `a` leaves with its subscribe unanswered, nobody else holding the URI: the answer, when it comes, undoes it.
    const late = subscribe('a');
    expect(state.leave('a').unsubscribe).toEqual([]);
    expect(answered(late)).toBe('mem://x');
    expect(state.watched).toBe(false);
    // `b`'s own unsubscribe went upstream before its subscribe was answered: a server that handles requests
    // concurrently may have run it first, so the process is told again after the answer.
    const own = subscribe('b');
    expect(state.step('b', 'resources/unsubscribe', { uri: 'mem://x' })).toEqual({ forward: { uri: 'mem://x' } });
    expect(answered(own)).toBe('mem://x');
    // Two owners leaving with subscribes under way: each answer, when it comes, has the process unsubscribed.
    const first = subscribe('e');
    const second = subscribe('f');
    state.leave('e');
    state.leave('f');
    expect([answered(first), answered(second)]).toEqual(['mem://x', 'mem://x']);
    // `c` leaves while `d`'s subscribe is under way: the process stays subscribed for `d`, who counts once answered.
    const byC = subscribe('c');
    const byD = subscribe('d');
    state.leave('c');
    expect(answered(byC)).toBeUndefined();
    expect(answered(byD)).toBeUndefined();
    expect(state.recipients(updated('mem://x'), ['d', 'e'])).toEqual(['d']);
  });

  it('keeps its owners\' subscriptions and levels across a restart, for the new process to be told them again', () => {
    const state = new SharedUpstreamState<string>();
    const done = (step: ReturnType<typeof state.step>) => (step && 'then' in step ? step.then?.() : undefined);
    for (const [owner, uri] of [['a', 'mem://1'], ['b', 'mem://2'], ['b', 'mem://3']] as const) done(state.step(owner, 'resources/subscribe', { uri }));
    done(state.step('a', 'logging/setLevel', { level: 'error' }));
    done(state.step('b', 'logging/setLevel', { level: 'info' }));
    state.restarted();
    expect(state.replay()).toEqual({ subscribe: ['mem://1', 'mem://2', 'mem://3'], level: 'info' });
    // Updates still go to the subscribers only (two sessions share the process).
    expect(state.recipients(updated('mem://2'), ['a', 'b'])).toEqual(['b']);
    // The new process refused one: its subscriber subscribes through it again next time.
    state.refused('mem://3');
    expect(state.step('b', 'resources/subscribe', { uri: 'mem://3' })).toMatchObject({ forward: { uri: 'mem://3' } });
    // The level it holds is unknown until set: the next setLevel goes through.
    expect(state.step('a', 'logging/setLevel', { level: 'error' })).toMatchObject({ forward: { level: 'info' } });
  });
});
