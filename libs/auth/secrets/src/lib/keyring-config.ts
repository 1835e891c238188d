import { configFields } from '@portcullis/shared/util-config';
import { z } from 'zod';
import { parseKeyring } from './secret-box';

/**
 * A config field holding a secrets keyring (`<key-id>:<base64 32 bytes>[,...]`, the first key active), checked at
 * boot with `parseKeyring` itself: a key of the wrong size, a key id given twice or an empty ring stops the app with
 * the variable named (exit 78), not later in boot. The value stays the spec (the app parses it when it builds its
 * keyring); messages name a key id, never a key. Optional: empty (`NAME=` in an env file) counts as unset.
 */
export const keyringSpecField = configFields.unsetIfEmpty(
  z
    .string()
    .trim()
    .optional()
    .superRefine((value, ctx) => {
      if (value === undefined) return;
      try {
        parseKeyring(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: error instanceof Error ? error.message : 'is not a keyring' });
      }
    }),
);
