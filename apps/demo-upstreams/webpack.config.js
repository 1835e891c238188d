const { nodeAppWebpackConfig } = require('../../tools/build/node-app-webpack');

// Two entry points: the Streamable HTTP (+ legacy SSE) server, main.js, and the stdio server, stdio.js.
module.exports = nodeAppWebpackConfig(__dirname, 'demo-upstreams', [
  { entryName: 'stdio', entryPath: './src/stdio.ts' },
]);
