import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from './circuit-breaker';

function breaker(threshold = 3, cooldownMs = 1_000) {
  const clock = { now: 0 };
  return { clock, breaker: new CircuitBreaker({ failureThreshold: threshold, cooldownMs }, () => clock.now) };
}

describe('CircuitBreaker', () => {
  it('opens after the threshold of consecutive failures and fails fast while open', () => {
    const { breaker: b } = breaker(3);
    b.failure();
    b.failure();
    expect(b.state).toBe('closed');
    expect(b.tryPass()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    expect(b.tryPass()).toBe(false);
  });

  it('a success resets the count of failures', () => {
    const { breaker: b } = breaker(2);
    b.failure();
    b.success();
    b.failure();
    expect(b.state).toBe('closed');
  });

  it('a success while open and cooling down (a call that went out before it opened) does not close it', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure();
    clock.now = 500;
    b.success();
    expect(b.state).toBe('open');
    expect(b.tryPass()).toBe(false);
    // Once the cool-down is over, an answer is evidence again.
    clock.now = 1_000;
    b.success();
    expect(b.state).toBe('closed');
  });

  it('lets one probe through after the cool-down; its success closes the circuit', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure();
    clock.now = 999;
    expect(b.tryPass()).toBe(false);
    clock.now = 1_000;
    expect(b.state).toBe('half_open');
    expect(b.tryPass()).toBe(true);
    expect(b.tryPass()).toBe(false); // only one probe at a time
    b.success();
    expect(b.state).toBe('closed');
    expect(b.tryPass()).toBe(true);
  });

  it('a failed probe opens the circuit again for a full cool-down', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure();
    clock.now = 1_000;
    expect(b.tryPass()).toBe(true);
    b.failure();
    expect(b.state).toBe('open');
    clock.now = 1_999;
    expect(b.tryPass()).toBe(false);
    clock.now = 2_000;
    expect(b.tryPass()).toBe(true);
  });

  it('a probe that never reports back stops blocking after another cool-down', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure();
    clock.now = 1_000;
    expect(b.tryPass()).toBe(true);
    clock.now = 1_500;
    expect(b.tryPass()).toBe(false);
    clock.now = 2_000;
    expect(b.tryPass()).toBe(true);
  });

  it('a probe that ended without a verdict (URL refused, an HTTP error) lets the next probe through at once', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure();
    clock.now = 1_000;
    expect(b.tryPass()).toBe(true);
    expect(b.tryPass()).toBe(false);
    b.probeEnded();
    expect(b.tryPass()).toBe(true);
    // After a verdict it changes nothing: a failed probe keeps the circuit open for its cool-down.
    b.failure();
    b.probeEnded();
    expect(b.tryPass()).toBe(false);
    // Nor does it in closed state (closed by a success once the cool-down is over).
    clock.now = 2_000;
    b.success();
    b.probeEnded();
    expect(b.state).toBe('closed');
  });

  it('frees the probe slot only for the call that took it, when told which one', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    expect(b.tryPass()).toBe(true);
    expect(b.probe).toBe(0); // closed: no probe
    b.failure();
    clock.now = 1_000;
    expect(b.tryPass()).toBe(true);
    const first = b.probe;
    expect(first).toBeGreaterThan(0);
    // A message that never took the slot (0), or another number, leaves it held.
    b.probeEnded(0);
    b.probeEnded(first + 1);
    expect(b.tryPass()).toBe(false);
    // The slot ran out (the probe never reported) and a second probe took it: the first one ending frees nothing.
    clock.now = 2_000;
    expect(b.tryPass()).toBe(true);
    const second = b.probe;
    expect(second).not.toBe(first);
    b.probeEnded(first);
    expect(b.tryPass()).toBe(false);
    b.probeEnded(second);
    expect(b.tryPass()).toBe(true);
  });

  it('ignores the failure of a call that went out before the circuit closed again (it timed out after the probe)', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    const before = clock.now;
    b.failure(before);
    clock.now = 1_000;
    expect(b.tryPass()).toBe(true);
    clock.now = 1_010;
    b.success();
    expect(b.state).toBe('closed');
    // A call made before the recovery times out now: stale, it neither counts nor reopens.
    clock.now = 1_500;
    b.failure(before);
    expect(b.state).toBe('closed');
    // One made since the recovery still counts (threshold 1: it opens the circuit).
    b.failure(1_200);
    expect(b.state).toBe('open');
  });

  it('ignores, in half-open state, the failure of a call made before the circuit opened; the probe\'s failure reopens it', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure(0);
    clock.now = 1_000;
    expect(b.tryPass()).toBe(true);
    // A call sent before the circuit opened (at 0) times out now: stale, it leaves the probe to decide.
    b.failure(-1);
    expect(b.state).toBe('half_open');
    expect(b.tryPass()).toBe(false); // the probe still holds the slot
    b.failure(1_000);
    expect(b.state).toBe('open');
  });

  it('lets nothing but the probe extend an open circuit\'s cool-down (cancellations and ping answers failing meanwhile)', () => {
    const { breaker: b, clock } = breaker(1, 1_000);
    b.failure(0);
    // Messages of the gateway's own fail while the circuit is open, stale or not: the cool-down is not started over.
    for (const at of [200, 400, 600, 800, 999]) {
      clock.now = at;
      b.failure(at);
      b.failure();
    }
    clock.now = 1_000;
    expect(b.state).toBe('half_open');
    expect(b.tryPass()).toBe(true);
  });

  it('open() opens regardless of the count', () => {
    const { breaker: b } = breaker(10);
    b.open();
    expect(b.tryPass()).toBe(false);
  });
});
