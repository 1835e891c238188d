-- An upstream's initialize instructions are pinned like its tools' definitions (docs/adr/0013-tool-pinning.md): the
-- test connection stores them as one more row of kind 'instructions', and the gateway relays only the approved text.
-- AlterEnum
ALTER TYPE "upstream_tool_kind" ADD VALUE 'instructions';
