// Loaded with `node --import` into the MCP conformance CLI, which has no option for credentials: every request it
// makes to PORTCULLIS_CONFORMANCE_ORIGIN (the gateway under test) carries the tenant API key in PORTCULLIS_CONFORMANCE_KEY.
// Both `fetch` and undici's `request` (the suite uses both) go through undici's global dispatcher.
import { Agent, setGlobalDispatcher } from 'undici';

const origin = process.env.PORTCULLIS_CONFORMANCE_ORIGIN;
const key = process.env.PORTCULLIS_CONFORMANCE_KEY;
if (!origin || !key) throw new Error('PORTCULLIS_CONFORMANCE_ORIGIN and PORTCULLIS_CONFORMANCE_KEY must be set');

/** The request's headers with `authorization` set, whichever form undici was given them in. */
function withKey(headers) {
  const value = `Bearer ${key}`;
  if (Array.isArray(headers)) {
    const flat = headers.flat();
    const out = [];
    for (let i = 0; i < flat.length; i += 2) {
      if (String(flat[i]).toLowerCase() !== 'authorization') out.push(flat[i], flat[i + 1]);
    }
    return [...out, 'authorization', value];
  }
  const out = {};
  const entries = headers == null ? [] : typeof headers[Symbol.iterator] === 'function' ? headers : Object.entries(headers);
  for (const [name, header] of entries) {
    if (name.toLowerCase() !== 'authorization') out[name] = header;
  }
  out.authorization = value;
  return out;
}

setGlobalDispatcher(
  new Agent().compose((dispatch) => (options, handler) => {
    const target = typeof options.origin === 'string' ? options.origin : options.origin?.origin;
    return dispatch(target === origin ? { ...options, headers: withKey(options.headers) } : options, handler);
  }),
);
