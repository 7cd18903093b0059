/**
 * The Fly, EC2 and Kubernetes backends are constructed on every runner (the
 * app module that builds a pool runs there too) but used only by a parent, so
 * each is a light shell that loads its implementation, with a dynamic
 * `import()`, the first time one of its async methods runs. This holds that
 * one load per shell.
 */

/** A value made by `load` on the first `get()` and shared after; a failed load is not kept, so the next `get()` tries again. */
export class LoadedOnFirstUse<T> {
  private loading: Promise<T> | undefined;

  constructor(private readonly load: () => Promise<T>) {}

  get(): Promise<T> {
    this.loading ??= this.load().catch((error: unknown) => {
      this.loading = undefined;
      throw error;
    });
    return this.loading;
  }
}
