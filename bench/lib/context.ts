/** What every case gets: the package under test, the mode, and a progress line. */
import type { FlameUnderTest } from "./flame.js";

export interface BenchContext {
  flame: FlameUnderTest;
  quick: boolean;
  /** One line of progress on stderr (stdout carries only the table). */
  progress(message: string): void;
}
