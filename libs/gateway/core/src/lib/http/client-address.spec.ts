import type { IncomingMessage } from 'node:http';
import { configFields } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { clientAddressOf } from './client-address';

/** A request as proxy-addr reads it: the socket's peer and the X-Forwarded-For header. */
const request = (peer: string, forwardedFor?: string) => {
  const socket = { remoteAddress: peer };
  return { socket, connection: socket, headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor } } as unknown as IncomingMessage;
};

describe('clientAddressOf', () => {
  it('is the socket peer when no proxy is trusted, whatever the headers say', () => {
    expect(clientAddressOf(false)(request('203.0.113.9', '10.1.2.3'))).toBe('203.0.113.9');
  });

  it('with one trusted hop, is the address that proxy saw, not what the client wrote further left', () => {
    const address = clientAddressOf(1);
    // The client sent "X-Forwarded-For: 10.1.2.3"; the load balancer (127.0.0.1) appended the real peer.
    expect(address(request('127.0.0.1', '10.1.2.3, 198.51.100.7'))).toBe('198.51.100.7');
    expect(address(request('127.0.0.1', '198.51.100.7'))).toBe('198.51.100.7');
    expect(address(request('127.0.0.1'))).toBe('127.0.0.1');
  });

  it('with trusted proxy addresses, skips only those from the right', () => {
    const address = clientAddressOf(['127.0.0.1', '10.0.0.0/8']);
    expect(address(request('127.0.0.1', '10.1.2.3, 198.51.100.7, 10.0.0.5'))).toBe('198.51.100.7');
    // A peer that is not a trusted proxy is the client, its header notwithstanding.
    expect(address(request('203.0.113.9', '10.1.2.3'))).toBe('203.0.113.9');
  });
});

describe('the trusted-proxies setting', () => {
  const parse = (value: string | undefined) => configFields.trustedProxies.safeParse(value);

  it('reads none, a number of hops, or a list of addresses and CIDRs', () => {
    expect(parse(undefined).data).toBe(false);
    expect(parse('false').data).toBe(false);
    expect(parse('1').data).toBe(1);
    expect(parse(' 10.0.0.0/8 , 127.0.0.1,loopback ').data).toEqual(['10.0.0.0/8', '127.0.0.1', 'loopback']);
  });

  it('refuses true (it would trust what the client wrote) and anything that is not an address', () => {
    expect(parse('true').error?.issues[0]?.message).toMatch(/every X-Forwarded-For entry/);
    expect(parse('proxy.internal').success).toBe(false);
    expect(parse('10.0.0.0/99').success).toBe(false);
    expect(parse('1000').success).toBe(false);
  });
});
