export {
  canSwitchUsers,
  GATEWAY_STDIO_HOST,
  inheritedCapabilitiesProblem,
  ownStatus,
  readOptional,
  stdioRangeProblem,
  stdioUserWarning,
  type StdioHost,
} from './lib/stdio-user';
