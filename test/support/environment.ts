/** Environment variables a test file sets for its whole run, restored afterwards. */
import { afterAll, beforeAll } from "vitest";

/** Sets (or, with undefined, removes) `changes` in process.env before the file's tests and restores them after. */
export function environmentForFile(changes: Record<string, string | undefined>): void {
  const saved = Object.fromEntries(Object.keys(changes).map((name) => [name, process.env[name]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  beforeAll(() => apply(changes));
  afterAll(() => apply(saved));
}
