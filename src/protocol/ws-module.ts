/**
 * The ws package, loaded with `require` rather than `import`. ws is CommonJS,
 * and Node's ESM loader parses a CommonJS package for its named exports
 * (cjs-module-lexer) and wraps it on the way in: 25-34 ms against 12-13 ms
 * through require on the machine of the benchmarks, paid by every runner's
 * cold start (the runner agent dials with ws) and by a parent's first listen.
 */
import { createRequire } from "node:module";
import type * as Ws from "ws";

let loaded: typeof Ws | undefined;

export function wsModule(): typeof Ws {
  return (loaded ??= createRequire(import.meta.url)("ws") as typeof Ws);
}
