/**
 * Figures on the code's shape, for reviews and closing notes: the largest files, the longest
 * functions, imports that cross layers the wrong way, and README length.
 *
 *   node --import tsx scripts/code-shape.ts [--json]
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const src = join(root, 'src');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return walk(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

/** The top-level folder of src a file belongs to (`actors`, `runtime`, …; files in src itself: `root`). */
function layer(file: string): string {
  const rel = relative(src, file).split('/');
  return rel.length === 1 ? 'root' : rel[0]!;
}

/** Layer pairs (from → to) that must never occur. */
const FORBIDDEN: ReadonlyArray<readonly [string, string]> = [
  ['runtime', 'actors'],
  ['gateway', 'actors'],
  ['ingest', 'actors'],
  ['model', 'actors'],
  ['model', 'runtime'],
  ['model', 'gateway'],
  ['actors', 'gateway'],
  ['actors', 'cli'],
  ['runtime', 'cli'],
  ['gateway', 'cli'],
];

interface Fn {
  file: string;
  name: string;
  lines: number;
}

const files = walk(src);
const fns: Fn[] = [];
const crossings: { from: string; to: string; typeOnly: boolean }[] = [];
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const lineOf = (pos: number): number => sf.getLineAndCharacterOfPosition(pos).line;
  const visit = (node: ts.Node, owner: string): void => {
    let name: string | undefined;
    if (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) name = node.name?.getText(sf);
    else if (ts.isConstructorDeclaration(node)) name = 'constructor';
    else if ((ts.isArrowFunction(node) || ts.isFunctionExpression(node)) && ts.isVariableDeclaration(node.parent)) {
      name = node.parent.name.getText(sf);
    }
    if (name !== undefined) {
      const full = owner ? `${owner}.${name}` : name;
      fns.push({ file: relative(root, file), name: full, lines: lineOf(node.getEnd()) - lineOf(node.getStart(sf)) + 1 });
    }
    const nextOwner = ts.isClassDeclaration(node) && node.name ? node.name.text : owner;
    ts.forEachChild(node, (c) => visit(c, nextOwner));
  };
  visit(sf, '');
  for (const st of sf.statements) {
    if (!(ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) || !st.moduleSpecifier) continue;
    const spec = (st.moduleSpecifier as ts.StringLiteral).text;
    if (!spec.startsWith('.')) continue;
    const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
    const from = layer(file);
    const to = layer(target);
    if (!FORBIDDEN.some(([f, t]) => f === from && t === to)) continue;
    const typeOnly = ts.isImportDeclaration(st) ? Boolean(st.importClause?.isTypeOnly) : st.isTypeOnly;
    crossings.push({ from: relative(root, file), to: relative(root, target), typeOnly });
  }
}

const sizes = files.map((f) => ({ file: relative(root, f), lines: readFileSync(f, 'utf8').split('\n').length })).sort((a, b) => b.lines - a.lines);
fns.sort((a, b) => b.lines - a.lines);
const readmeLines = readFileSync(join(root, 'README.md'), 'utf8').split('\n').length;
const summary = {
  sourceFiles: files.length,
  largestFiles: sizes.slice(0, 5),
  filesOver400: sizes.filter((s) => s.lines > 400).length,
  longestFunctions: fns.slice(0, 8),
  functionsOver80: fns.filter((f) => f.lines > 80).length,
  crossLayerImports: crossings.length,
  crossings,
  readmeLines,
};
if (process.argv.includes('--json')) {
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
} else {
  console.log(`source files: ${summary.sourceFiles}; over 400 lines: ${summary.filesOver400}; README: ${readmeLines} lines`);
  console.log('largest files:');
  for (const s of summary.largestFiles) console.log(`  ${s.lines.toString().padStart(5)}  ${s.file}`);
  console.log(`longest functions (${summary.functionsOver80} over 80 lines):`);
  for (const f of summary.longestFunctions) console.log(`  ${f.lines.toString().padStart(5)}  ${f.name}  (${f.file})`);
  console.log(`imports against the layer directions: ${crossings.length}`);
  for (const c of crossings) console.log(`  ${c.typeOnly ? 'type ' : 'value'}  ${c.from} → ${c.to}`);
}
