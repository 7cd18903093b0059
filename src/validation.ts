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
import { closestOption, knownOptionsAt } from "./option-suggestions.js";

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

/**
 * A union (`idleShutdownAfter: number | { after, check }`) reports only "expected
 * number | Object"; when the input matched one option's type, that option's own
 * issues (deeper in the input) say what is really wrong.
 */
function specificIssues(issue: v.BaseIssue<unknown>): v.BaseIssue<unknown>[] {
  if (issue.type !== "union") return [issue];
  // A union's inner issues have paths relative to the union's own.
  const deeper = (issue.issues ?? [])
    .filter((inner) => (inner.path?.length ?? 0) > 0)
    .map((inner) => ({ ...inner, path: [...(issue.path ?? []), ...inner.path!] }) as v.BaseIssue<unknown>);
  return deeper.length > 0 ? deeper.flatMap(specificIssues) : [issue];
}

/** Validates `input` against `schema`, throwing InvalidOptionError that names `subject` and each bad option. */
export function parseOptions<TSchema extends v.GenericSchema>(
  subject: string,
  schema: TSchema,
  input: unknown,
): v.InferOutput<TSchema> {
  const result = v.safeParse(schema, input);
  if (result.success) return result.output;
  const problems = result.issues.flatMap(specificIssues).map((issue) => {
    const path = v.getDotPath(issue);
    if (issue.type === "strict_object" && issue.expected === "never" && path) {
      const keys = (issue.path ?? []).map((item) => String(item.key));
      const suggestion = closestOption(keys.at(-1)!, knownOptionsAt(schema, keys.slice(0, -1)));
      return `options: unknown option "${path}"${suggestion ? ` (did you mean "${[...keys.slice(0, -1), suggestion].join(".")}"?)` : ""}`;
    }
    const option = path ? `option "${path}"` : "options";
    return `${option}: ${issue.message}`;
  });
  throw new InvalidOptionError(`invalid ${subject} ${problems.join("; ")}`);
}
