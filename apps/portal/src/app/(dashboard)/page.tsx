import type { Metadata } from 'next';
import { Card, PageHeader } from '@portcullis/portal/ui';
import { requireUser } from '../../auth';

export const metadata: Metadata = { title: 'Dashboard' };

export default async function DashboardPage() {
  const user = await requireUser('/');
  return (
    <>
      <PageHeader
        title={`Welcome, ${user.name}`}
        description="Manage tenants, upstream MCP servers, policies and agent clients."
      />
      <Card title="Your account">
        <dl>
          <dt>Email</dt>
          <dd>{user.email}</dd>
          <dt>Groups</dt>
          <dd>{user.groups.length > 0 ? user.groups.join(', ') : 'none'}</dd>
        </dl>
      </Card>
    </>
  );
}
