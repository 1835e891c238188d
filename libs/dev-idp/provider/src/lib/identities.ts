import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** Claims the dev IdP releases for one person; `sub` is stable across restarts. */
export interface DevIdpUser {
  readonly sub: string;
  readonly email: string;
  readonly name: string;
  readonly groups: readonly string[];
}

export interface DevIdpIdentities {
  /** Shared password for every seeded user (dev only). */
  readonly password: string;
  readonly users: readonly DevIdpUser[];
}

const identitiesSchema = z.object({
  password: z.string().min(1),
  users: z
    .array(
      z.object({
        sub: z.string().min(1),
        email: z.email(),
        name: z.string().min(1),
        groups: z.array(z.string()).default([]),
      }),
    )
    .min(1),
});

/** Validates an identities document (the shape of tools/demo/identities.json; extra fields are ignored). */
export function parseIdentities(value: unknown): DevIdpIdentities {
  const parsed = identitiesSchema.parse(value);
  const emails = new Set<string>();
  const subs = new Set<string>();
  for (const user of parsed.users) {
    const email = user.email.toLowerCase();
    if (emails.has(email)) throw new Error(`Duplicate identity email: ${user.email}`);
    if (subs.has(user.sub)) throw new Error(`Duplicate identity sub: ${user.sub}`);
    emails.add(email);
    subs.add(user.sub);
  }
  return parsed;
}

/** Reads and validates an identities file such as tools/demo/identities.json. */
export function readIdentitiesFile(filePath: string): DevIdpIdentities {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(filePath, 'utf8'));
  } catch (error) {
    throw new Error(
      `Cannot read identities from ${filePath}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return parseIdentities(raw);
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  // Compare equal-length buffers so the comparison time does not reveal the expected length early.
  return a.length === b.length ? timingSafeEqual(a, b) : timingSafeEqual(b, b) && false;
}

/** Lookup by email or subject, and password checks, over one identities document. */
export class UserDirectory {
  private readonly byEmail: ReadonlyMap<string, DevIdpUser>;
  private readonly bySub: ReadonlyMap<string, DevIdpUser>;

  constructor(private readonly identities: DevIdpIdentities) {
    this.byEmail = new Map(identities.users.map((user) => [user.email.toLowerCase(), user]));
    this.bySub = new Map(identities.users.map((user) => [user.sub, user]));
  }

  get users(): readonly DevIdpUser[] {
    return this.identities.users;
  }

  findBySub(sub: string): DevIdpUser | undefined {
    return this.bySub.get(sub);
  }

  /** The user whose email and password match, or undefined. Never says which of the two was wrong. */
  authenticate(email: string, password: string): DevIdpUser | undefined {
    const user = this.byEmail.get(email.trim().toLowerCase());
    const passwordOk = sameSecret(password, this.identities.password);
    return user && passwordOk ? user : undefined;
  }
}
