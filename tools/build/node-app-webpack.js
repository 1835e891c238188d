// One webpack configuration for every Node app (ADR 0001). Workspace libs are bundled from source;
// every npm dependency stays external and is `require`d from node_modules at run time, so ESM-only
// packages (Nest 12, oidc-provider) load through Node's require(esm).
//
// ts-loader in transpile-only mode honours tsconfig's es2022 target and emits Nest's decorator metadata.
// (SWC without a .swcrc falls back to ES5 loose mode, where `[...someSet]` silently becomes `[Set]`.)
// Type checking is the repo-wide `tsc -p tsconfig.json`, not repeated per bundle.
const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');
const { join } = require('node:path');

/**
 * @param {string} appDir the app's folder (`__dirname` of its webpack.config.js)
 * @param {string} name the app's name under dist/apps
 * @param {{ entryName: string, entryPath: string }[]} [additionalEntryPoints]
 */
function nodeAppWebpackConfig(appDir, name, additionalEntryPoints = []) {
  const outputPath = join(__dirname, '../../dist/apps', name);
  return {
    output: { path: outputPath, clean: true },
    devtool: 'source-map',
    plugins: [
      new NxAppWebpackPlugin({
        target: 'node',
        compiler: 'tsc',
        skipTypeChecking: true,
        main: './src/main.ts',
        additionalEntryPoints,
        tsConfig: './tsconfig.app.json',
        outputPath,
        externalDependencies: 'all',
        outputHashing: 'none',
        generatePackageJson: false,
        optimization: false,
        sourceMap: true,
      }),
    ],
  };
}

module.exports = { nodeAppWebpackConfig };
