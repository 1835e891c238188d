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
import { compile, serializeSnapshot } from '@portcullis/policy/engine';

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

const SEED_POLICY_DESCRIPTION = 'Demo policy created by the seed';

/**
 * The default policy: deny unless a rule allows. Subjects/targets use the policy source format of
 * libs/policy/engine (`policyRuleSource` in @portcullis/contracts/policy-ir); the seed compiles it, so a rule that
 * no longer fits the format fails the seed loudly. The demo agent client (the seeded API key) may use every demo
 * tool, prompt and resource.
 */
function defaultPolicyRules(demoAgentId: string): Omit<Prisma.PolicyRuleUncheckedCreateInput, 'tenantId' | 'policyId'>[] {
  const demoUpstreams = DEMO_UPSTREAMS.map((upstream) => upstream.name);
  return [
    {
      position: 1,
      name: 'demo-agent-uses-demo-upstreams',
      description: 'The seeded API key (agent client demo-agent) may use the demo upstreams',
      subjects: [{ type: 'agent_client', agentClientId: demoAgentId }],
      targets: demoUpstreams.flatMap((upstream) => [
        { kind: 'tool', upstream, name: '*' },
        { kind: 'prompt', upstream, name: '*' },
        { kind: 'resource', upstream, uri: '**' },
      ]),
      effect: 'allow',
    },
    {
      position: 2,
      name: 'members-use-tickets',
      subjects: [
        { type: 'role', role: 'member' },
        { type: 'role', role: 'admin' },
        { type: 'role', role: 'owner' },
      ],
      targets: [{ kind: 'tool', upstream: 'tickets', name: '*' }],
      effect: 'allow',
    },
    {
      position: 3,
      name: 'everyone-uses-math',
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'tool', upstream: 'math', name: '*' }],
      effect: 'allow',
    },
    {
      position: 4,
      name: 'file-writes-need-approval',
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'tool', upstream: 'files', name: 'write_*' }],
      effect: 'require_approval',
    },
    {
      position: 5,
      name: 'file-reads',
      subjects: [{ type: 'authenticated' }],
      targets: [{ kind: 'tool', upstream: 'files', name: '*' }],
      effect: 'allow',
    },
  ];
}

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
  // The seed owns its demo policy until it has been compiled: a policy without any snapshot (older seeds wrote rules
  // in a format the compiler refuses) gets the current default rules; one with snapshots belongs to the admins.
  const policy = await db.policy.findUnique({ where: { tenantId_name: { tenantId, name: 'default' } } });
  const snapshots = await db.policySnapshot.count({ where: { tenantId } });
  if (!policy || (policy.description === SEED_POLICY_DESCRIPTION && snapshots === 0)) {
    await db.$transaction(async (tx) => {
      const current =
        policy ??
        (await tx.policy.create({
          data: { tenantId, name: 'default', description: SEED_POLICY_DESCRIPTION, defaultEffect: 'deny' },
        }));
      await tx.policyRule.deleteMany({ where: { tenantId, policyId: current.id } });
      await tx.policyRule.createMany({
        data: defaultPolicyRules(agent.id).map((rule) => ({ ...rule, tenantId, policyId: current.id })),
      });
    });
  }

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

/**
 * Gives a tenant that has no active policy snapshot one compiled from its stored policy, as the control plane's
 * snapshot writer would (the gateway enforces snapshots only, and denies everything for a tenant without one).
 * Runs after the memberships exist, so rules naming roles and groups compile against the real directory.
 */
async function activateSnapshot(db: SystemPrismaClient, tenantId: string, slug: string, log: (line: string) => void): Promise<void> {
  await db.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`pcs:policy-snapshots:${tenantId}`}, 0))`;
    if ((await tx.policySnapshot.count({ where: { tenantId, active: true } })) > 0) return;
    const policy = await tx.policy.findUnique({ where: { tenantId_name: { tenantId, name: 'default' } } });
    const [rules, members, groups, agentClients, upstreams, latest] = await Promise.all([
      policy ? tx.policyRule.findMany({ where: { tenantId, policyId: policy.id }, orderBy: { position: 'asc' } }) : [],
      tx.membership.findMany({ where: { tenantId }, select: { userId: true, role: true }, orderBy: { userId: 'asc' } }),
      tx.group.findMany({ where: { tenantId }, select: { externalId: true, members: { select: { userId: true } } }, orderBy: { externalId: 'asc' } }),
      tx.agentClient.findMany({ where: { tenantId }, select: { id: true }, orderBy: { id: 'asc' } }),
      tx.upstream.findMany({
        where: { tenantId },
        select: { name: true, tools: { where: { removedAt: null }, select: { kind: true, name: true } } },
        orderBy: { name: 'asc' },
      }),
      tx.policySnapshot.findFirst({ where: { tenantId }, orderBy: { version: 'desc' }, select: { version: true } }),
    ]);
    const version = (latest?.version ?? 0) + 1;
    const source = {
      tenantId,
      version,
      defaultEffect: policy?.defaultEffect ?? 'deny',
      rules: rules.map((rule, index) => ({
        id: rule.name ?? `rule-${index + 1}`,
        ...(rule.description === null ? {} : { description: rule.description }),
        enabled: rule.enabled,
        subjects: rule.subjects,
        targets: rule.targets,
        effect: rule.effect,
        ...(rule.condition === null ? {} : { condition: rule.condition }),
        ...(rule.rateLimit === null ? {} : { rateLimit: rule.rateLimit }),
      })),
      directory: {
        members,
        groups: groups.map((group) => ({ name: group.externalId, members: group.members.map((member) => member.userId) })),
        agentClients,
      },
      upstreams: upstreams.map((upstream) => ({ name: upstream.name, tools: upstream.tools })),
    };
    const compiled = compile(source);
    if (!compiled.ok) {
      log(`Tenant "${slug}": its policy does not compile, so no snapshot was activated (the gateway denies everything): ${JSON.stringify(compiled.errors)}`);
      return;
    }
    await tx.policySnapshot.create({
      data: {
        tenantId,
        version,
        irVersion: compiled.snapshot.irVersion,
        checksum: compiled.snapshot.checksum,
        ir: JSON.parse(serializeSnapshot(compiled.snapshot)) as Prisma.InputJsonValue,
        source: source as unknown as Prisma.InputJsonValue,
        active: true,
        comment: 'Activated by the seed',
      },
    });
    log(`Tenant "${slug}": policy snapshot v${version} activated.`);
  });
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
          create: { tenantId, userId: user.id, role: membership.role, displayName: person.name },
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
    // Gateways already running pick the snapshots up through their periodic reconcile (no Redis client here).
    for (const [slug, tenantId] of tenantIds) await activateSnapshot(db, tenantId, slug, log);
    log(
      `Seeded ${identities.tenants.length} tenants (${identities.tenants.map((t) => t.slug).join(', ')}) and ` +
        `${identities.users.length} users.`,
    );
  } finally {
    await db.$disconnect();
  }
}
