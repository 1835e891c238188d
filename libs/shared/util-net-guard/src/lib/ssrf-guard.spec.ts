import type { LookupAddress } from 'node:dns';
import { describe, expect, it, vi } from 'vitest';
import {
  type AddressResolver,
  checkUpstreamUrl,
  createGuardedLookup,
  createGuardedLookups,
  isAddressPermitted,
  isPrivateAddress,
  LOOKUP_DEADLINE_MS,
  LOOKUP_QUEUED,
  MAX_LOOKUPS_IN_FLIGHT,
  MAX_LOOKUPS_IN_FLIGHT_PER_KEY,
  SLOW_NAME_MS,
  STUCK_LOOKUP_MS,
  type NetworkPolicy,
} from './ssrf-guard';

const strict: NetworkPolicy = { allowPrivateNetworks: false, allowedHosts: [] };

describe('isPrivateAddress', () => {
  it.each([
    '127.0.0.1',
    '127.255.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fe80::1%eth0',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:169.254.169.254',
    '64:ff9b::10.0.0.1',
    '2002:c0a8:0101::1',
    '::ffff:0:7f00:1',
    '64:ff9b:1::a00:1',
    // Documentation and benchmarking ranges (IANA: not globally reachable); some networks use them inside.
    '192.0.2.10',
    '198.51.100.10',
    '203.0.113.10',
    '198.18.0.1',
    '2001:db8::10',
    '3fff::1',
    '3fff:fff:ffff::1',
    '2001:2::1',
    '2001::1', // Teredo
    '2001:10::1', // ORCHID (deprecated)
    '2001:1::4',
    '2001:1ff::1',
    '5f00::1', // SRv6 SIDs
    '100:0:0:1::1', // dummy prefix (RFC 9780)
    '::ffff:203.0.113.10',
    'not-an-address',
  ])('%s is not public', (address) => {
    expect(isPrivateAddress(address)).toBe(true);
  });

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '100.128.0.1',
    '2606:4700:4700::1111',
    '::ffff:8.8.8.8',
    '2002:0808:0808::1',
    '::ffff:0:808:808',
    '192.0.3.1',
    '203.0.114.1',
    '2001:db9::1',
    '2001:3::1', // AMT
    '2001:1::1', // PCP anycast
    '2001:4:112::1', // AS112-v6
    '2001:20::1', // ORCHIDv2
    '2001:30::1', // DRIP
    '2001:200::1', // past 2001::/23
    '3fff:1000::1', // past 3fff::/20
    '3ffe:831f::1',
    '100:0:0:2::1', // past 100:0:0:1::/64
  ])('%s is public', (address) => {
    expect(isPrivateAddress(address)).toBe(false);
  });
});

describe('checkUpstreamUrl', () => {
  it('accepts http and https URLs with public or named hosts', () => {
    expect(checkUpstreamUrl('https://mcp.example.com/mcp', strict).ok).toBe(true);
    expect(checkUpstreamUrl('http://8.8.8.8:8080/mcp', strict).ok).toBe(true);
  });

  it.each([
    ['ftp://example.com/x', 'only http and https are allowed'],
    ['file:///etc/passwd', 'only http and https are allowed'],
    ['https://user:secret@example.com/', 'credentials in the URL are not allowed'],
    ['http://127.0.0.1:3500/mcp', 'the address is not permitted by the network policy'],
    ['http://[::1]/mcp', 'the address is not permitted by the network policy'],
    ['http://0x7f.1/mcp', 'the address is not permitted by the network policy'],
    ['http://169.254.169.254/latest/meta-data', 'the address is not permitted by the network policy'],
    ['not a url', 'the URL does not parse'],
  ])('refuses %s', (url, reason) => {
    expect(checkUpstreamUrl(url, strict)).toEqual({ ok: false, reason });
  });

  it('refuses a missing URL', () => {
    expect(checkUpstreamUrl(null, strict).ok).toBe(false);
  });

  it('permits private addresses when the policy allows them, or when the host is allow-listed', () => {
    expect(
      checkUpstreamUrl('http://127.0.0.1:3500/mcp', { allowPrivateNetworks: true, allowedHosts: [] }).ok,
    ).toBe(true);
    expect(
      checkUpstreamUrl('http://127.0.0.1:3500/mcp', {
        allowPrivateNetworks: false,
        allowedHosts: ['127.0.0.1'],
      }).ok,
    ).toBe(true);
    expect(
      checkUpstreamUrl('http://[::1]:3500/mcp', { allowPrivateNetworks: false, allowedHosts: ['[::1]'] }).ok,
    ).toBe(true);
    expect(
      checkUpstreamUrl('http://10.0.0.1/mcp', { allowPrivateNetworks: false, allowedHosts: ['127.0.0.1'] })
        .ok,
    ).toBe(false);
  });
});

