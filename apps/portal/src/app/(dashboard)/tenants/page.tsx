import type { Metadata } from 'next';
import { PageHeader, Placeholder } from '@portcullis/portal/ui';

export const metadata: Metadata = { title: 'Tenants' };

export default function Page() {
  return (
    <>
      <PageHeader title="Tenants" description="Organisations using this gateway and their members." />
      <Placeholder>Coming soon.</Placeholder>
    </>
  );
}
