/** Pools built from the fixture app on the test process backend, stopped after each test. */
import { afterEach } from "vitest";
import { makePool } from "../fixtures/app.js";
import { testProcessBackend } from "./backends.js";

type FixtureOptions = Parameters<typeof makePool>[0];

/** Registers an afterEach that stops every pool made through the returned function. */
export function poolsStoppedAfterEach(): (options: FixtureOptions) => ReturnType<typeof makePool> {
  const pools: { stop(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.stop()));
  });
  return (options) => {
    const made = makePool({ backend: testProcessBackend(), ...options });
    pools.push(made.pool);
    return made;
  };
}