describe('isAddressPermitted', () => {
  it('matches the allow list by host name or by address', () => {
    const policy = { allowPrivateNetworks: false, allowedHosts: ['internal.example', '10.0.0.7'] };
    expect(isAddressPermitted('internal.example', '10.0.0.9', policy)).toBe(true);
    expect(isAddressPermitted('other.example', '10.0.0.7', policy)).toBe(true);
    expect(isAddressPermitted('other.example', '10.0.0.9', policy)).toBe(false);
    expect(isAddressPermitted('other.example', '8.8.8.8', policy)).toBe(true);
  });

  it('matches an IPv6 entry however it is spelled, since parsers and resolvers hand over the shortest form', () => {
    const policy = { allowPrivateNetworks: false, allowedHosts: ['fd00:0000:0:0:0:0:0:0007', '[::ffff:10.0.0.7]'] };
    expect(isAddressPermitted('mcp.internal', 'fd00::7', policy)).toBe(true);
    expect(checkUpstreamUrl('http://[fd00:0:0:0:0:0:0:7]:8080/mcp', policy).ok).toBe(true);
    expect(checkUpstreamUrl('http://[::ffff:10.0.0.7]/mcp', policy).ok).toBe(true);
    // Other addresses stay refused: fd00::8, the same IPv4 address written plainly (its own entry would be needed).
    expect(isAddressPermitted('mcp.internal', 'fd00::8', policy)).toBe(false);
    expect(checkUpstreamUrl('http://[fd00::8]/mcp', policy).ok).toBe(false);
    expect(isAddressPermitted('mcp.internal', '10.0.0.7', policy)).toBe(false);
  });
});

