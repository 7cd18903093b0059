/**
 * Option validation shared by the pool and the backends. valibot is used for
 * its small import cost (every runner imports this package, and a runner's
 * cold start is a headline figure); its issues are turned into one error that
 * names the option and the bad value. Each module imports valibot itself
 * (`import * as v`), never through a re-export, so that the build's bundler
 * keeps only the valibot functions in use (about 23 KB instead of 200 KB:
 * 2.5 ms less to load on every runner).
 */
import * as v from "valibot";
import { InvalidOptionError } from "./errors.js";

/**
 * The longest delay a Node timer honours (2^31-1 ms, about 24.8 days). A longer
 * one fires after 1 ms with a TimeoutOverflowWarning, so a `timeout` of a month
 * would time out every call at once.
 */
export const MAX_TIMER_DELAY = 2_147_483_647;

/**
 * Milliseconds: a non-negative number no greater than MAX_TIMER_DELAY, or
 * Infinity where `allowInfinity` (the option then means "no limit").
 */
export function milliseconds(allowInfinity = false) {
  const orInfinity = allowInfinity ? ", or Infinity for no limit" : "";
  return v.pipe(
    v.number(),
    v.check(
      (value) => value >= 0 && (allowInfinity || Number.isFinite(value)),
      (issue) => `Expected ${allowInfinity ? "milliseconds >= 0 (or Infinity)" : "a finite number of milliseconds >= 0"} but received ${issue.received}`,
    ),
    v.check(
      (value) => !Number.isFinite(value) || value <= MAX_TIMER_DELAY,
      (issue) => `Expected at most ${MAX_TIMER_DELAY} ms (about 24.8 days)${orInfinity}, but received ${issue.received}`,
    ),
  );
}

export function positiveInteger() {
  return v.pipe(v.number(), v.integer(), v.minValue(1));
}

export function nonNegativeInteger() {
  return v.pipe(v.number(), v.integer(), v.minValue(0));
}

/** Validates `input` against `schema`, throwing InvalidOptionError that names `subject` and each bad option. */
export function parseOptions<TSchema extends v.GenericSchema>(
  subject: string,
  schema: TSchema,
  input: unknown,
): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, input);
  if (result.success) return result.output;
  const problems = result.issues.map((issue) => {
    const path = v.getDotPath(issue);
    const option = path ? `option "${path}"` : "options";
    return `${option}: ${issue.message}`;
  });
  throw new InvalidOptionError(`invalid ${subject} ${problems.join("; ")}`);
}
