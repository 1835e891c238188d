import { pino } from 'pino';
import { loadConfigOrExit } from '@portcullis/shared/util-config';
import { createLogger } from '@portcullis/shared/util-logger';
import { DEMO_SERVER_NAMES, isDemoServerName, runStdioServer } from '@portcullis/demo/mcp-servers';
import { demoStdioConfigSchema } from './config';

// stdout is the MCP channel: everything human- or log-shaped goes to stderr.
async function main(): Promise<void> {
  const name = process.argv[2] ?? '';
  if (!isDemoServerName(name)) {
    process.stderr.write(`usage: node stdio.js <${DEMO_SERVER_NAMES.join(' | ')}>\n`);
    process.exit(64); // EX_USAGE
  }
  const config = loadConfigOrExit('demo-upstreams-stdio', demoStdioConfigSchema);
  const logger = createLogger({
    service: `demo-upstreams-stdio-${name}`,
    level: config.log.level,
    destination: pino.destination({ dest: 2, sync: true }),
  });
  const server = await runStdioServer(name, logger);
  const stop = () => void server.close();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await server.closed;
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo-upstreams-stdio: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
