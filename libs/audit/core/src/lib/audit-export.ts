export type ExportVerdict =
  | { readonly ok: true; readonly rows: number; readonly sha256: string; readonly chain: string }
  | { readonly ok: false; readonly problem: string };

export async function verifyExportFile(_file: string, _manifest: string): Promise<ExportVerdict> {
  return { ok: false, problem: 'export verification is not implemented yet' };
}
