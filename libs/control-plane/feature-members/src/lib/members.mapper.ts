import type { MemberResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

export const memberSelect = {
  id: true,
  userId: true,
  role: true,
  displayName: true,
  createdAt: true,
  user: { select: { email: true, name: true } },
} satisfies Prisma.MembershipSelect;
export type MemberRow = Prisma.MembershipGetPayload<{ select: typeof memberSelect }>;

export function toMemberResponse(row: MemberRow): MemberResponse {
  return {
    id: row.id,
    userId: row.userId,
    email: row.user.email,
    // The tenant's own name for the person; the user's global name only for memberships from before there was one.
    name: row.displayName ?? row.user.name,
    role: row.role,
    createdAt: row.createdAt.toISOString(),
  };
}
