// Types of stack-env.mjs, for the TypeScript specs that import it.
export declare const GENERATED_SECRETS: ReadonlySet<string>;

export interface LocalStackSecrets {
  readonly NEXTAUTH_SECRET: string;
  readonly PORTAL_OIDC_CLIENT_SECRET: string;
  readonly DEV_IDP_COOKIE_SECRET: string;
  readonly SECRETS_KEYRING: string;
  readonly CONTROL_PLANE_JWT_SECRET: string;
}

export declare function stackEnv(
  environment: Readonly<Record<string, string | undefined>>,
  local: { readonly secrets: LocalStackSecrets; readonly auditSigningKeyFile: string; readonly auditVerifyKeysFile: string },
): Record<string, string>;
