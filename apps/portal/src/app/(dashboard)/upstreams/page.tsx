import type { Metadata } from 'next';
import { PageHeader, Placeholder } from '@portcullis/portal/ui';

export const metadata: Metadata = { title: 'Upstreams' };

export default function Page() {
  return (
    <>
      <PageHeader title="Upstreams" description="MCP servers the gateway forwards to." />
      <Placeholder>Coming soon.</Placeholder>
    </>
  );
}
