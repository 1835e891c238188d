const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');
const { join } = require('node:path');

// node_modules stay external: oidc-provider (ESM-only) is loaded by Node's require(esm) at run time.
module.exports = {
  output: { path: join(__dirname, '../../dist/apps/dev-idp'), clean: true },
  devtool: 'source-map',
  plugins: [
    new NxAppWebpackPlugin({
      target: 'node',
      compiler: 'swc',
      main: './src/main.ts',
      tsConfig: './tsconfig.app.json',
      outputPath: '../../dist/apps/dev-idp',
      externalDependencies: 'all',
      outputHashing: 'none',
      generatePackageJson: false,
      optimization: false,
      sourceMap: true,
      skipTypeChecking: true,
    }),
  ],
};
