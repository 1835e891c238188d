/**
 * Demo data for local development (`npm run db:seed`, run by tools/scripts/db.mjs through jiti). Idempotent: a
 * second run changes nothing and prints no keys; an API key is printed only in the run that creates it.
 *
 * Runs as the admin/owner role (DATABASE_ADMIN_URL), i.e. with row-level security bypassed: it is an ops script.
 */
import { displayPrefix, generateApiKey, hashApiKey } from '@portcullis/auth/api-keys';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createSystemPrismaClient, type Prisma, type SystemPrismaClient } from '@portcullis/data/db';

const DEV_IDP_ISSUER = 'http://localhost:3400';
const PORTAL_CLIENT_ID = 'portcullis-portal';
const DEMO_AGENT_CLIENT = 'demo-agent';
const DEMO_API_KEY_NAME = 'demo';

interface Identities {
  tenants: { slug: string; name: string; emailDomains: string[]; groups: string[] }[];
  users: {
    sub: string;
    email: string;
    name: string;
    memberships: { tenant: string; role: 'owner' | 'admin' | 'auditor' | 'member' }[];
    groups: string[];
  }[];
}

/** The demo upstreams every tenant gets (the demo servers come from apps/demo-upstreams). */
const DEMO_UPSTREAMS: Omit<Prisma.UpstreamUncheckedCreateInput, 'tenantId'>[] = [
  {
    name: 'tickets',
    description: 'Demo ticketing system (Streamable HTTP)',
    toolPrefix: 'tickets',
    transport: 'streamable_http',
    url: 'http://127.0.0.1:3500/mcp',
  },
  {
    name: 'files',
    description: 'Demo virtual file tree (stdio)',
    toolPrefix: 'files',
    transport: 'stdio',
    command: 'node',
    args: ['dist/apps/demo-upstreams/stdio.js', 'files'],
  },
  {
    name: 'math',
    description: 'Demo calculator (stdio)',
    toolPrefix: 'math',
    transport: 'stdio',
    command: 'node',
    args: ['dist/apps/demo-upstreams/stdio.js', 'math'],
  },
];

/**
 * The default policy: deny unless a rule allows. Subjects/targets use the policy source format of
 * libs/policy/engine; adjust here if that format changes.
 */
const DEFAULT_POLICY_RULES: Omit<Prisma.PolicyRuleUncheckedCreateInput, 'tenantId' | 'policyId'>[] = [
  {
    position: 1,
    name: 'members use tickets',
    subjects: [
      { type: 'role', role: 'member' },
      { type: 'role', role: 'admin' },
      { type: 'role', role: 'owner' },
    ],
    targets: [{ upstream: 'tickets', kind: 'tool', name: '*' }],
    effect: 'allow',
  },
  {
    position: 2,
    name: 'everyone uses math',
    subjects: [{ type: 'any' }],
    targets: [{ upstream: 'math', kind: 'tool', name: '*' }],
    effect: 'allow',
  },
  {
    position: 3,
    name: 'file writes need approval',
    subjects: [{ type: 'any' }],
    targets: [{ upstream: 'files', kind: 'tool', name: 'write_*' }],
    effect: 'require_approval',
  },
  {
    position: 4,
    name: 'file reads',
    subjects: [{ type: 'any' }],
    targets: [{ upstream: 'files', kind: 'tool', name: '*' }],
    effect: 'allow',
  },
];

function loadIdentities(): Identities {
  const file = path.resolve(__dirname, '../tools/demo/identities.json');
  return JSON.parse(readFileSync(file, 'utf8')) as Identities;
}

