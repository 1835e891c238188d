import { z } from 'zod';
import { membershipRole } from './tenants';

export const addMemberRequest = z.strictObject({
  email: z.email().max(320).toLowerCase(),
  /** Used only when the person has no user record yet. */
  name: z.string().trim().min(1).max(200).optional(),
  role: membershipRole,
});
export type AddMemberRequest = z.infer<typeof addMemberRequest>;

export const updateMemberRequest = z.strictObject({ role: membershipRole });
export type UpdateMemberRequest = z.infer<typeof updateMemberRequest>;

export const memberResponse = z.object({
  id: z.uuid(),
  userId: z.uuid(),
  email: z.string(),
  name: z.string(),
  role: membershipRole,
  createdAt: z.iso.datetime({ offset: true }),
});
export type MemberResponse = z.infer<typeof memberResponse>;
