import type { GroupMemberResponse, GroupResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

export const groupSelect = {
  id: true,
  externalId: true,
  name: true,
  source: true,
  createdAt: true,
  updatedAt: true,
  _count: { select: { members: true } },
} satisfies Prisma.GroupSelect;
export type GroupRow = Prisma.GroupGetPayload<{ select: typeof groupSelect }>;

export const groupMemberSelect = {
  id: true,
  userId: true,
  createdAt: true,
  membership: { select: { displayName: true, user: { select: { email: true } } } },
} satisfies Prisma.GroupMemberSelect;
export type GroupMemberRow = Prisma.GroupMemberGetPayload<{ select: typeof groupMemberSelect }>;

export function toGroupResponse(row: GroupRow): GroupResponse {
  return {
    id: row.id,
    externalId: row.externalId,
    name: row.name,
    source: row.source,
    memberCount: row._count.members,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export function toGroupMemberResponse(row: GroupMemberRow): GroupMemberResponse {
  return {
    userId: row.userId,
    email: row.membership.user.email,
    // The tenant's own name for the person, as in its member list (users are global; their names are not shown).
    name: row.membership.displayName ?? row.membership.user.email,
    addedAt: row.createdAt.toISOString(),
  };
}
