// Builds dist/vdimedia.js (UMD, global `VdiMedia`) and dist/vdimedia.mjs (ES module).
export default {
  input: 'src/index.js',
  output: [
    { file: 'dist/vdimedia.js', format: 'umd', name: 'VdiMedia', exports: 'named', sourcemap: true },
    { file: 'dist/vdimedia.mjs', format: 'es', sourcemap: true },
  ],
};
