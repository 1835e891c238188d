import { z } from 'zod';

/** A relying party registered with the dev IdP (confidential, authorization code flow). */
export interface DevIdpClient {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUris: readonly string[];
  readonly postLogoutRedirectUris: readonly string[];
  /**
   * First-party clients (the portal) are consented automatically at the consent prompt; others see a
   * consent page.
   */
  readonly firstParty: boolean;
}

const absoluteHttpUrl = z.url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' });

export const devIdpClientSchema = z.object({
  clientId: z.string().min(1),
  clientSecret: z.string().min(16, 'must be at least 16 characters'),
  redirectUris: z.array(absoluteHttpUrl).min(1),
  postLogoutRedirectUris: z.array(absoluteHttpUrl).default([]),
  firstParty: z.boolean().default(false),
});

/**
 * Extra clients as a JSON array in one variable, e.g.
 * `[{"clientId":"tests","clientSecret":"...","redirectUris":["http://localhost:9999/cb"]}]`.
 */
export const devIdpClientListSchema = z
  .string()
  .default('[]')
  .transform((value, ctx) => {
    try {
      return JSON.parse(value) as unknown;
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of clients' });
      return z.NEVER;
    }
  })
  .pipe(z.array(devIdpClientSchema));
