import type { Metadata } from 'next';
import { PageHeader, Placeholder } from '@portcullis/portal/ui';

export const metadata: Metadata = { title: 'Agent clients' };

export default function Page() {
  return (
    <>
      <PageHeader title="Agent clients" description="Agents and the API keys they authenticate with." />
      <Placeholder>Coming soon.</Placeholder>
    </>
  );
}
