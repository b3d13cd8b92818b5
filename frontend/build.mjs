// Bundle src/codemirror.js into ../static/vendor/codemirror.js (committed: running the app
// never needs npm). `npm ci && npm run build`; see docs/ui.md.
import { build } from "esbuild";

await build({
  entryPoints: ["src/codemirror.js"],
  outfile: "../static/vendor/codemirror.js",
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "eof",
  logLevel: "info",
});
