import type { ReactNode } from 'react';
import { AppShell, type NavItem } from '@portcullis/portal/ui';
import { requireUser } from '../../auth';
import { SignOutButton } from './sign-out-button';
import './dashboard.css';

const NAV: readonly NavItem[] = [
  { href: '/tenants', label: 'Tenants' },
  { href: '/upstreams', label: 'Upstreams' },
  { href: '/policies', label: 'Policies' },
  { href: '/agent-clients', label: 'Agent clients' },
  { href: '/approvals', label: 'Approvals' },
  { href: '/audit', label: 'Audit' },
];

export default async function DashboardLayout({ children }: { readonly children: ReactNode }) {
  const user = await requireUser('/');
  return (
    <AppShell productName="Portcullis" nav={NAV} user={user} actions={<SignOutButton />}>
      {children}
    </AppShell>
  );
}
