// The lint gate (`npm run lint`, run by .ci/run): type-aware promise rules, type-only imports, and
// the layer directions of docs/layout.md. Import cycles (type imports included) are checked by
// dependency-cruiser (.dependency-cruiser.cjs), because eslint-plugin-import's no-cycle ignores
// type-only imports.
import tseslint from 'typescript-eslint';

/** An import of another layer's folder, from any depth (`../actors/x.ts`, `../../actors/x.ts`). */
const layer = (name) => `^(\\.\\./)+${name}(/|$)`;
const restrict = (...rules) => ['error', { patterns: rules.map(([regex, message]) => ({ regex, message })) }];

const NO_ACTORS = [layer('actors'), 'Only the composition root (src/cli, src/index.ts) wires actors in: depend on the contract in src/runtime (shard-behaviour.ts, reducer-behaviour.ts, actor-registry.ts) and the types in src/model.'];
const NO_CLI = [layer('cli'), 'The CLI is the composition root: nothing imports it.'];

export default tseslint.config(
  { ignores: ['dist/**', 'test-artifacts/**', 'node_modules/**', 'src/gateway/static/**', 'data/**', '**/*.mjs', '**/*.cjs', 'eslint.config.js', 'vitest.config.ts', 'scripts/**'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports', fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-import-type-side-effects': 'error',
    },
  },
  {
    // A source file past ~400 lines is asking to be split along a concept (docs/layout.md).
    files: ['src/**/*.ts'],
    rules: { 'max-lines': ['warn', { max: 400, skipBlankLines: false, skipComments: false }] },
  },
  {
    // The model: shared wire and store types and pure codecs; it imports no other layer.
    files: ['src/model/**/*.ts'],
    rules: {
      'no-restricted-imports': restrict(
        [layer('(actors|runtime|gateway|ingest|cli)'), 'src/model imports no other layer (only itself and src/errors.ts).'],
        ['^\\.\\./options(\\.ts)?$', 'src/model imports no other layer (only itself and src/errors.ts).'],
      ),
    },
  },
  {
    // Actors: the model and the runtime's actor contract, nothing about transport, HTTP or the CLI.
    files: ['src/actors/**/*.ts'],
    rules: {
      'no-restricted-imports': restrict(
        [layer('(gateway|ingest|cli)'), 'Actors never import transport, HTTP or CLI code.'],
        [
          `${layer('runtime')}(?!(shard-behaviour|reducer-behaviour|actor-registry|clock)\\.ts$)`,
          'Actors import only the runtime\'s actor contract (shard-behaviour.ts, reducer-behaviour.ts, actor-registry.ts, clock.ts).',
        ],
      ),
    },
  },
  {
    files: ['src/runtime/**/*.ts'],
    rules: { 'no-restricted-imports': restrict(NO_ACTORS, NO_CLI, [layer('gateway'), 'The runtime never imports the gateway.']) },
  },
  {
    files: ['src/gateway/**/*.ts', 'src/ingest/**/*.ts'],
    rules: { 'no-restricted-imports': restrict(NO_ACTORS, NO_CLI) },
  },
);
