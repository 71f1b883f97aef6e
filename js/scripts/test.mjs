// `npm test`: the TypeScript tests (src/**/*.test.ts) under node's own test runner. esbuild
// bundles each test file (with what it imports) into node_modules/.cache/dsn-tests/, then
// `node --test` runs them; extra arguments go to node (e.g. --test-name-pattern=colour).
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const src = path.join(root, "src");
const out = path.join(root, "node_modules", ".cache", "dsn-tests");
const files = readdirSync(src, { recursive: true })
  .filter((f) => f.endsWith(".test.ts"))
  .sort()
  .map((f) => path.join(src, f));
if (!files.length) {
  console.error(`no *.test.ts under ${src}`);
  process.exit(1);
}
rmSync(out, { recursive: true, force: true });
await build({
  entryPoints: files,
  outdir: out,
  outbase: src,
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: "inline",
  logLevel: "warning",
});
const bundles = files.map((f) => path.join(out, path.relative(src, f).replace(/\.ts$/, ".mjs")));
const run = spawnSync(process.execPath, ["--enable-source-maps", "--test", "--test-reporter=spec", ...process.argv.slice(2), ...bundles], {
  stdio: "inherit",
  env: { ...process.env, DSN_JS_SRC: src },
});
process.exit(run.status ?? 1);
