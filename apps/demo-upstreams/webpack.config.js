const { join } = require('node:path');
const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');

// Two Node entry points in one bundle build: the HTTP server (main.js) and the stdio server (stdio.js).
// Every npm dependency stays external (`require`d from node_modules at run time), so the MCP SDK loads
// its CommonJS build through its package "exports"; workspace libs are bundled from source.
module.exports = {
  output: {
    path: join(__dirname, '../../dist/apps/demo-upstreams'),
    clean: true,
  },
  plugins: [
    new NxAppWebpackPlugin({
      target: 'node',
      // ts-loader (transpile only) honours tsconfig's es2022 target. SWC without a .swcrc falls back to
      // ES5 in loose mode, where `[...someSet]` silently becomes `[]`. Type checking is the repo-wide
      // `tsc -p tsconfig.json` (ADR 0001), not repeated per bundle.
      compiler: 'tsc',
      skipTypeChecking: true,
      main: './src/main.ts',
      additionalEntryPoints: [{ entryName: 'stdio', entryPath: './src/stdio.ts' }],
      tsConfig: './tsconfig.app.json',
      outputPath: '../../dist/apps/demo-upstreams',
      externalDependencies: 'all',
      outputHashing: 'none',
      generatePackageJson: false,
      optimization: false,
      sourceMap: true,
    }),
  ],
};
