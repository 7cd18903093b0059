/**
 * placeChild: a long-lived task on a runner, linked to its caller. It is a
 * call without a timeout whose handle is returned as soon as a runner took it.
 */

export interface PlacedChild<T> {
  /** The runner the child runs on. */
  runnerId: string;
  /** Settles when the child's function returns or throws (CallAbortedError after stop()). */
  done: Promise<T>;
  /** Aborts the child's signal on the runner; `done` rejects. */
  stop(): void;
}

export function startChild<T>(
  // Only the runner's id: the published declarations must not reach the Runner (and its ws types).
  submit: (signal: AbortSignal, onPlaced: (runner: { readonly id: string }) => void) => Promise<unknown>,
  callerSignal: AbortSignal | undefined,
): Promise<PlacedChild<T>> {
  const controller = new AbortController();
  // A listener rather than AbortSignal.any: on Node 20 a signal held only by AbortSignal.any
  // (an AbortSignal.timeout() the caller kept no reference to) can be collected and never fire.
  const follow = () => controller.abort(callerSignal!.reason);
  if (callerSignal?.aborted) follow();
  else callerSignal?.addEventListener("abort", follow, { once: true });
  const signal = controller.signal;
  return new Promise((resolve, reject) => {
    let placed = false;
    const stop = () => controller.abort(new Error("child stopped"));
    const done = submit(signal, (runner) => {
      placed = true;
      // Placement can happen synchronously inside submit(), before `done` is assigned.
      queueMicrotask(() => resolve({ runnerId: runner.id, done: done as Promise<T>, stop }));
    });
    // Before placement a failure is the placeChild promise's; after, it belongs to `done`.
    done.catch((error: unknown) => {
      if (!placed) reject(error);
    });
    const unfollow = () => callerSignal?.removeEventListener("abort", follow);
    done.then(unfollow, unfollow);
  });
}