describe('createGuardedLookup', () => {
  const lookup = (policy: NetworkPolicy, host: string, all: boolean) =>
    new Promise<{ error: NodeJS.ErrnoException | null; address: unknown }>((resolve) => {
      createGuardedLookup(policy)(host, { all }, (error, address) => resolve({ error, address }));
    });

  it('refuses a name that resolves only to loopback (localhost needs no network)', async () => {
    const { error } = await lookup(strict, 'localhost', true);
    expect(error?.code).toBe('EPORTCULLIS_ADDRESS_REFUSED');
  });

  it('passes the resolved addresses through when permitted, in both callback shapes', async () => {
    const open = { allowPrivateNetworks: true, allowedHosts: [] };
    const all = await lookup(open, 'localhost', true);
    expect(all.error).toBeNull();
    expect(Array.isArray(all.address) && all.address.length > 0).toBe(true);
    const one = await lookup(open, 'localhost', false);
    expect(one.error).toBeNull();
    expect(typeof one.address).toBe('string');
  });

  it('resolves a name once for lookups under way together, reuses the answer briefly, and never keeps a failure', async () => {
    const open = { allowPrivateNetworks: false, allowedHosts: [] };
    const clock = { now: 0 };
    const pending: ((error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void)[] = [];
    let asked = 0;
    const resolver: AddressResolver = (_hostname, _options, callback) => {
      asked += 1;
      pending.push(callback);
    };
    const guarded = createGuardedLookup(open, resolver, () => clock.now);
    const lookupOnce = () =>
      new Promise<{ error: NodeJS.ErrnoException | null; address: unknown }>((resolve) => {
        guarded('slow.example', { all: false }, (error, address) => resolve({ error, address }));
      });
    const together = Array.from({ length: 10 }, lookupOnce);
    // A host whose DNS answers slowly takes one lookup (one of libuv's four threads), not one per new socket.
    expect(asked).toBe(1);
    pending.shift()?.(null, [{ address: '93.184.215.14', family: 4 }]);
    for (const result of await Promise.all(together)) expect(result).toEqual({ error: null, address: '93.184.215.14' });
    clock.now = 1_999;
    expect(await lookupOnce()).toEqual({ error: null, address: '93.184.215.14' });
    expect(asked).toBe(1);
    clock.now = 2_000;
    const later = lookupOnce();
    expect(asked).toBe(2);
    const failed: NodeJS.ErrnoException = Object.assign(new Error('timed out'), { code: 'ETIMEOUT' });
    pending.shift()?.(failed, []);
    expect((await later).error?.code).toBe('ETIMEOUT');
    const again = lookupOnce();
    expect(asked).toBe(3);
    // A cached answer is still judged by the policy: a private address stays refused.
    pending.shift()?.(null, [{ address: '10.0.0.5', family: 4 }]);
    expect((await again).error?.code).toBe('EPORTCULLIS_ADDRESS_REFUSED');
    expect((await lookupOnce()).error?.code).toBe('EPORTCULLIS_ADDRESS_REFUSED');
    expect(asked).toBe(3);
  });

  /** Guarded lookups per tenant over a resolver that answers only when told; `results` has each host's outcome. */
  const stuckResolver = () => {
    const open = { allowPrivateNetworks: false, allowedHosts: [] };
    const asked: { hostname: string; answer: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void }[] = [];
    const lookupFor = createGuardedLookups(open, (hostname, _options, answer) => void asked.push({ hostname, answer }));
    const results = new Map<string, NodeJS.ErrnoException | null | 'pending'>();
    const look = (tenant: string, host: string) => {
      results.set(`${tenant} ${host}`, 'pending');
      lookupFor(tenant)(host, { all: false }, (error) => results.set(`${tenant} ${host}`, error));
    };
    const askedNames = () => asked.map((entry) => entry.hostname);
    const codeOf = (tenant: string, host: string) => (results.get(`${tenant} ${host}`) as NodeJS.ErrnoException | null | undefined)?.code;
    return { asked, askedNames, results, look, codeOf };
  };

  it(`resolves at most ${MAX_LOOKUPS_IN_FLIGHT} names at once, and fails one not resolved within ${LOOKUP_DEADLINE_MS} ms`, async () => {
    vi.useFakeTimers();
    try {
      const { asked, askedNames, results, look, codeOf } = stuckResolver();
      // Names whose nameservers never answer (tenants chose them) take three lookups, not the thread pool.
      look('a', 'never-1.example');
      look('b', 'never-2.example');
      look('c', 'never-3.example');
      look('d', 'never-4.example');
      look('e', 'fine.example');
      expect(askedNames()).toEqual(['never-1.example', 'never-2.example', 'never-3.example']);
      // One answers: the next name waiting gets its turn.
      asked[0]?.answer(null, [{ address: '93.184.215.14', family: 4 }]);
      expect(results.get('a never-1.example')).toBeNull();
      expect(askedNames()).toEqual(['never-1.example', 'never-2.example', 'never-3.example', 'never-4.example']);
      // Past the deadline everyone still waiting fails, the name that never got a turn too, and it is not looked up.
      await vi.advanceTimersByTimeAsync(LOOKUP_DEADLINE_MS);
      // Those whose lookup ran out of time fail as ETIMEOUT (their upstream's circuit counts it), the one that never
      // got a turn as queued (it says nothing of its upstream).
      for (const [tenant, host] of [['b', 'never-2.example'], ['c', 'never-3.example'], ['d', 'never-4.example']] as const) expect(codeOf(tenant, host), host).toBe('ETIMEOUT');
      expect(codeOf('e', 'fine.example')).toBe(LOOKUP_QUEUED);
      asked[1]?.answer(null, [{ address: '93.184.215.15', family: 4 }]);
      expect(asked).toHaveLength(4);
      // A slot freed by a late answer serves the next name at once.
      look('f', 'later.example');
      expect(askedNames().at(-1)).toBe('later.example');
    } finally {
      vi.useRealTimers();
    }
  });

  it(`lets a tenant whose names never resolve hold ${MAX_LOOKUPS_IN_FLIGHT_PER_KEY} of the lookups only, a second once the first is stuck: its further names wait behind its own, another tenant's resolve at once`, async () => {
    vi.useFakeTimers();
    try {
      const { asked, askedNames, results, look, codeOf } = stuckResolver();
      // Random subdomains on nameservers that never answer: nothing is cached, every new socket asks again.
      for (let n = 1; n <= 4; n += 1) look('a', `never-${n}.a.example`);
      expect(askedNames()).toEqual(['never-1.a.example']);
      look('b', 'api.b.example');
      expect(askedNames()).toEqual(['never-1.a.example', 'api.b.example']);
      asked[1]?.answer(null, [{ address: '93.184.215.14', family: 4 }]);
      expect(results.get('b api.b.example')).toBeNull();
      // A's first lookup is stuck: its next name goes beside it (an upstream of A's whose name answers is not held up by
      // A's dead one), and no more than that, however long they take.
      await vi.advanceTimersByTimeAsync(STUCK_LOOKUP_MS);
      expect(askedNames()).toEqual(['never-1.a.example', 'api.b.example', 'never-2.a.example']);
      await vi.advanceTimersByTimeAsync(STUCK_LOOKUP_MS * 4);
      expect(asked).toHaveLength(3);
      // A name both wait for goes with whichever tenant's turn comes first, for both: B's, not after A's stuck names.
      look('a', 'shared.example');
      look('b', 'shared.example');
      expect(askedNames().at(-1)).toBe('shared.example');
      asked[3]?.answer(null, [{ address: '93.184.215.16', family: 4 }]);
      expect(results.get('a shared.example')).toBeNull();
      expect(results.get('b shared.example')).toBeNull();
      // A's other names never got a turn: they fail at the deadline, unasked, and A's first lookups still hold their slots.
      await vi.advanceTimersByTimeAsync(LOOKUP_DEADLINE_MS);
      for (let n = 1; n <= 2; n += 1) expect(codeOf('a', `never-${n}.a.example`)).toBe('ETIMEOUT');
      for (let n = 3; n <= 4; n += 1) expect(codeOf('a', `never-${n}.a.example`)).toBe(LOOKUP_QUEUED);
      expect(asked).toHaveLength(4);
      look('a', 'never-5.a.example');
      look('b', 'api-2.b.example');
      expect(askedNames().slice(4)).toEqual(['api-2.b.example']);
      // The resolver gives up on A's first name at last: A's next name gets the slot, and the name that got stuck and
      // failed fails at once for a while, as the resolver said, without a lookup (it would take A's slots again with
      // every new socket).
      asked[0]?.answer(Object.assign(new Error('no answer'), { code: 'EAI_AGAIN' }), []);
      expect(askedNames().slice(4)).toEqual(['api-2.b.example', 'never-5.a.example']);
      look('a', 'never-1.a.example');
      expect(codeOf('a', 'never-1.a.example')).toBe('EAI_AGAIN');
      expect(asked).toHaveLength(6);
      // Once that while is over, it is looked up again when A has a slot.
      await vi.advanceTimersByTimeAsync(SLOW_NAME_MS);
      look('a', 'never-1.a.example');
      expect(asked).toHaveLength(6);
      asked[2]?.answer(Object.assign(new Error('no answer'), { code: 'EAI_AGAIN' }), []);
      expect(askedNames().at(-1)).toBe('never-1.a.example');
    } finally {
      vi.useRealTimers();
    }
  });

  // Found by re-review: only a late failure marked a name slow, so past the deadline the dead name was looked up again
  // beside its own lookup, and the tenant's healthy name waited behind both.
  it("fails at once a name that ran out of time while its lookup runs on: not looked up beside it, and its tenant's healthy name goes", async () => {
    vi.useFakeTimers();
    try {
      const { askedNames, look, codeOf, results } = stuckResolver();
      look('a', 'dead.a.example');
      await vi.advanceTimersByTimeAsync(LOOKUP_DEADLINE_MS);
      expect(codeOf('a', 'dead.a.example')).toBe('ETIMEOUT');
      look('a', 'dead.a.example');
      expect(codeOf('a', 'dead.a.example')).toBe('ETIMEOUT');
      look('a', 'api.a.example');
      expect(askedNames()).toEqual(['dead.a.example', 'api.a.example']);
      expect(results.get('a api.a.example')).toBe('pending');
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps the code of a stuck lookup\'s failure for the name, and forgets it on an answer; a late failure after a later answer says nothing', async () => {
    vi.useFakeTimers();
    try {
      const { asked, askedNames, look, codeOf, results } = stuckResolver();
      look('a', 'gone.example');
      await vi.advanceTimersByTimeAsync(STUCK_LOOKUP_MS);
      asked[0]?.answer(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }), []);
      expect(codeOf('a', 'gone.example')).toBe('ENOTFOUND');
      look('a', 'gone.example');
      expect(codeOf('a', 'gone.example')).toBe('ENOTFOUND');
      expect(asked).toHaveLength(1);
      // Past the while: looked up again, and answered this time.
      await vi.advanceTimersByTimeAsync(SLOW_NAME_MS);
      look('a', 'gone.example');
      asked[1]?.answer(null, [{ address: '93.184.215.14', family: 4 }]);
      expect(results.get('a gone.example')).toBeNull();
      // A lookup that ran past the deadline, whose name a later lookup resolved, fails late: the name stays usable.
      look('b', 'flaky.example');
      await vi.advanceTimersByTimeAsync(LOOKUP_DEADLINE_MS);
      expect(codeOf('b', 'flaky.example')).toBe('ETIMEOUT');
      await vi.advanceTimersByTimeAsync(SLOW_NAME_MS);
      look('b', 'flaky.example');
      expect(askedNames().at(-1)).toBe('flaky.example');
      asked.at(-1)?.answer(null, [{ address: '93.184.215.15', family: 4 }]);
      asked[2]?.answer(Object.assign(new Error('no answer'), { code: 'EAI_AGAIN' }), []);
      await vi.advanceTimersByTimeAsync(3_000);
      look('b', 'flaky.example');
      expect(askedNames().at(-1)).toBe('flaky.example');
      expect(asked).toHaveLength(5);
    } finally {
      vi.useRealTimers();
    }
  });

  it('does not mark a name that waited for its turn and had run only a moment at the deadline', async () => {
    vi.useFakeTimers();
    try {
      const { asked, askedNames, look, results } = stuckResolver();
      look('a', 'dead-1.a.example');
      await vi.advanceTimersByTimeAsync(STUCK_LOOKUP_MS);
      look('a', 'dead-2.a.example');
      await vi.advanceTimersByTimeAsync(STUCK_LOOKUP_MS);
      look('a', 'late.a.example');
      await vi.advanceTimersByTimeAsync(LOOKUP_DEADLINE_MS - 300);
      // One of A's dead names gives up: its late name gets its turn, 300 ms before its deadline.
      asked[0]?.answer(Object.assign(new Error('no answer'), { code: 'EAI_AGAIN' }), []);
      expect(askedNames().at(-1)).toBe('late.a.example');
      await vi.advanceTimersByTimeAsync(400);
      expect((results.get('a late.a.example') as NodeJS.ErrnoException).code).toBe('ETIMEOUT');
      // Asked for again, it waits for a turn rather than failing at once.
      look('a', 'late.a.example');
      expect(results.get('a late.a.example')).toBe('pending');
    } finally {
      vi.useRealTimers();
    }
  });

  it('takes turns between tenants waiting for a lookup: one with many names waiting does not queue another behind them all', () => {
    const { asked, askedNames, look } = stuckResolver();
    look('a', 'never.a.example'); // holds one slot for good
    look('z', 'never.z.example'); // and another
    for (const host of ['1.b.example', '2.b.example', '3.b.example']) look('b', host);
    look('c', '1.c.example');
    const answerLast = () => asked.at(-1)?.answer(null, [{ address: '93.184.215.14', family: 4 }]);
    for (let turn = 0; turn < 3; turn += 1) answerLast();
    expect(askedNames()).toEqual(['never.a.example', 'never.z.example', '1.b.example', '2.b.example', '1.c.example', '3.b.example']);
  });
});
