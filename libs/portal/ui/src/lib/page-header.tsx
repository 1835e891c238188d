import type { ReactNode } from 'react';
import styles from './ui.module.css';

export function PageHeader({
  title,
  description,
}: {
  readonly title: string;
  readonly description?: ReactNode;
}) {
  return (
    <div className={styles['pageHeader']}>
      <h1>{title}</h1>
      {description ? <p>{description}</p> : null}
    </div>
  );
}

/** A bordered box for content that is not built yet. */
export function Placeholder({ children }: { readonly children: ReactNode }) {
  return <div className={styles['placeholder']}>{children}</div>;
}

export function Card({ title, children }: { readonly title?: string; readonly children: ReactNode }) {
  return (
    <section className={styles['card']}>
      {title ? <h2>{title}</h2> : null}
      {children}
    </section>
  );
}
