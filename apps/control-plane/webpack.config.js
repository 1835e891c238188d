const { nodeAppWebpackConfig } = require('../../tools/build/node-app-webpack');

// bootstrap.js: the one-off command behind `npm run bootstrap` (tools/scripts/bootstrap.mjs).
module.exports = nodeAppWebpackConfig(__dirname, 'control-plane', [
  { entryName: 'bootstrap', entryPath: 'apps/control-plane/src/bootstrap.ts' },
]);
