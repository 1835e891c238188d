/** The few logger methods the connector uses; a pino logger satisfies it. */
export interface UpstreamLogger {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  debug(fields: Record<string, unknown>, message: string): void;
}

const ignore = (): void => undefined;
export const SILENT_LOGGER: UpstreamLogger = { warn: ignore, info: ignore, debug: ignore };
