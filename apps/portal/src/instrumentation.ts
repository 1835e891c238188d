export async function register(): Promise<void> {
  if (process.env['NEXT_RUNTIME'] === 'nodejs') {
    const { portalConfig } = await import('./config');
    portalConfig();
  }
}
