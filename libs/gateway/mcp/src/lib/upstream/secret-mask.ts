import { REDACTED } from '@portcullis/shared/util-redact';
import { UpstreamRpcError, type UpstreamConfig } from './upstream';

/**
 * Configured values shorter than this are left alone: a short one (`1`, `true`, a port) would mask ordinary words,
 * and is not a credential.
 */
const MASKED_MIN_LENGTH = 8;

/** Words that make a flag's value a credential: one part of its name (`--api-key`, `--client_secret`, `--authToken`). */
const CREDENTIAL_WORDS = new Set(['token', 'key', 'secret', 'password', 'passwd', 'pwd', 'auth', 'credential', 'credentials', 'cookie', 'apikey', 'accesskey', 'secretkey', 'privatekey', 'authtoken', 'accesstoken', 'bearer']);

/** Whether `flag` (`--name` or `-name`) names a credential by one of its parts (split at `-`, `_`, `.`, and camel case). */
function isCredentialFlag(flag: string): boolean {
  if (!/^--?[A-Za-z][\w.-]*$/.test(flag)) return false;
  const words = flag.replace(/^--?/, '').replace(/([a-z0-9])([A-Z])/g, '$1 $2').split(/[\s_.-]+/);
  return words.some((word) => CREDENTIAL_WORDS.has(word.toLowerCase()));
}

/**
 * The values a server's arguments give to flags named like credentials, as `--flag=value` or `--flag value`: masked
 * as configured env values are (a server that echoes its command line would show them).
 */
export function credentialArgs(args: readonly string[]): string[] {
  const values: string[] = [];
  args.forEach((arg, index) => {
    const equals = arg.indexOf('=');
    if (equals > 0 && isCredentialFlag(arg.slice(0, equals))) values.push(arg.slice(equals + 1));
    else if (equals === -1 && isCredentialFlag(arg)) {
      const next = args[index + 1];
      if (next !== undefined && !next.startsWith('-')) values.push(next);
    }
  });
  return values;
}

/**
 * Replaces an upstream's configured secrets wherever they appear in a text: a server that prints the token it was
 * refused with, or dumps its environment, would otherwise put them where they are read (the gateway's logs, an
 * agent's error). Each value is also matched as JSON writes it (quotes and backslashes escaped), longest first, so a
 * value that contains another is masked whole.
 */
export class SecretMask {
  private readonly secrets: readonly string[];

  constructor(values: Iterable<string>) {
    const secrets = new Set<string>();
    for (const value of values) {
      if (value.length < MASKED_MIN_LENGTH) continue;
      secrets.add(value);
      secrets.add(JSON.stringify(value).slice(1, -1));
    }
    this.secrets = [...secrets].sort((a, b) => b.length - a.length);
  }

  /** The length of the longest value masked (0 with none). */
  get longest(): number {
    return this.secrets[0]?.length ?? 0;
  }

  mask(text: string): string {
    let masked = text;
    for (const secret of this.secrets) if (masked.includes(secret)) masked = masked.replaceAll(secret, REDACTED);
    return masked;
  }
}

/**
 * The secrets the gateway gives an upstream: its header values (a credential after an auth scheme, `Bearer <token>`,
 * also alone), its env values, and the values of its credential flags.
 */
function configuredSecrets(config: UpstreamConfig): string[] {
  const values = [...Object.values(config.env), ...credentialArgs(config.args)];
  for (const value of Object.values(config.headers)) {
    values.push(value);
    const scheme = /^[A-Za-z][\w-]*\s+(\S.*)$/.exec(value);
    if (scheme?.[1] !== undefined) values.push(scheme[1]);
  }
  return values;
}

/** Made once per configuration (a configuration is replaced, never changed, when the upstream is edited). */
const masks = new WeakMap<UpstreamConfig, SecretMask>();

export function secretMaskOf(config: UpstreamConfig): SecretMask {
  let mask = masks.get(config);
  if (mask === undefined) {
    mask = new SecretMask(configuredSecrets(config));
    masks.set(config, mask);
  }
  return mask;
}

/**
 * An upstream's JSON-RPC error with the secrets the gateway configured for it masked in its message and data: an
 * upstream that quotes the credential it was sent (`invalid token Bearer …`) must not show it to the agent, nor write
 * it into the gateway's log. The same error when nothing needed masking. Data that no longer reads as JSON once
 * masked (it cannot happen for values JSON escapes, but is checked) is dropped.
 */
export function maskUpstreamError(config: UpstreamConfig, error: UpstreamRpcError): UpstreamRpcError {
  const mask = secretMaskOf(config);
  if (mask.longest === 0) return error;
  const message = mask.mask(error.message);
  let data = error.data;
  let dataChanged = false;
  if (data !== undefined) {
    const text = JSON.stringify(data);
    const masked = text === undefined ? text : mask.mask(text);
    if (masked !== text && masked !== undefined) {
      dataChanged = true;
      try {
        data = JSON.parse(masked) as unknown;
      } catch {
        data = undefined;
      }
    }
  }
  if (message === error.message && !dataChanged) return error;
  return new UpstreamRpcError(error.code, message, data);
}
