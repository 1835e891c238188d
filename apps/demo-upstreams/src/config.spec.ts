import { ConfigError, parseConfig } from '@portcullis/shared/util-config';
import { describe, expect, it } from 'vitest';
import { demoStdioConfigSchema, demoUpstreamsConfigSchema } from './config';

describe('demo-upstreams config', () => {
  it('has working defaults', () => {
    expect(parseConfig(demoUpstreamsConfigSchema, {})).toEqual({
      nodeEnv: 'development',
      log: { level: 'info' },
      http: {
        host: '127.0.0.1',
        port: 3500,
        mountedServers: ['tickets', 'files', 'math', 'kitchen-sink', 'shapeshifter', 'conformance', 'conformance-schema'],
        sessionIdleTimeoutMs: 1_800_000,
        shutdownGraceMs: 5_000,
      },
    });
  });

  it('reads every variable, and returns a frozen object', () => {
    const config = parseConfig(demoUpstreamsConfigSchema, {
      NODE_ENV: 'test',
      LOG_LEVEL: 'debug',
      DEMO_UPSTREAMS_HOST: '0.0.0.0',
      DEMO_UPSTREAMS_PORT: '4500',
      DEMO_UPSTREAMS_SERVERS: ' math , kitchen-sink,math ',
      DEMO_UPSTREAMS_SESSION_IDLE_MS: '1000',
      DEMO_UPSTREAMS_SHUTDOWN_GRACE_MS: '10',
    });
    expect(config.http).toEqual({
      host: '0.0.0.0',
      port: 4500,
      mountedServers: ['math', 'kitchen-sink'],
      sessionIdleTimeoutMs: 1000,
      shutdownGraceMs: 10,
    });
    expect(Object.isFrozen(config.http)).toBe(true);
  });

  it('mounts nothing extra when DEMO_UPSTREAMS_SERVERS is none, and every server when it is empty (unset)', () => {
    expect(parseConfig(demoUpstreamsConfigSchema, { DEMO_UPSTREAMS_SERVERS: 'none' }).http.mountedServers).toEqual([]);
    expect(parseConfig(demoUpstreamsConfigSchema, { DEMO_UPSTREAMS_SERVERS: '' }).http.mountedServers).toEqual(parseConfig(demoUpstreamsConfigSchema, {}).http.mountedServers);
  });

  it('lists every bad variable', () => {
    let error: unknown;
    try {
      parseConfig(demoUpstreamsConfigSchema, {
        DEMO_UPSTREAMS_PORT: '70000',
        DEMO_UPSTREAMS_SERVERS: 'math,weather',
        LOG_LEVEL: 'loud',
        DEMO_UPSTREAMS_SESSION_IDLE_MS: '-1',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const keys = (error as ConfigError).problems.map((problem) => problem.split(':')[0]).sort();
    expect(keys).toEqual([
      'DEMO_UPSTREAMS_PORT',
      'DEMO_UPSTREAMS_SERVERS.1',
      'DEMO_UPSTREAMS_SESSION_IDLE_MS',
      'LOG_LEVEL',
    ]);
  });

  it('needs only a log level for stdio', () => {
    expect(parseConfig(demoStdioConfigSchema, { LOG_LEVEL: 'warn' })).toEqual({ log: { level: 'warn' } });
  });
});
