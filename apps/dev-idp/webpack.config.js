const { NxAppWebpackPlugin } = require('@nx/webpack/app-plugin');
const { join } = require('node:path');

module.exports = {
  output: {
    path: join(__dirname, '../../dist/apps/dev-idp'),
    clean: true,
  },
  plugins: [
    new NxAppWebpackPlugin({
      target: 'node',
      compiler: 'tsc',
      main: './src/main.ts',
      tsConfig: './tsconfig.app.json',
      outputPath: '../../dist/apps/dev-idp',
      externalDependencies: 'all',
      generatePackageJson: false,
      outputHashing: 'none',
      optimization: false,
      sourceMap: true,
    }),
  ],
};
