import type { AgentClientResponse } from '@portcullis/contracts/api';
import type { Prisma } from '@portcullis/data/db';

export const agentClientSelect = {
  id: true,
  name: true,
  description: true,
  kind: true,
  disabled: true,
  createdAt: true,
} satisfies Prisma.AgentClientSelect;
export type AgentClientRow = Prisma.AgentClientGetPayload<{ select: typeof agentClientSelect }>;

export function toAgentClientResponse(row: AgentClientRow): AgentClientResponse {
  return { ...row, createdAt: row.createdAt.toISOString() };
}
