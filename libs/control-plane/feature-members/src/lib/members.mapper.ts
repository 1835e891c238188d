import type { MemberResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

export const memberSelect = {
  id: true,
  userId: true,
  role: true,
  createdAt: true,
  user: { select: { email: true, name: true } },
} satisfies Prisma.MembershipSelect;
export type MemberRow = Prisma.MembershipGetPayload<{ select: typeof memberSelect }>;

export function toMemberResponse(row: MemberRow): MemberResponse {
  return {
    id: row.id,
    userId: row.userId,
    email: row.user.email,
    name: row.user.name,
    role: row.role,
    createdAt: row.createdAt.toISOString(),
  };
}
