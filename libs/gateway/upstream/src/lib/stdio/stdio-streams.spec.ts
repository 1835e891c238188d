import { SecretMask } from '@portcullis/shared/util-redact';
import { describe, expect, it } from 'vitest';
import { LineSplitter, StderrLog } from './stdio-streams';

describe('LineSplitter', () => {
  it('yields complete lines across chunks, handling CRLF and skipping empty lines', () => {
    const lines: string[] = [];
    const splitter = new LineSplitter(1_000);
    for (const chunk of ['{"a":', '1}\n{"b":2}\r\n', '\n{"c"', ':3}\n'])
      splitter.push(chunk, (line) => lines.push(line));
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it('refuses a line longer than the limit', () => {
    const splitter = new LineSplitter(10);
    expect(() => splitter.push('x'.repeat(11), () => undefined)).toThrow('size limit');
  });

  it('counts the limit in UTF-8 bytes: in one chunk, across chunks, and for a line whose end comes in a later chunk', () => {
    // 40 characters of three bytes each: 120 bytes.
    const euros = '€'.repeat(40);
    expect(() => new LineSplitter(100).push(`${euros}\n`, () => undefined)).toThrow('size limit');
    expect(() => new LineSplitter(100).push(euros, () => undefined)).toThrow('size limit');
    const split = new LineSplitter(100);
    split.push('€'.repeat(30), () => undefined);
    expect(() => split.push(`${'€'.repeat(10)}\n`, () => undefined)).toThrow('size limit');
    const lines: string[] = [];
    new LineSplitter(120).push(`${euros}\n`, (line) => lines.push(line));
    expect(lines).toEqual([euros]);
  });

  it('refuses a line that reaches the limit across many chunks, then starts afresh', () => {
    const splitter = new LineSplitter(1_000);
    expect(() => {
      for (let i = 0; i < 100; i++) splitter.push('x'.repeat(50), () => undefined);
    }).toThrow('size limit');
    const lines: string[] = [];
    splitter.push('{"ok":1}\n', (line) => lines.push(line));
    expect(lines).toEqual(['{"ok":1}']);
  });

  it('splits a long line trickled in small chunks in linear time', () => {
    const splitter = new LineSplitter(16 * 1024 * 1024);
    const lines: string[] = [];
    const piece = 'x'.repeat(256);
    const started = performance.now();
    // 2 MiB in 256-character chunks: joining and rescanning the buffer on every chunk took seconds here.
    for (let i = 0; i < 8_192; i++) splitter.push(piece, (line) => lines.push(line));
    splitter.push('\r\n', (line) => lines.push(line));
    expect(lines.map((line) => line.length)).toEqual([2 * 1024 * 1024]);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('StderrLog', () => {
  it('truncates long lines and rate-limits per window, reporting what it dropped', () => {
    const logged: Record<string, unknown>[] = [];
    const clock = { now: 0 };
    const logger = {
      info: (fields: Record<string, unknown>) => logged.push(fields),
      warn: (fields: Record<string, unknown>) => logged.push(fields),
      debug: () => undefined,
    };
    const log = new StderrLog(
      logger,
      { upstreamId: 'u' },
      { linesPerWindow: 2, windowMs: 1_000, maxLineLength: 5 },
      new SecretMask([]),
      () => clock.now,
    );
    log.push('first line\nsecond\nthird\nfour');
    expect(logged).toEqual([
      { upstreamId: 'u', stderr: 'first…' },
      { upstreamId: 'u', stderr: 'secon…' },
    ]);
    clock.now = 1_000;
    log.push('th\n');
    expect(logged.slice(2)).toEqual([
      { upstreamId: 'u', suppressedLines: 1 },
      { upstreamId: 'u', stderr: 'fourt…' },
    ]);
  });

  const recorded = (configured: string[], maxLineLength = 500) => {
    const lines: string[] = [];
    const logger = {
      info: (fields: Record<string, unknown>) => void lines.push(String(fields['stderr'])),
      warn: () => undefined,
      debug: () => undefined,
    };
    return { lines, log: new StderrLog(logger, {}, { linesPerWindow: 100, windowMs: 1_000, maxLineLength }, new SecretMask(configured)) };
  };

  it('masks the configured environment values, longest first, and credential-looking text', () => {
    const { lines, log } = recorded(['s3cr3t-value', 's3cr3t-value-and-more', 'short', 'quote"d-secret']);
    const token = `ghp_${'A1b2'.repeat(9)}`;
    log.push(`401 for token s3cr3t-value-and-more, then s3cr3t-value\nretrying with ${token}\n`);
    log.push(`${JSON.stringify({ A: 'quote"d-secret', B: 'short' })}\n`);
    expect(lines).toEqual([
      '401 for token [redacted], then [redacted]',
      'retrying with [redacted]',
      '{"A":"[redacted]","B":"short"}',
    ]);
  });

  it('masks a configured value the cut would split, rather than showing its first characters', () => {
    const secret = 'abcdefghijklmnop';
    const { lines, log } = recorded([secret], 20);
    // The secret starts before the 20th character and ends after it; it arrives in two chunks.
    log.push(`${'x'.repeat(15)}${secret.slice(0, 4)}`);
    log.push(`${secret.slice(4)} and more\n`);
    expect(lines).toEqual([`${'x'.repeat(15)}[reda…`]);
  });

  it('masks every line of a configured value of several lines (a PEM key), printed alone or in an environment dump', () => {
    const body = [
      'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj',
      'MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu',
      'NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ',
    ];
    const pem = ['-----BEGIN PRIVATE KEY-----', ...body, '-----END PRIVATE KEY-----'].join('\n');
    for (const stderr of [`PORT=8080\nAPP_PRIVATE_KEY=${pem}\n`, `${pem}\r\n`]) {
      const { lines, log } = recorded([pem, '8080']);
      log.push(stderr);
      log.flush();
      const text = lines.join('\n');
      for (const line of body) expect(text).not.toContain(line.slice(0, 12));
      expect(lines.filter((line) => line === '[redacted]').length).toBeGreaterThanOrEqual(body.length);
    }
    // What is not the key stays readable.
    const { lines, log } = recorded([pem]);
    log.push(`PORT=8080\nAPP_PRIVATE_KEY=${pem}\nready\n`);
    expect(lines[0]).toBe('PORT=8080');
    expect(lines.at(-1)).toBe('ready');
  });

  it('shows no part of a configured value cut off past what is read, though masking before it shortened the line', () => {
    // Ten 100-character tokens masked shrink the line by 900 characters, pulling what lay past the read window into
    // the 500 shown: a 992-character key that began inside the window but ran past it was shown from its start.
    const token = `A${'a'.repeat(99)}`;
    const key = `B${'0123456789'.repeat(99)}b`;
    const whole = recorded([token, key]);
    whole.log.push(`${`${token} `.repeat(10)}${key}\n`);
    // The same line arriving in pieces, so that the part kept between them is what is cut.
    const pieces = recorded([token, key]);
    const line = `${`${token} `.repeat(10)}${key} and the rest`;
    for (let at = 0; at < line.length; at += 300) pieces.log.push(line.slice(at, at + 300));
    pieces.log.push('\n');
    for (const { lines } of [whole, pieces]) {
      expect(lines).toHaveLength(1);
      expect(lines[0]).not.toContain(key.slice(0, 8));
      expect(lines[0]).toMatch(/^(\[redacted\] ){10}\[redacted\]…$/);
    }
  });
});
