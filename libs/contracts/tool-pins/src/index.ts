export { definitionHash, definitionKey, diffDefinitions, pinnedDefinition } from './lib/definitions';
export type { DefinitionChange, PinnedDefinition, PinnedKind } from './lib/definitions';
