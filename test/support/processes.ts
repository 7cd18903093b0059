/** Helpers to see the processes a test started, read from /proc, and the commands this machine has. */
import { accessSync, constants, existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { delimiter, join } from "node:path";

/**
 * Whether `command` is an executable on PATH. Tests that need a tool (kubectl,
 * the AWS CLI, cfn-lint) look for it this way rather than by running its
 * `--version`: the Python ones take half a second of CPU to start.
 */
export function onPath(command: string): boolean {
  return (process.env.PATH ?? "").split(delimiter).some((directory) => {
    try {
      accessSync(join(directory, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Whether this kernel lists each task's children (/proc/<pid>/task/<tid>/children,
 * CONFIG_PROC_CHILDREN). Where it does, descendants are found from the root
 * down, reading only their own entries; otherwise every process's stat is read.
 */
const TASK_CHILDREN = existsSync(`/proc/self/task/${process.pid}/children`);

/**
 * Pids of the live descendants of `root` (default: this process), zombies left
 * out. The suite asks after every test (and polls while runners exit): read
 * from the root down, that costs microseconds instead of a scan of every
 * process (4 s of the suite's CPU).
 */
export function descendantPids(root = process.pid): number[] {
  return TASK_CHILDREN ? descendantsFromTaskChildren(root) : descendantsFromEveryStat(root);
}

function descendantsFromTaskChildren(root: number): number[] {
  const found: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const parent = frontier.pop()!;
    for (const pid of childPids(parent)) {
      if (!isAlive(pid)) continue;
      found.push(pid);
      frontier.push(pid);
    }
  }
  return found;
}

/** The children of every thread of `pid` (a child belongs to the thread that forked it). */
function childPids(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const children: number[] = [];
  for (const task of tasks) {
    try {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(" ")) if (child.trim()) children.push(Number(child));
    } catch {
      // The thread or the process ended while we looked.
    }
  }
  return children;
}

function descendantsFromEveryStat(root: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // Fields after the parenthesised command: state, ppid, ...
      const afterName = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (afterName[0] === "Z") continue;
      parents.set(pid, Number(afterName[1]));
    } catch {
      // The process ended while we looked.
    }
  }
  const found: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const parent = frontier.pop()!;
    for (const [pid, ppid] of parents) {
      if (ppid === parent) {
        found.push(pid);
        frontier.push(pid);
      }
    }
  }
  return found;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Polls `predicate` every `interval` ms until it holds, failing after `timeout` ms with `what` in the message. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, timeout = 10_000, interval = 20): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** Whether `pid` holds an established TCP connection (read from /proc: its socket inodes against net/tcp). */
export function hasEstablishedTcpConnection(pid: number): boolean {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (match) inodes.add(match[1]!);
      } catch {
        // The descriptor closed while we looked.
      }
    }
    for (const table of ["tcp", "tcp6"]) {
      for (const line of readFileSync(`/proc/${pid}/net/${table}`, "utf8").split("\n").slice(1)) {
        const fields = line.trim().split(/\s+/);
        // Columns: sl local remote st ... inode (the 10th); state 01 is ESTABLISHED.
        if (fields[3] === "01" && inodes.has(fields[9]!)) return true;
      }
    }
  } catch {
    return false;
  }
  return false;
}
