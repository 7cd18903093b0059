/** Backends configured for the test suite: runners load TypeScript sources through tsx. */
import { ProcessBackend, type ProcessBackendOptions } from "../../src/index.js";

export const TSX_EXEC_ARGV = ["--import", "tsx"];

export function testProcessBackend(options: ProcessBackendOptions = {}): ProcessBackend {
  return new ProcessBackend({ execArgv: TSX_EXEC_ARGV, killTimeout: 500, ...options });
}
