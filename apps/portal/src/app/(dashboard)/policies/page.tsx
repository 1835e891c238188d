import type { Metadata } from 'next';
import { PageHeader, Placeholder } from '@portcullis/portal/ui';

export const metadata: Metadata = { title: 'Policies' };

export default function Page() {
  return (
    <>
      <PageHeader title="Policies" description="Rules deciding which agent may call which tool." />
      <Placeholder>Coming soon.</Placeholder>
    </>
  );
}
