import type { Metadata } from 'next';
import { PageHeader, Placeholder } from '@portcullis/portal/ui';

export const metadata: Metadata = { title: 'Audit' };

export default function Page() {
  return (
    <>
      <PageHeader title="Audit" description="The tamper-evident record of every call." />
      <Placeholder>Coming soon.</Placeholder>
    </>
  );
}
