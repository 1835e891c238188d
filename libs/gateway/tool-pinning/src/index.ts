export { pinKey, ToolPinIndex } from './lib/tool-pin-index';
export type { EnforcedKind, PinEntry, PinRow, UpstreamPins } from './lib/tool-pin-index';
export { pinningAfterApproval, pinningAroundPolicy, toolPinningHooks } from './lib/tool-pinning.hooks';
export type { PinVerdict, ToolPinningOptions } from './lib/tool-pinning.hooks';
