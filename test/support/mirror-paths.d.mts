/** Types of mirror-paths.mjs (plain JavaScript: the runners' bootstrap loads it without a TypeScript loader). */
export declare const REPO: string;
export declare const RUNNER_MIRROR: string;
export declare const MIRROR_BOOTSTRAP: string;
export declare function copyOf(path: string): string | undefined;
