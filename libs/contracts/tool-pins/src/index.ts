export { definitionHash, definitionKey, diffDefinitions, INSTRUCTIONS_NAME, MAX_INSTRUCTIONS_CHARS, pinnedDefinition, relayedInstructions } from './lib/definitions';
export type { DefinitionChange, PinnedDefinition, PinnedKind } from './lib/definitions';
