/**
 * The source of a hand-written stdio MCP server (for `node -e`, or a script file): it reads its stdin a JSON-RPC message
 * a line at a time and runs `handle` for each, a statement list that sees `message` and `send(message)` (and whatever
 * `prelude` set up) and may `continue` to the next message. No SDK and no file of its own: any user can run it, as specs
 * of servers run as other users need.
 */
export function jsonLinesServer(handle: string, prelude = ''): string {
  return `${prelude}
const send = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
let buffered = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffered += chunk;
  for (let at = buffered.indexOf('\\n'); at !== -1; at = buffered.indexOf('\\n')) {
    const message = JSON.parse(buffered.slice(0, at));
    buffered = buffered.slice(at + 1);
    ${handle}
  }
});
`;
}
