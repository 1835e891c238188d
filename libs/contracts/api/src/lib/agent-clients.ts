import { z } from 'zod';

export const agentClientKind = z.enum(['service', 'delegated']);

export const createAgentClientRequest = z.strictObject({
  name: z.string().trim().min(1).max(100),
  description: z.string().trim().max(1_000).nullable().optional(),
  kind: agentClientKind.optional(),
});
export type CreateAgentClientRequest = z.infer<typeof createAgentClientRequest>;

export const agentClientResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  kind: agentClientKind,
  disabled: z.boolean(),
  createdAt: z.iso.datetime({ offset: true }),
});
export type AgentClientResponse = z.infer<typeof agentClientResponse>;
