import { escapeHtml } from './provider';

const styles = `
  body { font-family: system-ui, sans-serif; background: #f4f5f7; color: #1f2933; margin: 0; }
  main { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 8px;
         box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  h1 { font-size: 1.35rem; margin: 0 0 .25rem; }
  p.sub { color: #52606d; margin: 0 0 1.5rem; }
  label { display: block; font-weight: 600; margin: 1rem 0 .25rem; }
  input { width: 100%; box-sizing: border-box; padding: .55rem; border: 1px solid #cbd2d9; border-radius: 4px; font-size: 1rem; }
  button { margin-top: 1.5rem; padding: .6rem 1.2rem; border: 0; border-radius: 4px; background: #1f4e8c; color: #fff; font-size: 1rem; cursor: pointer; }
  button.secondary { background: #e4e7eb; color: #1f2933; margin-top: .75rem; }
  .error { background: #fde8e8; color: #9b1c1c; padding: .6rem .8rem; border-radius: 4px; margin-bottom: 1rem; }
  details { margin-top: 1.5rem; color: #52606d; font-size: .9rem; }
  code { font-size: .85rem; }
`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${styles}</style></head>
<body><main>${body}</main></body></html>`;
}

export interface LoginViewModel {
  readonly uid: string;
  readonly clientId: string;
  readonly email?: string;
  readonly error?: string;
  readonly demoEmails: readonly string[];
}

export function loginView(model: LoginViewModel): string {
  const action = `/interaction/${encodeURIComponent(model.uid)}`;
  const error = model.error ? `<div class="error" role="alert">${escapeHtml(model.error)}</div>` : '';
  const demo = model.demoEmails.map((email) => `<li><code>${escapeHtml(email)}</code></li>`).join('');
  return page(
    'Sign in · Portcullis dev IdP',
    `<h1>Sign in</h1>
<p class="sub">Portcullis development identity provider · for <code>${escapeHtml(model.clientId)}</code></p>
${error}
<form method="post" action="${action}/login" autocomplete="off">
  <label for="email">Email</label>
  <input id="email" name="email" type="email" required autofocus value="${escapeHtml(model.email ?? '')}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
</form>
<form method="post" action="${action}/abort"><button type="submit" class="secondary">Cancel</button></form>
<details><summary>Demo users</summary><ul>${demo}</ul><p>The password is in tools/demo/identities.json.</p></details>`,
  );
}

export interface ConsentViewModel {
  readonly uid: string;
  readonly clientId: string;
  readonly scopes: readonly string[];
}

export function consentView(model: ConsentViewModel): string {
  const action = `/interaction/${encodeURIComponent(model.uid)}`;
  const scopes = model.scopes.map((scope) => `<li><code>${escapeHtml(scope)}</code></li>`).join('');
  return page(
    'Allow access · Portcullis dev IdP',
    `<h1>Allow access?</h1>
<p class="sub"><code>${escapeHtml(model.clientId)}</code> asks for:</p>
<ul>${scopes}</ul>
<form method="post" action="${action}/confirm"><button type="submit">Allow</button></form>
<form method="post" action="${action}/abort"><button type="submit" class="secondary">Deny</button></form>`,
  );
}
