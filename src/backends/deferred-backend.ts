/**
 * The Fly, EC2 and Kubernetes backends are constructed on every runner (the
 * app module that builds a pool runs there too) but used only by a parent, so
 * each is a light shell: it validates its options when constructed, and loads
 * its implementation, with a dynamic `import()`, the first time one of its
 * async methods runs. This is that shell's half, written once: the load, and
 * the methods that hand over to what it loaded.
 */
import type { Backend, ListedRunner, ProvisionedRunner, ProvisionRequest } from "./backend.js";

/** What a shell hands over to: a backend's async methods, on the options its shell resolved. */
export interface BackendImplementation {
  checkPermissions(): Promise<void>;
  provision(request: ProvisionRequest): Promise<ProvisionedRunner>;
  terminate(runner: ProvisionedRunner): Promise<void>;
  list(filter: { pool?: string }): Promise<ListedRunner[]>;
}

export abstract class DeferredBackend<I extends BackendImplementation = BackendImplementation> implements Backend {
  abstract readonly name: string;
  private loading: Promise<I> | undefined;

  /** Imports the implementation's module and makes it; called once, or again after a failed load. */
  protected abstract loadImplementation(): Promise<I>;

  /** The implementation, loaded on first use; a failed load is not kept, so the next use tries again. */
  protected implementation(): Promise<I> {
    this.loading ??= this.loadImplementation().catch((error: unknown) => {
      this.loading = undefined;
      throw error;
    });
    return this.loading;
  }

  /** Called by `pool.start()`: checks credentials and permissions before the first boot, with a BackendError that says what is missing. */
  async checkPermissions(): Promise<void> {
    await (await this.implementation()).checkPermissions();
  }

  async provision(request: ProvisionRequest): Promise<ProvisionedRunner> {
    return (await this.implementation()).provision(request);
  }

  /** Stops the runner and makes sure it is gone; one already gone counts as stopped. */
  async terminate(runner: ProvisionedRunner): Promise<void> {
    await (await this.implementation()).terminate(runner);
  }

  /** The runners this backend started that still exist (optionally of one pool), found by their tags or labels. */
  async list(filter: { pool?: string } = {}): Promise<ListedRunner[]> {
    return (await this.implementation()).list(filter);
  }
}
