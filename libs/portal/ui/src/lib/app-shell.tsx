import type { ReactNode } from 'react';
import styles from './ui.module.css';

export interface NavItem {
  readonly href: string;
  readonly label: string;
}

export interface AppShellProps {
  readonly productName: string;
  readonly nav: readonly NavItem[];
  readonly user: { readonly name: string; readonly email: string };
  /** Rendered at the end of the header, e.g. a sign-out button. */
  readonly actions?: ReactNode;
  readonly children: ReactNode;
}

/** Header with the signed-in user, a side navigation and the page content. */
export function AppShell({ productName, nav, user, actions, children }: AppShellProps) {
  return (
    <div className={styles['shell']}>
      <header className={styles['header']}>
        <a className={styles['brand']} href="/">
          {productName}
        </a>
        <div className={styles['user']} data-testid="signed-in-user">
          <span className={styles['userName']}>{user.name}</span>
          <span className={styles['userEmail']}>{user.email}</span>
        </div>
        {actions}
      </header>
      <nav className={styles['nav']} aria-label="Main">
        <ul>
          {nav.map((item) => (
            <li key={item.href}>
              <a href={item.href}>{item.label}</a>
            </li>
          ))}
        </ul>
      </nav>
      <main className={styles['main']}>{children}</main>
    </div>
  );
}