async function seedTenant(
  db: SystemPrismaClient,
  tenant: Identities['tenants'][number],
  log: (line: string) => void,
): Promise<string> {
  const row = await db.tenant.upsert({
    where: { slug: tenant.slug },
    create: { slug: tenant.slug, name: tenant.name },
    update: {},
  });
  const tenantId = row.id;

  await db.ssoConnection.upsert({
    where: { tenantId_issuer_clientId: { tenantId, issuer: DEV_IDP_ISSUER, clientId: PORTAL_CLIENT_ID } },
    create: {
      tenantId,
      issuer: DEV_IDP_ISSUER,
      clientId: PORTAL_CLIENT_ID,
      emailDomains: tenant.emailDomains,
      groupClaim: 'groups',
    },
    update: {},
  });

  for (const group of tenant.groups) {
    await db.group.upsert({
      where: { tenantId_externalId: { tenantId, externalId: group } },
      create: { tenantId, externalId: group, name: group, source: 'sso' },
      update: {},
    });
  }

  for (const upstream of DEMO_UPSTREAMS) {
    await db.upstream.upsert({
      where: { tenantId_name: { tenantId, name: upstream.name } },
      create: { ...upstream, tenantId },
      update: {},
    });
  }

  const policy = await db.policy.findUnique({ where: { tenantId_name: { tenantId, name: 'default' } } });
  if (!policy) {
    await db.$transaction(async (tx) => {
      const created = await tx.policy.create({
        data: {
          tenantId,
          name: 'default',
          description: 'Demo policy created by the seed',
          defaultEffect: 'deny',
        },
      });
      await tx.policyRule.createMany({
        data: DEFAULT_POLICY_RULES.map((rule) => ({ ...rule, tenantId, policyId: created.id })),
      });
    });
  }

  const agent = await db.agentClient.upsert({
    where: { tenantId_name: { tenantId, name: DEMO_AGENT_CLIENT } },
    create: {
      tenantId,
      name: DEMO_AGENT_CLIENT,
      description: 'Demo agent for local development',
      kind: 'service',
    },
    update: {},
  });
  const existingKey = await db.apiKey.findFirst({
    where: { tenantId, agentClientId: agent.id, name: DEMO_API_KEY_NAME, revokedAt: null },
    select: { id: true },
  });
  if (!existingKey) {
    const key = generateApiKey();
    await db.apiKey.create({
      data: {
        tenantId,
        agentClientId: agent.id,
        name: DEMO_API_KEY_NAME,
        keyHash: hashApiKey(key),
        displayPrefix: displayPrefix(key),
        scopes: ['mcp'],
      },
    });
    log(`API key for tenant "${tenant.slug}" (agent client ${DEMO_AGENT_CLIENT}), shown once: ${key}`);
  }
  return tenantId;
}

export async function seed({
  adminUrl,
  log,
}: {
  adminUrl: string;
  log: (line: string) => void;
}): Promise<void> {
  const identities = loadIdentities();
  const db = createSystemPrismaClient({ url: adminUrl, poolMax: 2, applicationName: 'portcullis-seed' });
  try {
    const tenantIds = new Map<string, string>();
    for (const tenant of identities.tenants) tenantIds.set(tenant.slug, await seedTenant(db, tenant, log));

    for (const person of identities.users) {
      const user = await db.user.upsert({
        where: { email: person.email.toLowerCase() },
        create: {
          email: person.email.toLowerCase(),
          name: person.name,
          ssoIssuer: DEV_IDP_ISSUER,
          ssoSubject: person.sub,
        },
        update: {},
      });
      for (const membership of person.memberships) {
        const tenantId = tenantIds.get(membership.tenant);
        if (!tenantId)
          throw new Error(
            `identities.json: ${person.email} is a member of unknown tenant ${membership.tenant}`,
          );
        await db.membership.upsert({
          where: { tenantId_userId: { tenantId, userId: user.id } },
          create: { tenantId, userId: user.id, role: membership.role },
          update: { role: membership.role },
        });
        // A person's groups apply in each of their tenants that has a group of that name.
        const tenant = identities.tenants.find((t) => t.slug === membership.tenant);
        for (const groupName of person.groups.filter((g) => tenant?.groups.includes(g))) {
          const group = await db.group.findUniqueOrThrow({
            where: { tenantId_externalId: { tenantId, externalId: groupName } },
            select: { id: true },
          });
          await db.groupMember.upsert({
            where: { tenantId_groupId_userId: { tenantId, groupId: group.id, userId: user.id } },
            create: { tenantId, groupId: group.id, userId: user.id },
            update: {},
          });
        }
      }
    }
    log(
      `Seeded ${identities.tenants.length} tenants (${identities.tenants.map((t) => t.slug).join(', ')}) and ` +
        `${identities.users.length} users.`,
    );
  } finally {
    await db.$disconnect();
  }
}
