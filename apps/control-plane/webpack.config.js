const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');
const { join } = require('node:path');

module.exports = {
  output: { path: join(__dirname, '../../dist/apps/control-plane'), clean: true },
  devtool: 'source-map',
  plugins: [
    new NxAppWebpackPlugin({
      target: 'node',
      compiler: 'swc',
      main: './src/main.ts',
      tsConfig: './tsconfig.app.json',
      externalDependencies: 'all',
      outputHashing: 'none',
      generatePackageJson: false,
      optimization: false,
      sourceMap: true,
      skipTypeChecking: true,
    }),
  ],
};
