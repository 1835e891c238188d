import type { MemberResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

export const memberSelect = {
  id: true,
  userId: true,
  role: true,
  displayName: true,
  createdAt: true,
  user: { select: { email: true } },
} satisfies Prisma.MembershipSelect;
export type MemberRow = Prisma.MembershipGetPayload<{ select: typeof memberSelect }>;

export function toMemberResponse(row: MemberRow): MemberResponse {
  return {
    id: row.id,
    userId: row.userId,
    email: row.user.email,
    // The tenant's own name for the person (memberships from before were given the user's name by a migration).
    name: row.displayName ?? row.user.email,
    role: row.role,
    createdAt: row.createdAt.toISOString(),
  };
}
