/**
 * Names the gateway exposes for upstream tools and prompts: `<prefix><separator><name>`.
 *
 * The specification's tool-name rules (2025-11-25): 1–128 characters of [A-Za-z0-9_.-]. A prefix may not
 * contain the separator, so the first separator in an exposed name always ends the prefix: parsing is
 * unambiguous whatever the upstream's own names contain.
 */
export const MAX_NAME_LENGTH = 128;
const NAME_CHARS = /^[A-Za-z0-9_.-]+$/;

export const isValidExposedName = (name: string): boolean =>
  name.length >= 1 && name.length <= MAX_NAME_LENGTH && NAME_CHARS.test(name);

/**
 * Prompt names have no character rules in the specification (a server may call one `code review`): an exposed prompt
 * name is any text of 1–512 characters without control or invisible formatting characters, bounded so that a name an
 * agent sends does not travel into the policy engine and the audit trail at any size.
 */
export const MAX_PROMPT_NAME_LENGTH = 512;

/**
 * Characters that could make a name in the audit trail or an approval read as another, or hide text from whoever reads
 * it: controls (Unicode's Cc: C0, DEL, C1), invisible formatting (Cf: zero-width space and word joiner, directional
 * marks, overrides and isolates, the soft hyphen, the byte-order mark, tag characters), line and paragraph separators,
 * halves of surrogate pairs, and whatever else Unicode calls default-ignorable (Hangul fillers, the combining grapheme
 * joiner, variation selectors, code points reserved as ignorable).
 */
const HIDDEN_CHARACTERS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Default_Ignorable_Code_Point}]/gu;
/** What a zero-width (non-)joiner may follow where it does something: a mark (an Indic virama), Arabic script (Persian), an emoji. */
const JOINS_AFTER = /[\p{Mn}\p{Mc}\p{Script=Arabic}\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F]/u;
/** What it may then precede: a letter or an emoji. */
const JOINS_BEFORE = /[\p{L}\p{Extended_Pictographic}]/u;
const EMOJI = /\p{Emoji}/u;

/** The code point that ends just before `index` (a surrogate pair read whole), or '' at the start. */
function codePointBefore(text: string, index: number): string {
  if (index <= 0) return '';
  const low = text.charCodeAt(index - 1);
  const start = low >= 0xdc00 && low <= 0xdfff && index >= 2 && (text.charCodeAt(index - 2) & 0xfc00) === 0xd800 ? index - 2 : index - 1;
  return text.slice(start, index);
}

/**
 * Whether `name` holds a hidden character (`HIDDEN_CHARACTERS`) anywhere but the few places one does something
 * visible: the zero-width joiner and non-joiner between letters after an Indic virama or in Arabic script (Persian
 * words), or inside an emoji sequence, and the emoji and text presentation selectors (U+FE0F, U+FE0E) after an emoji.
 */
function hasHiddenCharacter(name: string): boolean {
  for (const match of name.matchAll(HIDDEN_CHARACTERS)) {
    const character = match[0];
    const before = codePointBefore(name, match.index);
    if (character === '\u200c' || character === '\u200d') {
      const after = String.fromCodePoint(name.codePointAt(match.index + 1) ?? 0);
      if (JOINS_AFTER.test(before) && JOINS_BEFORE.test(after)) continue;
    } else if ((character === '\ufe0f' || character === '\ufe0e') && EMOJI.test(before)) {
      continue;
    }
    return true;
  }
  return false;
}

export const isValidExposedPromptName = (name: string): boolean =>
  name.length >= 1 && name.length <= MAX_PROMPT_NAME_LENGTH && !hasHiddenCharacter(name);

export class NamingConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NamingConfigError';
  }
}

/** Checks the separator itself (config time). */
export function assertValidSeparator(separator: string): void {
  if (separator.length < 1 || separator.length > 8 || !NAME_CHARS.test(separator)) {
    throw new NamingConfigError('the tool name separator must be 1–8 characters of A-Z a-z 0-9 _ . -');
  }
}

/** Why a prefix cannot be used with this separator, or undefined when it can. */
export function prefixProblem(prefix: string, separator: string): string | undefined {
  if (prefix.length === 0) return 'the tool prefix is empty';
  if (!NAME_CHARS.test(prefix)) return `the tool prefix "${prefix}" may only contain A-Z a-z 0-9 _ . -`;
  if (prefix.length + separator.length >= MAX_NAME_LENGTH) return `the tool prefix "${prefix}" is too long`;
  if ((prefix + separator).indexOf(separator) !== prefix.length) {
    // Also catches prefix "a_" with separator "__": "a___x" would read as prefix "a" + name "_x".
    return `the tool prefix "${prefix}" contains (or ends with part of) the separator "${separator}"`;
  }
  return undefined;
}

export interface PrefixedItem {
  readonly id: string;
  readonly name: string;
  readonly toolPrefix: string;
}

/**
 * Configuration-time check of a tenant's upstream prefixes: each valid, and no two equal when compared
 * case-insensitively (agents and humans should not have to tell `Files` from `files`). Returns one clear
 * message per problem; an empty list means the set is usable.
 */
export function checkPrefixes(upstreams: readonly PrefixedItem[], separator: string): string[] {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const upstream of upstreams) {
    const problem = prefixProblem(upstream.toolPrefix, separator);
    if (problem) {
      problems.push(`upstream "${upstream.name}": ${problem}`);
      continue;
    }
    const key = upstream.toolPrefix.toLowerCase();
    const other = seen.get(key);
    if (other !== undefined) {
      problems.push(`upstream "${upstream.name}": the tool prefix "${upstream.toolPrefix}" collides with upstream "${other}"`);
      continue;
    }
    seen.set(key, upstream.name);
  }
  return problems;
}

/** The exposed name, or undefined when the result would break the specification's rules. */
export function exposeName(prefix: string, separator: string, name: string, kind: 'tool' | 'prompt' = 'tool'): string | undefined {
  const exposed = `${prefix}${separator}${name}`;
  const valid = kind === 'tool' ? isValidExposedName(exposed) : isValidExposedPromptName(exposed);
  return valid && name.length > 0 ? exposed : undefined;
}

/** Splits an exposed name at its first separator. */
export function splitExposedName(exposed: string, separator: string): { prefix: string; name: string } | undefined {
  const at = exposed.indexOf(separator);
  if (at <= 0) return undefined;
  const name = exposed.slice(at + separator.length);
  if (name.length === 0) return undefined;
  return { prefix: exposed.slice(0, at), name };
}
