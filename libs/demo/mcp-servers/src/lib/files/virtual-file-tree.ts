export interface VirtualFile {
  /** Absolute POSIX-style path inside the virtual tree, e.g. `/docs/readme.md`. */
  readonly path: string;
  readonly content: string;
  readonly mimeType: string;
}

export interface DirectoryEntry {
  readonly name: string;
  readonly path: string;
  readonly type: 'file' | 'directory';
  /** Bytes (UTF-8) for files; number of direct children for directories. */
  readonly size: number;
}

export type PathProblem = 'invalid_path' | 'not_found' | 'is_directory' | 'not_a_directory';

export type TreeResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly problem: PathProblem; readonly message: string };

const MAX_PATH_LENGTH = 1_024;

/**
 * Normalises a virtual path: must be absolute, `.` segments and repeated slashes collapse, and any
 * `..`, backslash or control character is refused rather than resolved. The tree is a map lookup, so
 * nothing outside it is reachable anyway; refusing makes the intent visible in errors.
 */
export function normaliseVirtualPath(raw: string): TreeResult<string> {
  const invalid = (message: string): TreeResult<string> => ({ ok: false, problem: 'invalid_path', message });
  if (raw.length === 0 || raw.length > MAX_PATH_LENGTH) return invalid('Path must be 1 to 1024 characters.');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\\]/.test(raw))
    return invalid('Path must not contain backslashes or control characters.');
  if (!raw.startsWith('/')) return invalid(`Path must be absolute (start with "/"): ${raw}`);
  const segments = raw.split('/').filter((segment) => segment !== '' && segment !== '.');
  if (segments.includes('..')) return invalid(`Path must not contain "..": ${raw}`);
  return { ok: true, value: `/${segments.join('/')}` };
}

const parentOf = (path: string): string => path.slice(0, path.lastIndexOf('/')) || '/';
const nameOf = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

/** A read-only, in-memory file tree. Directories exist implicitly as parents of files. */
export class VirtualFileTree {
  private readonly fileByPath = new Map<string, VirtualFile>();
  private readonly childrenByDirectory = new Map<string, Set<string>>([['/', new Set()]]);

  constructor(files: readonly VirtualFile[]) {
    for (const file of files) {
      const normalised = normaliseVirtualPath(file.path);
      if (!normalised.ok || normalised.value === '/')
        throw new Error(`Invalid virtual file path: ${file.path}`);
      const path = normalised.value;
      if (this.fileByPath.has(path) || this.childrenByDirectory.has(path)) {
        throw new Error(`Duplicate virtual path: ${path}`);
      }
      this.fileByPath.set(path, { ...file, path });
      let child = path;
      while (child !== '/') {
        const parent = parentOf(child);
        if (this.fileByPath.has(parent)) throw new Error(`A file is used as a directory: ${parent}`);
        const siblings = this.childrenByDirectory.get(parent) ?? new Set<string>();
        siblings.add(child);
        this.childrenByDirectory.set(parent, siblings);
        child = parent;
      }
    }
  }

  files(): readonly VirtualFile[] {
    return [...this.fileByPath.values()].sort((a, b) => a.path.localeCompare(b.path));
  }

  read(rawPath: string): TreeResult<VirtualFile> {
    const normalised = normaliseVirtualPath(rawPath);
    if (!normalised.ok) return normalised;
    const path = normalised.value;
    const file = this.fileByPath.get(path);
    if (file) return { ok: true, value: file };
    if (this.childrenByDirectory.has(path)) {
      return { ok: false, problem: 'is_directory', message: `${path} is a directory; use list_files.` };
    }
    return { ok: false, problem: 'not_found', message: `No such file: ${path}` };
  }

  list(rawPath: string, recursive: boolean): TreeResult<readonly DirectoryEntry[]> {
    const normalised = normaliseVirtualPath(rawPath);
    if (!normalised.ok) return normalised;
    const path = normalised.value;
    if (this.fileByPath.has(path)) {
      return { ok: false, problem: 'not_a_directory', message: `${path} is a file; use read_file.` };
    }
    if (!this.childrenByDirectory.has(path)) {
      return { ok: false, problem: 'not_found', message: `No such directory: ${path}` };
    }
    const entries: DirectoryEntry[] = [];
    const visit = (directory: string) => {
      const children = [...(this.childrenByDirectory.get(directory) ?? [])].sort();
      for (const child of children) {
        const file = this.fileByPath.get(child);
        entries.push(
          file
            ? {
                name: nameOf(child),
                path: child,
                type: 'file',
                size: Buffer.byteLength(file.content, 'utf8'),
              }
            : {
                name: nameOf(child),
                path: child,
                type: 'directory',
                size: this.childrenByDirectory.get(child)?.size ?? 0,
              },
        );
        if (!file && recursive) visit(child);
      }
    };
    visit(path);
    return { ok: true, value: entries };
  }
}

export const DEFAULT_VIRTUAL_FILES: readonly VirtualFile[] = [
  {
    path: '/README.md',
    mimeType: 'text/markdown',
    content: '# Acme billing service\n\nIssues invoices and reconciles payments. See docs/ for details.\n',
  },
  {
    path: '/docs/architecture.md',
    mimeType: 'text/markdown',
    content:
      '# Architecture\n\nAn API (Node.js) in front of Postgres. A nightly job reconciles payments with the bank feed.\n',
  },
  {
    path: '/docs/runbooks/on-call.md',
    mimeType: 'text/markdown',
    content:
      '# On-call runbook\n\n1. Check the dashboard.\n2. Page the database owner if replication lag > 60 s.\n',
  },
  {
    path: '/config/service.json',
    mimeType: 'application/json',
    content: `${JSON.stringify({ name: 'billing', port: 8080, features: { reconciliation: true } }, null, 2)}\n`,
  },
  {
    path: '/data/customers.csv',
    mimeType: 'text/csv',
    content: 'id,name,plan\n1,Globex,enterprise\n2,Initech,team\n3,Umbrella,starter\n',
  },
];
