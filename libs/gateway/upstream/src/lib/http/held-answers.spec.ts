import { describe, expect, it } from 'vitest';
import { CallHold, FREE_BYTES_PER_CALL, HeldAnswers } from './held-answers';

const KIB = 1024;

describe('HeldAnswers', () => {
  it('takes bytes up to the replica bound and the tenant bound, and nothing past either', () => {
    const answers = new HeldAnswers(100, 60);
    expect(answers.take('a', 60)).toBe(true);
    expect(answers.take('a', 1)).toBe(false); // the tenant's bound
    expect(answers.take('b', 40)).toBe(true);
    expect(answers.take('c', 1)).toBe(false); // the replica's bound, though c holds nothing
    expect(answers.held).toBe(100);
  });

  it('a refused take changes nothing', () => {
    const answers = new HeldAnswers(100, 60);
    answers.take('a', 50);
    expect(answers.take('a', 11)).toBe(false);
    expect(answers.held).toBe(50);
    expect(answers.take('a', 10)).toBe(true);
  });

  it('gives bytes back to the tenant and the replica, and forgets a tenant holding nothing', () => {
    const answers = new HeldAnswers(100, 60);
    answers.take('a', 60);
    answers.give('a', 20);
    expect(answers.held).toBe(40);
    expect(answers.take('a', 20)).toBe(true);
    answers.give('a', 60);
    answers.give('a', 0);
    expect(answers.held).toBe(0);
    expect(answers.take('a', 60)).toBe(true);
  });
});

describe('CallHold', () => {
  it('counts nothing for an answer within the free bytes of a call', () => {
    const answers = new HeldAnswers(KIB, KIB);
    const hold = new CallHold(answers, 't');
    expect(hold.hold(FREE_BYTES_PER_CALL)).toBe(true);
    expect(answers.held).toBe(0);
  });

  it('counts what it holds past the free bytes as it grows, gives back as it shrinks, and all at release', () => {
    const answers = new HeldAnswers(10 * KIB, 10 * KIB);
    const hold = new CallHold(answers, 't');
    expect(hold.hold(FREE_BYTES_PER_CALL + 4 * KIB)).toBe(true);
    expect(answers.held).toBe(4 * KIB);
    expect(hold.hold(FREE_BYTES_PER_CALL + 6 * KIB)).toBe(true);
    expect(answers.held).toBe(6 * KIB);
    // An SSE event went out: what is left of the next one is held.
    expect(hold.hold(FREE_BYTES_PER_CALL + KIB)).toBe(true);
    expect(answers.held).toBe(KIB);
    expect(hold.hold(10)).toBe(true);
    expect(answers.held).toBe(0);
    hold.hold(FREE_BYTES_PER_CALL + 2 * KIB);
    hold.release();
    hold.release();
    expect(answers.held).toBe(0);
  });

  it('refuses growth past a bound, keeping what it held until released', () => {
    const answers = new HeldAnswers(10 * KIB, 4 * KIB);
    const first = new CallHold(answers, 't');
    const second = new CallHold(answers, 't');
    const other = new CallHold(answers, 'u');
    expect(first.hold(FREE_BYTES_PER_CALL + 3 * KIB)).toBe(true);
    expect(second.hold(FREE_BYTES_PER_CALL + 2 * KIB)).toBe(false); // the tenant holds 3 KiB of its 4
    expect(second.hold(FREE_BYTES_PER_CALL + KIB)).toBe(true);
    expect(other.hold(FREE_BYTES_PER_CALL + 4 * KIB)).toBe(true); // another tenant's own bound
    expect(answers.held).toBe(8 * KIB);
    first.release();
    second.release();
    other.release();
    expect(answers.held).toBe(0);
  });
});
