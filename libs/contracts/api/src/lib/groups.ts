import { POLICY_LIMITS } from '@portcullis/contracts/policy-ir';
import { z } from 'zod';

/**
 * A group's key in policies (`{ "type": "group", "group": "<externalId>" }`): the SSO group claim value, or a name
 * chosen by an admin for a manual group. Unique per tenant and fixed once created (rules refer to it); the display
 * `name` can change freely.
 */
export const groupExternalId = z
  .string()
  .trim()
  .min(1)
  .max(POLICY_LIMITS.idLength)
  .regex(/^[^\p{Cc}]+$/u, 'no control characters');

export const createGroupRequest = z.strictObject({
  externalId: groupExternalId,
  name: z.string().trim().min(1).max(200),
});
export type CreateGroupRequest = z.infer<typeof createGroupRequest>;

export const updateGroupRequest = z.strictObject({ name: z.string().trim().min(1).max(200) });
export type UpdateGroupRequest = z.infer<typeof updateGroupRequest>;

export const groupSource = z.enum(['sso', 'manual']);

export const groupResponse = z.object({
  id: z.uuid(),
  externalId: z.string(),
  name: z.string(),
  /** `manual`: created through this API; `sso`: synced from the identity provider's group claim. */
  source: groupSource,
  memberCount: z.number().int().min(0),
  createdAt: z.iso.datetime({ offset: true }),
  updatedAt: z.iso.datetime({ offset: true }),
});
export type GroupResponse = z.infer<typeof groupResponse>;

export const addGroupMemberRequest = z.strictObject({ userId: z.uuid().toLowerCase() });
export type AddGroupMemberRequest = z.infer<typeof addGroupMemberRequest>;

export const groupMemberResponse = z.object({
  userId: z.uuid(),
  email: z.string(),
  name: z.string(),
  addedAt: z.iso.datetime({ offset: true }),
});
export type GroupMemberResponse = z.infer<typeof groupMemberResponse>;
