export {
  canSwitchUsers,
  CONTROL_PLANE_STDIO_HOST,
  GATEWAY_STDIO_HOST,
  inheritedCapabilitiesProblem,
  ownStatus,
  readOptional,
  stdioRangeProblem,
  stdioUserWarning,
  type StdioHost,
} from './lib/stdio-user';
export { privateHome, StdioUserIds, type StdioUser } from './lib/user-ids';
