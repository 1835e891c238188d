import type { Metadata } from 'next';
import { PageHeader, Placeholder } from '@portcullis/portal/ui';

export const metadata: Metadata = { title: 'Approvals' };

export default function Page() {
  return (
    <>
      <PageHeader title="Approvals" description="Tool calls waiting for a human decision." />
      <Placeholder>Coming soon.</Placeholder>
    </>
  );
}
