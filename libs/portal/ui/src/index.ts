export { AppShell } from './lib/app-shell';
export type { AppShellProps, NavItem } from './lib/app-shell';
export { Card, PageHeader, Placeholder } from './lib/page-header';
